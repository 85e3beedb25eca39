"""MultiTask_model on generated shapes: every head learns, and both encoder kinds save, reload and resume."""

import copy
import os

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import read_scalars, run_folder, run_trainer
from tests.helpers import multitask_config

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def trivial_baselines(val_block):
    """On the validation set: the Dice of an all-background prediction, the accuracy of always answering
    the majority class, and the PSNR of an all-black image."""
    from dataset.synthetic_masks_dataset import SyntheticMasksDataset
    from utils.metrics.image import psnr
    from utils.metrics.segmentation import segmentation_scores

    data = SyntheticMasksDataset({**val_block, "phase": "val"})
    masks = torch.stack([data[i]["mask"] for i in range(len(data))])
    labels = torch.stack([data[i]["label"] for i in range(len(data))])
    empty = torch.zeros(len(data), data.num_classes, *masks.shape[1:])
    empty[:, 0] = 1.0
    dice = segmentation_scores(empty, masks)["dice"]
    majority = torch.bincount(labels).max().item() / len(labels)
    images = torch.stack([data[i]["image"] for i in range(len(data))]).numpy()
    return dice, majority, psnr(images * 0, images, data_range=1.0)


def test_every_head_learns_and_beats_its_trivial_baseline(tmp_path):
    config = multitask_config(tmp_path)
    assert run_trainer(config, tmp_path) == 0
    scalars = read_scalars(run_folder(config))
    first, last = 40, config["train"]["max_train_steps"]
    for term in ("val_MSE_rgb", "val_CrossEntropy_segmentation", "val_CrossEntropy_class"):
        assert scalars[term][last] < 0.8 * scalars[term][first], term
    empty_dice, majority, black_psnr = trivial_baselines(config["datasets"]["val"])
    assert scalars["val_segmentation_dice"][last] > empty_dice + 0.1
    assert scalars["val_class_accuracy"][last] > majority + 0.1
    assert scalars["val_rgb_psnr"][last] > black_psnr + 3
    # per-class scores are logged for every foreground class
    assert {"val_segmentation_dice_c1", "val_segmentation_iou_c2"} <= set(scalars)


@pytest.mark.parametrize("variational", [False, True])
def test_deterministic_and_variational_save_reload_and_resume(tmp_path, variational):
    from models.archs.multitask_autoencoder_arch import MultiTaskAutoencoder_arch

    config = multitask_config(tmp_path, variational=variational)
    if variational:
        config["train"]["losses"].append({"type": "KLD", "weight": 1e-4})
    config["train"].update(max_train_steps=6, validation_steps=6, checkpointing_steps=3)
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    final = os.path.join(run, "final", "net_g")
    reference = load_file(os.path.join(final, "model.safetensors"))
    assert any(k.startswith("heads.class") for k in reference)  # final/ keeps every head

    # reload: the same outputs from every head, the stored scale factor, the posterior when variational
    net = MultiTaskAutoencoder_arch.from_pretrained(final).eval()
    assert net.config.variational is variational and net.config.scaling_factor != 1.0
    x = torch.rand(2, 1, 16, 16)
    encoded = net.encode(x)
    assert (encoded.latent_dist is not None) is variational and (encoded.latent is None) is variational
    out = net(x, sample_posterior=False)
    assert set(out.heads) == {"rgb", "segmentation", "class"}
    assert out.heads["segmentation"].shape == (2, 3, 16, 16) and out.heads["class"].shape == (2, 2)

    # resume from step 3 into another folder: the weights of the uninterrupted run
    resumed = copy.deepcopy(config)
    resumed["experiment_key"] = "resumed"
    resumed["path"].update(resume_from_path=run, resume_from_checkpoint="checkpoint-3")
    assert run_trainer(resumed, tmp_path, name="resume.yml") == 0
    again = load_file(os.path.join(run_folder(resumed), "final", "net_g", "model.safetensors"))
    for key, value in reference.items():
        torch.testing.assert_close(again[key], value, rtol=1e-5, atol=1e-6)
