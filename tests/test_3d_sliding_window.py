"""`train.patched` on volumes: a 3D VAE trained on 16^3 windows validates, tests and reconstructs larger
volumes (and sizes its levels cannot halve) window by window, close to the whole-volume output."""

import copy
import json
import os

import numpy as np
import pytest
import tifffile
import torch

from tests.helpers import monai_kl, read_scalars, run_folder, run_trainer
from utils.images.patches import sliding_window
from utils.metrics.image import psnr

VAE_3D = {
    "name": "vae3d",
    "model_type": "VAE_model",
    "report_to": "tensorboard",
    "seed": 3,
    "experiment_key": "run",
    "datasets": {  # 16^3 training volumes, 24^3 validation volumes: larger than the window
        "train": {"type": "SyntheticShapesDataset", "spatial_dims": 3, "image_size": 16, "size": 64},
        "val": {"type": "SyntheticShapesDataset", "spatial_dims": 3, "image_size": 24, "size": 4},
    },
    "network": monai_kl(3),
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 3e-3},
        "batch_size": 4,
        "max_train_steps": 40,
        "validation_steps": 40,
        "checkpointing_steps": 1000,
        "recon_type": "l1",
        "kl_weight": 1e-6,
        "patched": True,
        "patch_size": 16,
        "patch_overlap": 0.5,
    },
    "val": {"batch_size": 4, "metrics": {"psnr": {"data_range": 1.0}}},
}


def reconstruct(vae, x):
    return vae(x, sample_posterior=False).reconstruction


def test_a_window_as_large_as_the_volume_is_the_whole_volume_pass():
    from models.archs import define_network

    torch.manual_seed(0)
    vae = define_network(
        {"type": "MonaiAutoencoderKL", **{k: v for k, v in VAE_3D["network"].items() if k != "type"}}
    )
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        whole = reconstruct(vae.eval(), x)
        windowed = sliding_window(lambda p: reconstruct(vae, p), x, (16, 16, 16), 0.5)
    torch.testing.assert_close(windowed, whole, atol=1e-5, rtol=1e-5)
    # a size the two levels cannot halve back (21): the whole pass returns another size, the windows do not
    odd = torch.rand(1, 1, 21, 18, 20)
    with torch.no_grad():
        assert reconstruct(vae, odd).shape[2:] != odd.shape[2:]
        assert sliding_window(lambda p: reconstruct(vae, p), odd, (16, 16, 16), 0.5).shape == odd.shape


@pytest.mark.e2e
def test_3d_vae_on_windows_validates_tests_and_reconstructs_larger_volumes(tmp_path):
    config = copy.deepcopy(VAE_3D)
    config["path"]["root"] = str(tmp_path / "experiments")
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    assert read_scalars(run)["val_psnr"][40] > 12  # 24^3 volumes from 16^3 windows

    # -test on the final weights: the same window-by-window pass, the same figure
    assert run_trainer(config, tmp_path, "-test", f"path.pretrained={run}/final") == 0
    (metrics,) = [
        os.path.join(root, "test_metrics.json")
        for root, _, files in os.walk(run)
        if "test_metrics.json" in files
    ]
    assert json.load(open(metrics))["metrics"]["val_psnr"] == pytest.approx(
        read_scalars(run)["val_psnr"][40], abs=0.05
    )

    # where both fit, the windows match the whole-volume pass closely (GroupNorm sees each window's own
    # statistics, so not exactly), and both are equally close to the volumes
    from dataset.synthetic_shapes_dataset import SyntheticShapesDataset
    from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch

    vae = MonaiAutoencoderKL_arch.from_pretrained(os.path.join(run, "final", "net_g")).eval()
    data = SyntheticShapesDataset({"size": 4, "image_size": 24, "spatial_dims": 3, "phase": "val"})
    x = torch.stack([data[i]["gt"] for i in range(4)])
    with torch.no_grad():
        whole = reconstruct(vae, x).clamp(0, 1).numpy()
        windowed = sliding_window(lambda p: reconstruct(vae, p), x, (16, 16, 16), 0.5).clamp(0, 1).numpy()
    agreement = psnr(windowed, whole, data_range=1.0)
    assert agreement > 25, agreement
    assert abs(psnr(windowed, x.numpy(), data_range=1.0) - psnr(whole, x.numpy(), data_range=1.0)) < 1.5

    # scripts/vae_reconstruct.py on (D, H, W) TIF stacks of sizes the two levels cannot halve back
    from scripts.vae_reconstruct import main as vae_reconstruct

    folder = tmp_path / "volumes"
    folder.mkdir()
    volumes = SyntheticShapesDataset({"size": 2, "image_size": 32, "spatial_dims": 3})
    for i in range(2):  # one size per folder (it is batched)
        tifffile.imwrite(folder / f"v{i}.tif", volumes[i]["gt"][0, :21, :26, :30].numpy().astype(np.float32))
    out = tmp_path / "recon"
    assert (
        vae_reconstruct(
            ["--run", f"{run}/final", "--input", str(folder), "--out", str(out), "--batch-size", "1"]
        )
        == 0
    )
    assert tifffile.imread(out / "v0.tif").shape == (21, 26, 30)
    assert tifffile.imread(out / "v1.tif").shape == (21, 26, 30)
    assert (out / "grid_input_recon_diff.png").is_file()
