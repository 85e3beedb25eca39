"""The 3D chain on tiny volumes: a MONAI 3D VAE, a 3D conditional LDM on its latents (loss falls, the
baselines are scored on volumes), and generate.py writing (D, H, W) TIF stacks and scoring them."""

import json
import os

import numpy as np
import pytest
import tifffile

from dataset.psf_stack_dataset import PSFStackDataset
from tests.helpers import monai_kl, read_scalars, run_folder, run_trainer
from tests.helpers.scripts import run_generate

pytestmark = pytest.mark.e2e  # every test here runs the trainer

# Through-focus PSF stacks of 8 planes of 16 x 16 pixels (coordinates as the condition), cheap rays.
STACKS = {
    "type": "PSFStackDataset",
    "spp": 256,
    "kernel_size": 16,
    "num_planes": 8,
    "focus_range_m": 1e-4,
    "wavelength_set_m": [450e-9, 650e-9],
    "depth_min": 1.0,
    "depth_max": 20.0,
}
VAE_3D = {
    "name": "vae3d",
    "model_type": "VAE_model",
    "report_to": "tensorboard",
    "seed": 3,
    "experiment_key": "run",
    "datasets": {
        "train": {**STACKS, "size": 32, "seed": 0, "cache": True},
        "val": {**STACKS, "size": 8, "seed": 1},
    },
    "network": monai_kl(3),
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 8,
        "max_train_steps": 8,
        "validation_steps": 8,
        "checkpointing_steps": 1000,
        "recon_type": "l1",
        "kl_weight": 1e-6,
    },
    "val": {"batch_size": 8, "metrics": {"psnr": {"data_range": 1.0}, "ssim": {"data_range": 1.0}}},
}
LDM_3D = {
    "name": "ldm3d",
    "model_type": "LDM_model",
    "report_to": "tensorboard",
    "seed": 5,
    "experiment_key": "run",
    "datasets": VAE_3D["datasets"],
    "vae": {"pretrained": None},
    "condition": {"type": "vector", "key": "coords", "inject": "time_embedding"},
    "network": {
        "type": "DiffusionUNet",
        "spatial_dims": 3,
        "in_channels": 2,
        "out_channels": 2,
        "channels": [16, 32],
        "attention_levels": [False, True],
        "num_head_channels": [0, 16],
        "num_res_blocks": 1,
        "with_conditioning": True,
        "cross_attention_dim": 32,
        "norm_num_groups": 8,
    },
    "diffusion": {"num_train_timesteps": 100, "beta_schedule": "cosine", "prediction_type": "sample"},
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 8,
        "max_train_steps": 30,
        "validation_steps": 30,
        "checkpointing_steps": 1000,
        "cache_latents": True,
    },
    "val": {
        "batch_size": 8,
        "num_inference_steps": 3,
        "num_samples": 4,
        "metrics": {"psnr": {"data_range": 1.0}, "ssim": {"data_range": 1.0}},
    },
}


def in_folder(config, tmp_path, **changes):
    config = json.loads(json.dumps(config))
    config["path"]["root"] = str(tmp_path / "experiments")
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def vae_3d(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vae3d")
    config = in_folder(VAE_3D, tmp)
    assert run_trainer(config, tmp) == 0
    return os.path.join(run_folder(config), "final", "net_g")


def test_3d_ldm_trains_scores_its_baselines_and_generates_stacks(vae_3d, tmp_path):
    config = in_folder(LDM_3D, tmp_path, vae={"pretrained": vae_3d})
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    scalars = read_scalars(run)
    losses = [scalars["train/mse"][s] for s in sorted(scalars["train/mse"])]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses  # the 3D UNet learns
    for name in ("val_psnr", "val_mean_target_psnr", "val_shuffled_psnr", "val_shuffled_ssim"):
        assert name in scalars, sorted(scalars)
    # the shuffled conditions give other samples (the condition reaches the UNet through its time embedding)
    assert scalars["val_shuffled_psnr"][30] != pytest.approx(scalars["val_psnr"][30], abs=1e-4)
    final = os.path.join(run, "final")
    description = json.load(open(os.path.join(final, "ldm.json")))
    assert len(description["latent_shape"]) == 4  # (C, D, H, W)
    from safetensors.torch import load_file

    assert load_file(os.path.join(final, "mean_target.safetensors"))["mean_target"].shape == (1, 8, 16, 16)

    vectors = tmp_path / "coords.txt"
    data = PSFStackDataset({**STACKS, "size": 3, "seed": 1})
    items = [data[i] for i in range(3)]
    vectors.write_text("\n".join(",".join(f"{v:g}" for v in item["coords"].tolist()) for item in items))
    targets = tmp_path / "targets"
    out = tmp_path / "gen"
    # the targets: the ray-traced stacks of the conditions, named as generate.py names its samples
    assert run_generate("--run", final, "--vectors", vectors, "--steps", 2, "--out", tmp_path / "names") == 0
    names = sorted(p.stem for p in (tmp_path / "names").glob("*.tif"))
    assert len(names) == 3
    targets.mkdir()
    for name, item in zip(names, items):
        tifffile.imwrite(targets / f"{name}.tif", item["gt"][0].numpy())
    assert (
        run_generate("--run", final, "--vectors", vectors, "--steps", 2, "--out", out, "--targets", targets)
        == 0
    )
    stack = tifffile.imread(out / f"{names[0]}.tif")
    assert stack.shape == (8, 16, 16) and stack.dtype == np.float32
    report = json.load(open(out / "metrics.json"))
    assert set(report["mean"]) == {"psnr", "ssim"} and len(report["samples"]) == 3
    assert "shuffled_condition_baseline" in report and "mean_target_baseline" in report
    assert os.path.isfile(out / "grid.png")
