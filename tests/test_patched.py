"""`train.patched`: random-patch training and blended sliding-window inference, without seams."""

import copy
import os

import numpy as np
import pytest
import torch

from tests.conftest import read_scalars, run_folder, run_trainer
from tests.helpers import TINY_LDM, TINY_VAE
from utils.images.patches import random_windows, sliding_window


def test_windows_are_shared_across_an_image_and_its_latent():
    torch.manual_seed(0)
    image = torch.arange(2 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)
    latent = image[:, :, ::4, ::4]  # a factor-4 "latent" of the same image
    crop, latent_crop = random_windows([latent, image], (4, 4))
    assert crop.shape == (2, 1, 4, 4) and latent_crop.shape == (2, 1, 16, 16)
    assert torch.equal(latent_crop[:, :, ::4, ::4], crop)


def border_and_interior_error(error: np.ndarray, size: int, stride: int) -> tuple[float, float]:
    """Mean error on the pixels next to a window border (both sides) and on the rest."""
    width = error.shape[-1]
    border = np.zeros(width, dtype=bool)
    for start in range(0, width - size + 1, stride):
        for edge in (start, start + size - 1):
            border[max(edge - 1, 0) : edge + 2] = True
    mask = border[:, None] | border[None, :]
    return float(error[..., mask].mean()), float(error[..., ~mask].mean())


@pytest.mark.e2e
def test_vae_trains_on_patches_and_reconstructs_whole_images_without_seams(tmp_path):
    config = copy.deepcopy(TINY_VAE)
    config["path"]["root"] = str(tmp_path / "experiments")
    for phase in ("train", "val"):
        config["datasets"][phase]["image_size"] = 32
    config["network"]["sample_size"] = 16
    config["train"].update(
        max_train_steps=30, validation_steps=30, checkpointing_steps=1000, patched=True, patch_size=16
    )
    assert run_trainer(config, tmp_path) == 0
    scalars = read_scalars(run_folder(config))
    assert scalars["val_psnr"][30] > 15  # whole 32x32 images, reconstructed from 16x16 windows

    from dataset.synthetic_shapes_dataset import SyntheticShapesDataset
    from models.archs.autoencoder_kl_arch import AutoencoderKL_arch

    vae = AutoencoderKL_arch.from_pretrained(os.path.join(run_folder(config), "final", "net_g")).eval()
    data = SyntheticShapesDataset({"size": 16, "image_size": 32, "phase": "val"})
    x = torch.stack([data[i]["gt"] for i in range(16)])
    with torch.no_grad():
        blended = sliding_window(lambda p: vae(p, sample_posterior=False).reconstruction, x, (16, 16), 0.5)
    border, interior = border_and_interior_error((blended - x).abs().numpy(), 16, 8)
    assert border <= interior * 1.05, (border, interior)


def test_sliding_window_denoiser_matches_a_whole_pass_for_a_pointwise_network():
    """A network without spatial context gives the same prediction window by window: blending is exact."""
    from models.archs.condition_projector_arch import ConditionProjector_arch, ConditionProjector_config
    from models.ldm.patched import SlidingWindowDenoiser

    def unet(z, t, context):
        return z * 2 + context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1) + t.reshape(-1, 1, 1, 1) * 1e-3

    projector = ConditionProjector_arch(
        ConditionProjector_config(mode="class", num_classes=3, cross_attention_dim=8)
    )
    latents, labels, t = torch.randn(2, 2, 20, 20), torch.tensor([0, 2]), torch.tensor([7, 7])
    with torch.no_grad():
        whole = unet(latents, t, projector(labels))
        windows = SlidingWindowDenoiser(unet, projector, "class", (8, 8), 0.5)(latents, t, labels)
    torch.testing.assert_close(windows, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.e2e
def test_ldm_trains_on_windows_and_samples_whole_images(tmp_path):
    vae = copy.deepcopy(TINY_VAE)
    vae["path"]["root"] = str(tmp_path / "experiments")
    vae["train"].update(max_train_steps=2, validation_steps=2, checkpointing_steps=1000)
    assert run_trainer(vae, tmp_path, name="vae.yml") == 0
    config = copy.deepcopy(TINY_LDM)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["vae"]["pretrained"] = os.path.join(run_folder(vae), "final", "net_g")
    for phase in ("train", "val"):
        config["datasets"][phase]["image_size"] = 32
    config["train"].update(
        max_train_steps=3, validation_steps=3, patched=True, patch_size=16, patch_overlap=0.5
    )
    config["val"].update(num_samples=2, num_inference_steps=2)
    assert run_trainer(config, tmp_path, name="ldm.yml") == 0
    scalars = read_scalars(run_folder(config))
    assert np.isfinite(scalars["val_psnr"][3]) and np.isfinite(scalars["val_loss"][3])
    from models.ldm.pipeline import LDMPipeline

    pipe = LDMPipeline.from_final(os.path.join(run_folder(config), "final"))
    assert pipe.description["patched"] == {"window": [8, 8], "overlap": 0.5}  # 16x16 images, VAE factor 2
    assert pipe(torch.rand(2, 1, 32, 32), seeds=[0, 1], num_inference_steps=2).shape == (2, 1, 32, 32)
