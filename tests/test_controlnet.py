"""The multi-task chain: a multi-task autoencoder, an unconditional LDM in its latent space, a ControlNet
steering that LDM with masks; and random-latent samples of the autoencoder (scripts/vae_sample.py)."""

import copy
import os

import numpy as np
import pytest
import tifffile
import torch

from tests.conftest import read_scalars, run_folder, run_trainer
from tests.helpers import MASK_DATA, TINY_CONTROLNET, TINY_MASK_LDM, TINY_MULTITASK, record_validations


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(autoencoder final/, LDM final/, ControlNet final/), trained once for the module."""
    tmp = tmp_path_factory.mktemp("chain")
    stage1 = copy.deepcopy(TINY_MULTITASK)
    stage1["path"]["root"] = str(tmp / "experiments")
    stage1["datasets"] = copy.deepcopy(MASK_DATA)
    stage1["train"].update(max_train_steps=150, validation_steps=150)
    assert run_trainer(stage1, tmp, name="stage1.yml") == 0
    autoencoder = os.path.join(run_folder(stage1), "final")

    ldm = copy.deepcopy(TINY_MASK_LDM)
    ldm["path"]["root"] = str(tmp / "experiments")
    ldm["vae"]["pretrained"] = os.path.join(autoencoder, "net_g")
    assert run_trainer(ldm, tmp, name="ldm.yml") == 0
    ldm_final = os.path.join(run_folder(ldm), "final")

    control = copy.deepcopy(TINY_CONTROLNET)
    control["path"]["root"] = str(tmp / "experiments")
    control["ldm"]["pretrained"] = ldm_final
    assert run_trainer(control, tmp, name="controlnet.yml") == 0
    return autoencoder, ldm_final, os.path.join(run_folder(control), "final")


def held_out_masks(count=16):
    from dataset.synthetic_masks_dataset import SyntheticMasksDataset

    data = SyntheticMasksDataset({**MASK_DATA["val"], "size": count, "seed": 77})
    return torch.stack([data[i]["mask"] for i in range(count)])


def foreground_dice(images: torch.Tensor, masks: torch.Tensor) -> float:
    from utils.metrics.mask import dice

    return dice((images[:, :1] > 0.25).float().numpy(), (masks[:, None] > 0).float().numpy())


@pytest.mark.e2e
def test_a_controlnet_sample_follows_its_control(chain):
    from models.controlnet.pipeline import ControlNetPipeline

    _, _, final = chain
    assert sorted(os.listdir(final)) == ["config.yml", "controlnet", "controlnet.json", "ldm", "metrics.json"]
    # every weights folder holds what generation reads, and of the LDM's folder nothing else
    assert sorted(os.listdir(os.path.join(final, "ldm"))) == [
        "ldm.json",
        "mean_target.safetensors",
        "scheduler",
        "unet",
    ]
    checkpoint = os.path.join(os.path.dirname(final), "checkpoint-150")
    assert {"controlnet", "controlnet.json", "ldm"} <= set(os.listdir(checkpoint))
    assert sorted(os.listdir(os.path.join(checkpoint, "ldm"))) == sorted(
        os.listdir(os.path.join(final, "ldm"))
    )
    pipe = ControlNetPipeline.from_final(final)
    masks = held_out_masks()
    seeds = list(range(len(masks)))
    images = pipe(masks, seeds=seeds, num_inference_steps=8)
    assert images.shape == (len(masks), 1, 16, 16)
    matched = foreground_dice(images, masks)
    shuffled = foreground_dice(images, masks.roll(1, dims=0))
    assert matched > shuffled + 0.1 and matched > 0.4, (matched, shuffled)
    assert "val_dice" in read_scalars(os.path.dirname(final))


@pytest.mark.e2e
def test_a_controlnet_declares_the_metrics_its_validation_reports(chain, tmp_path, monkeypatch):
    seen = record_validations(monkeypatch)
    control = copy.deepcopy(TINY_CONTROLNET)
    control["path"]["root"] = str(tmp_path / "experiments")
    control["ldm"]["pretrained"] = chain[1]
    control["train"].update(max_train_steps=1, validation_steps=1, checkpointing_steps=1000)
    control["val"].update(num_samples=2, num_inference_steps=2, max_batches=1)
    assert run_trainer(control, tmp_path) == 0
    assert seen and all(declared == reported for declared, reported in seen)


@pytest.mark.e2e
def test_conditioning_scale_zero_reproduces_the_base_ldm_exactly(chain):
    from models.controlnet.pipeline import ControlNetPipeline
    from models.ldm.pipeline import LDMPipeline

    _, ldm_final, final = chain
    masks = held_out_masks(4)
    controlled = ControlNetPipeline.from_final(final)(masks, seeds=[3, 4, 5, 6], conditioning_scale=0.0)
    base = LDMPipeline.from_final(ldm_final)(None, seeds=[3, 4, 5, 6])
    assert torch.equal(controlled, base)
    steered = ControlNetPipeline.from_final(final)(masks, seeds=[3, 4, 5, 6], conditioning_scale=1.0)
    assert not torch.equal(steered, base)


@pytest.mark.e2e
def test_a_controlnet_over_an_ldm_whose_condition_enters_the_time_embedding(chain, tmp_path, capsys):
    """The class label reaches the UNet through its time embedding (with FiLM and coordinate channels):
    the ControlNet, a copy of that UNet's encoder, is given the same class embedding input."""
    from models.controlnet.pipeline import ControlNetPipeline
    from models.ldm.pipeline import LDMPipeline

    autoencoder, _, _ = chain
    ldm = copy.deepcopy(TINY_MASK_LDM)
    ldm["path"]["root"] = str(tmp_path / "experiments")
    ldm["vae"]["pretrained"] = os.path.join(autoencoder, "net_g")
    ldm["condition"] = {"type": "class", "key": "label", "num_classes": 2, "inject": "time_embedding"}
    ldm["network"].update(
        with_conditioning=True, resnet_time_scale_shift="scale_shift", coordinate_channels=True
    )
    ldm["train"].update(max_train_steps=2, validation_steps=2)
    assert run_trainer(ldm, tmp_path, name="ldm.yml") == 0
    ldm_final = os.path.join(run_folder(ldm), "final")
    control = copy.deepcopy(TINY_CONTROLNET)
    control["path"]["root"] = ldm["path"]["root"]
    control["ldm"]["pretrained"] = ldm_final
    control["train"].update(max_train_steps=2, validation_steps=2, checkpointing_steps=2)
    assert run_trainer(control, tmp_path, name="controlnet.yml") == 0
    final = os.path.join(run_folder(control), "final")

    masks, labels, seeds = held_out_masks(2), torch.tensor([0, 1]), [3, 4]
    pipe = ControlNetPipeline.from_final(final)
    base = LDMPipeline.from_final(ldm_final)(labels, seeds=seeds, num_inference_steps=4)
    off = pipe(masks, labels, seeds=seeds, conditioning_scale=0.0, num_inference_steps=4)
    assert torch.equal(off, base)
    swapped = pipe(masks, labels.flip(0), seeds=seeds, num_inference_steps=4)
    assert not torch.equal(swapped, pipe(masks, labels, seeds=seeds, num_inference_steps=4))

    # generate.py --control takes the LDM's condition too: one per control, or one for all
    import scripts.generate as generate

    folder = tmp_path / "masks"
    folder.mkdir()
    for name, mask in zip(("a", "b"), masks):
        tifffile.imwrite(folder / f"{name}.tif", mask.numpy().astype(np.float32))
    common = ["--run", final, "--control", str(folder), "--steps", "4", "--seed", "3"]
    assert generate.main([*common, "--labels", "0", "1", "--out", str(tmp_path / "each")]) == 0
    written = np.stack([tifffile.imread(tmp_path / "each" / f"{n}.tif") for n in ("a", "b")])
    np.testing.assert_allclose(
        written, pipe(masks, labels, seeds=seeds, num_inference_steps=4).squeeze(1).numpy(), atol=1e-5
    )
    assert generate.main([*common, "--labels", "1", "--out", str(tmp_path / "all")]) == 0
    assert generate.main([*common, "--labels", "0", "1", "1", "--out", str(tmp_path / "bad")]) == 2
    assert generate.main([*common, "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "There are 2 controls but 3 conditions" in err and "give --labels" in err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "none").exists()


@pytest.mark.e2e
def test_generate_with_a_folder_of_controls(chain, tmp_path):
    import scripts.generate as generate

    _, _, final = chain
    controls = tmp_path / "masks"
    controls.mkdir()
    for i, mask in enumerate(held_out_masks(3)):
        tifffile.imwrite(controls / f"m{i}.tif", mask.numpy().astype(np.float32))
    args = ["--run", final, "--control", str(controls), "--out", str(tmp_path / "gen"), "--steps", "4"]
    assert generate.main(args) == 0
    image = tifffile.imread(tmp_path / "gen" / "m1.tif")
    assert image.shape == (16, 16) and image.dtype == np.float32
    assert (tmp_path / "gen" / "grid.png").is_file()


@pytest.mark.e2e
def test_random_latent_samples_are_finite_and_in_the_training_range(chain, tmp_path):
    import scripts.vae_sample as vae_sample

    autoencoder, _, _ = chain
    assert vae_sample.main(["--run", autoencoder, "--num-samples", "6", "--out", str(tmp_path / "s")]) == 0
    samples = np.stack([tifffile.imread(tmp_path / "s" / f"sample_{i:04d}.tif") for i in range(6)])
    assert samples.shape == (6, 16, 16) and np.isfinite(samples).all()
    # the shapes images span [0, 1]: the samples stay in it (up to a small overshoot) and are not flat
    assert np.percentile(samples, 1) > -0.15 and np.percentile(samples, 99) < 1.15
    assert samples.std() > 0.02
    assert (tmp_path / "s" / "grid.png").is_file()


@pytest.mark.e2e
def test_bad_control_folders_are_one_sentence(chain, tmp_path, capsys):
    import scripts.generate as generate

    _, _, final = chain
    cases = {
        "size": (
            np.zeros((13, 21), np.float32),
            "are 1x13x21 (channels x size), but this ControlNet takes 1x16x16",
        ),
        "nan": (np.full((16, 16), np.nan, np.float32), "has 256 NaN and 0 Inf pixels"),
        "broken": (None, "is not a readable TIF file"),
    }
    for name, (array, expected) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        if array is None:
            (folder / "m.tif").write_bytes(b"not a tif")
        else:
            tifffile.imwrite(folder / "m.tif", array)
        args = ["--run", final, "--control", str(folder), "--out", str(tmp_path / "gen"), "--steps", "2"]
        assert generate.main(args) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and expected in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "gen").exists()


def test_control_conditions_pair_by_name_count_and_size(monkeypatch):
    """How generate.py --control gives each control its LDM condition: image conditions by file name (and
    of the controls' size), other conditions one for all or one per control."""
    import types

    import models.controlnet.generation as generation
    from utils.errors import UserError

    images = torch.arange(3.0)[:, None, None, None].expand(3, 1, 8, 8)
    stats = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    given = {"names": ["a", "b", "c"], "inputs": images, "stats": stats}
    monkeypatch.setattr(
        generation, "network_inputs", lambda *args: (given["names"], given["inputs"], given["stats"])
    )
    pipe = types.SimpleNamespace(condition_type="image", ldm=None)
    paired, paired_stats = generation.control_conditions(pipe, None, ["c", "a"], (8, 8), "f", None, None)
    assert paired[:, 0, 0, 0].tolist() == [2.0, 0.0] and paired_stats[:, 1].tolist() == [3.0, 1.0]
    with pytest.raises(UserError, match=r"The controls \['z'\] have no condition TIF of the same name"):
        generation.control_conditions(pipe, None, ["a", "z"], (8, 8), "f", None, None)
    with pytest.raises(UserError, match="are 8x8 but the controls are 16x16"):
        generation.control_conditions(pipe, None, ["a"], (16, 16), "f", None, None)

    pipe.condition_type = "vector"
    given.update(names=["s0"], inputs=torch.tensor([[1.0, 2.0]]), stats=None)
    expanded, _ = generation.control_conditions(pipe, None, ["a", "b"], (8, 8), None, [[1, 2]], None)
    assert expanded.tolist() == [[1.0, 2.0], [1.0, 2.0]]
    given.update(inputs=torch.zeros(3, 2))
    with pytest.raises(UserError, match="There are 2 controls but 3 conditions"):
        generation.control_conditions(pipe, None, ["a", "b"], (8, 8), None, [[0, 0]] * 3, None)


@pytest.mark.e2e
def test_more_sampling_steps_than_the_ldms_timesteps_are_refused_at_start(chain, tmp_path, capsys):
    _, ldm_final, _ = chain
    control = copy.deepcopy(TINY_CONTROLNET)
    control["path"]["root"] = str(tmp_path / "experiments")
    control["ldm"]["pretrained"] = ldm_final
    control["val"]["num_inference_steps"] = 101
    assert run_trainer(control, tmp_path) == 2
    error = capsys.readouterr().err
    assert "'val.num_inference_steps' is 101, more than the 100 of the LDM of 'ldm.pretrained'" in error
    assert not os.path.exists(run_folder(control))
