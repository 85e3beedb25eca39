"""What can be checked before the first step is: the metric `train.best_metric` names (against the
model's declared validation metrics), scheduler arguments against the learning rate, patch and image
sizes against the network's downsampling, and head sizes against the data's classes. Each is one
sentence, exit 2, and no run folder."""

import functools
import os

import pytest

from engine.base_model import BaseModel
from models.example.Denoise_model import Denoise_model
from tests.conftest import run_folder, run_trainer
from tests.helpers.bad_inputs import assert_one_sentence, denoise, ldm, multitask, vae

pytestmark = pytest.mark.e2e  # every test here runs the trainer

# A checkpoint is due before the first validation: the refusal must come before it is written.
EARLY_CHECKPOINT = {"max_train_steps": 4, "validation_steps": 4, "checkpointing_steps": 1}

CASES = [
    (
        "best metric of a denoiser",
        denoise(train__best_metric="val_psrn"),
        "'train.best_metric' is 'val_psrn' (did you mean 'val_psnr'?), which Denoise_model does not report",
    ),
    (
        "best metric a VAE logs only without patches",
        vae(train__best_metric="val_loss", train__patched=True, train__patch_size=8),
        "'train.best_metric' is 'val_loss'",
    ),
    (
        "best metric of a class the head does not have",
        multitask(train__best_metric="val_segmentation_dice_c3"),
        "'train.best_metric' is 'val_segmentation_dice_c3' (did you mean 'val_segmentation_dice_c2'?)",
    ),
    (
        "best metric of a head without a loss term",
        multitask(train__best_metric="val_class_acuracy"),
        "(did you mean 'val_class_accuracy'?)",
    ),
    (
        "polynomial decay below its end rate",
        denoise(train__scheduler={"type": "polynomial"}, train__optim__learning_rate=1e-8),
        "'train.optim.learning_rate' is 1e-08, but 'train.scheduler.type: polynomial' decays to 1e-07",
    ),
    (
        "polynomial decay of a GAN's own rate",
        vae(train__scheduler={"type": "polynomial"}, train__disc_learning_rate=1e-7),
        "'train.disc_learning_rate' is 1e-07, but 'train.scheduler.type: polynomial'",
    ),
    (
        "polynomial decay of power 0",
        denoise(train__scheduler={"type": "polynomial", "lr_power": 0.0}),
        "'train.scheduler.lr_power' is 0, which makes 'train.scheduler.type: polynomial' a constant",
    ),
    (
        "patch size the VAE cannot halve twice",
        vae(network__block_out_channels=[8, 16, 16], train__patched=True, train__patch_size=6),
        "'train.patch_size' is 6, but VAE_model's networks need every side a multiple of 4; use e.g. 8",
    ),
    (
        "image size the VAE cannot halve twice",
        vae(network__block_out_channels=[8, 16, 16], datasets__train__image_size=18),
        "'datasets.train.image_size' is 18, so the images of 'datasets.train' (SyntheticShapesDataset) are "
        "18x18, but VAE_model's networks need every side a multiple of 4",
    ),
    (
        "validation image size the multi-task autoencoder cannot halve",
        multitask(datasets__val__image_size=15),
        "'datasets.val.image_size' is 15, so the images of 'datasets.val'",
    ),
    (
        "segmentation head with fewer classes than the masks",
        multitask(
            network__heads=[
                {"type": "RGBHead", "name": "rgb", "out_channels": 1},
                {"type": "SegmentationHead", "name": "segmentation", "num_classes": 2},
                {"type": "ClassificationHead", "name": "class", "num_classes": 2, "hidden_channels": 16},
            ]
        ),
        "'network.heads[1].num_classes' (head 'segmentation') is 2, but 'datasets.train' "
        "(SyntheticMasksDataset) with 'datasets.train.num_kinds' holds 3 classes in 'mask' (values 0 to 2); set it "
        "to at least 3.",
    ),
    (
        "classification head with fewer classes than the labels",
        multitask(
            datasets__train__num_kinds=3,
            datasets__val__num_kinds=3,
            network__heads=[
                {"type": "RGBHead", "name": "rgb", "out_channels": 1},
                {"type": "SegmentationHead", "name": "segmentation", "num_classes": 4},
                {"type": "ClassificationHead", "name": "class", "num_classes": 2, "hidden_channels": 16},
            ],
        ),
        "'network.heads[2].num_classes' (head 'class') is 2, but 'datasets.train' (SyntheticMasksDataset) "
        "with 'datasets.train.num_kinds' holds 3 classes in 'label'",
    ),
]


@pytest.mark.parametrize("config, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_at_start_without_a_run_folder(config, expected, tmp_path, capsys):
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(EARLY_CHECKPOINT)
    for block in config["datasets"].values():
        block["size"] = min(block.get("size", 16), 16)
    status = run_trainer(config, tmp_path)
    assert_one_sentence(capsys.readouterr().err, status, expected)
    assert not os.path.exists(run_folder(config))


def test_a_non_finite_best_metric_is_one_warning_and_training_goes_on(tmp_path, monkeypatch, caplog):
    import utils.metrics.image as image

    psnr, calls = image.psnr, []

    @functools.wraps(psnr)  # the same options, which the config check reads off its signature
    def nan_once(pred, target, **options):  # not finite at the first validation only
        calls.append(1)
        return float("nan") if len(calls) == 1 else psnr(pred, target, **options)

    monkeypatch.setattr(image, "psnr", nan_once)
    config = denoise(train__best_metric="val_psnr")
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=4, validation_steps=2, checkpointing_steps=100)
    config["val"].update(max_batches=1)
    assert run_trainer(config, tmp_path) == 0
    warnings = [r.getMessage() for r in caplog.records if "'train.best_metric'" in r.getMessage()]
    assert warnings == [
        "step 2: 'train.best_metric' val_psnr is not finite at this validation; best/ is not written yet and "
        "training goes on."
    ]
    with open(os.path.join(run_folder(config), "best", "best.json")) as f:
        assert '"step": 4' in f.read()


def test_an_undeclared_model_checks_best_metric_at_its_first_validation(tmp_path, monkeypatch, capsys):
    """A model that cannot say its names is not refused at start; the first validation names the
    mistake and, with no checkpoint written yet, leaves no run folder to refuse the corrected rerun."""
    monkeypatch.setattr(Denoise_model, "validation_metric_names", BaseModel.validation_metric_names)
    config = denoise(train__best_metric="val_psrn")
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=2, validation_steps=2, checkpointing_steps=100)
    status = run_trainer(config, tmp_path)
    assert_one_sentence(capsys.readouterr().err, status, "'train.best_metric' is 'val_psrn' (did you mean")
    assert not os.path.exists(run_folder(config))
    config["train"]["best_metric"] = "val_psnr"
    assert run_trainer(config, tmp_path) == 0


def test_a_warm_up_as_long_as_the_run_is_one_warning(tmp_path, caplog):
    config = denoise(train__scheduler={"type": "cosine", "lr_warmup_steps": 50})
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=2, validation_steps=100, checkpointing_steps=100)
    del config["datasets"]["val"]
    assert run_trainer(config, tmp_path) == 0
    notes = [r.getMessage() for r in caplog.records if "lr_warmup_steps" in r.getMessage()]
    assert notes == [
        "'train.scheduler.lr_warmup_steps' is 50, not fewer than the run's 2 steps: the learning rate "
        "rises for the whole run and never reaches 'train.optim.learning_rate'."
    ]


def test_an_ldm_checks_its_images_against_the_vae_and_unet_together(stage1, tmp_path, capsys):
    config = ldm(datasets__train__image_size=18, datasets__val__image_size=18)
    config["vae"]["pretrained"] = stage1
    config["network"]["backend"] = "monai"  # halves the latents once more: 18 -> 9 latents do not fit
    config["network"]["num_head_channels"] = [0, 16]
    config["path"]["root"] = str(tmp_path / "experiments")
    status = run_trainer(config, tmp_path)
    assert_one_sentence(
        capsys.readouterr().err, status, "LDM_model's networks need every side a multiple of 4"
    )
    assert not os.path.exists(run_folder(config))


def test_an_ldm_class_condition_is_checked_against_the_labels(stage1, tmp_path, capsys):
    data = {"type": "SyntheticMasksDataset", "size": 16, "image_size": 16, "num_kinds": 3}
    config = ldm(datasets={"train": dict(data), "val": dict(data)})
    config.update(vae={"pretrained": stage1}, condition={"type": "class", "key": "label", "num_classes": 2})
    config["val"]["gt_key"] = "image"
    config["path"]["root"] = str(tmp_path / "experiments")
    status = run_trainer(config, tmp_path)
    expected = "'condition.num_classes' is 2, but 'datasets.train' (SyntheticMasksDataset) with 'datasets.train.num_kinds' holds 3 classes in 'label'"
    assert_one_sentence(capsys.readouterr().err, status, expected)
    assert not os.path.exists(run_folder(config))
