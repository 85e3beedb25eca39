"""A VQ-VAE as stage 1: latents made outside its encoder (an LDM's samples, `scripts/vae_sample.py`'s
random draws) are snapped to the codebook before decoding, the unscaled latent being the one snapped."""

import copy
import os

import numpy as np
import pytest
import tifffile
import torch

from models.archs.autoencoder_kl_arch import AutoencoderKL_arch, AutoencoderKL_config
from models.archs.autoencoder_outputs import decode_generated
from models.archs.vqvae_arch import VQVAE_arch, VQVAE_config
from tests.conftest import run_folder, run_trainer
from tests.helpers import TINY_VAE, in_folder, ldm_config
from tests.helpers.configs import TINY_VQ_ARCH

TINY_VQ = {**TINY_VQ_ARCH, "num_vq_embeddings": 32, "sample_size": 16}


def nearest_codes(vae, z):
    """Each spatial vector of `z` replaced by its nearest codebook row, computed here by brute force."""
    codebook = vae.vq_model.quantize.embedding.weight
    flat = z.movedim(1, -1).reshape(-1, codebook.shape[1])
    rows = codebook[torch.cdist(flat, codebook).argmin(dim=1)]
    return rows.reshape(*z.movedim(1, -1).shape).movedim(-1, 1)


@torch.no_grad()
def test_a_generated_latent_decodes_through_the_nearest_codes_of_its_unscaled_value():
    torch.manual_seed(0)
    vae = VQVAE_arch(VQVAE_config(**TINY_VQ)).eval()
    vae.config.scaling_factor = 0.25  # unscaled = z * 4: snapping the scaled z would pick other codes
    z = torch.randn(2, 4, 8, 8)
    snapped = nearest_codes(vae, vae.unscale_latents(z))
    assert not torch.equal(nearest_codes(vae, z), snapped)
    torch.testing.assert_close(decode_generated(vae, z), vae.decode(snapped))
    assert not torch.allclose(decode_generated(vae, z), vae.decode(vae.unscale_latents(z)), atol=1e-3)


@torch.no_grad()
def test_lfq_snaps_to_its_sign_codes_and_a_kl_vae_decodes_as_it_is():
    torch.manual_seed(0)
    lfq = VQVAE_arch(VQVAE_config(**TINY_VQ, quantizer="lfq")).eval()
    z = torch.randn(2, lfq.latent_channels, 8, 8)
    codes = lfq.lookup_free_quantizer(z)[0]
    assert codes.abs().unique().numel() == 1  # every entry one magnitude: a sign code
    torch.testing.assert_close(decode_generated(lfq, z), lfq.decode(codes))
    assert not torch.allclose(decode_generated(lfq, z), lfq.decode(z), atol=1e-3)

    kl_keys = {k: v for k, v in TINY_VQ.items() if k != "num_vq_embeddings"}
    kl = AutoencoderKL_arch(AutoencoderKL_config(**kl_keys, scaling_factor=0.5)).eval()
    z = torch.randn(2, kl.latent_channels, 8, 8)
    torch.testing.assert_close(decode_generated(kl, z), kl.decode(z / 0.5))


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    """A tiny VQ-VAE run's final/ folder, trained once for the module."""
    tmp = tmp_path_factory.mktemp("vq")
    config = in_folder(TINY_VAE, tmp)
    config["network"] = {"type": "VQVAE", **TINY_VQ}
    config["train"].update(max_train_steps=6, validation_steps=6, checkpointing_steps=1000)
    assert run_trainer(config, tmp) == 0
    return os.path.join(run_folder(config), "final")


@pytest.mark.e2e
def test_vae_sample_of_a_vq_vae_decodes_the_snapped_latents(vq_run, tmp_path):
    import scripts.vae_sample as vae_sample

    out = tmp_path / "s"
    assert vae_sample.main(["--run", vq_run, "--num-samples", "3", "--seed", "4", "--out", str(out)]) == 0
    written = np.stack([tifffile.imread(out / f"sample_{i:04d}.tif") for i in range(3)])
    vae = VQVAE_arch.from_pretrained(os.path.join(vq_run, "net_g")).eval()
    noise = torch.stack(
        [torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(4 + i)) for i in range(3)]
    )
    with torch.no_grad():
        unscaled = vae.unscale_latents(noise)
        snapped = vae.decode(nearest_codes(vae, unscaled)).squeeze(1).numpy()
        unsnapped = vae.decode(unscaled).squeeze(1).numpy()
    np.testing.assert_allclose(written, snapped, atol=1e-5)
    assert not np.allclose(written, unsnapped, atol=1e-3)


@pytest.mark.e2e
def test_an_ldm_on_a_vq_vae_decodes_its_samples_through_the_codebook(vq_run, tmp_path, monkeypatch):
    import scripts.generate as generate
    from dataset.synthetic_shapes_dataset import SyntheticShapesDataset

    snaps = []
    decode = VQVAE_arch.decode

    def recording(self, z, quantize=False):
        snaps.append(quantize)
        return decode(self, z, quantize=quantize)

    monkeypatch.setattr(VQVAE_arch, "decode", recording)
    config = ldm_config(tmp_path, os.path.join(vq_run, "net_g"))
    config["network"] = {**copy.deepcopy(config["network"]), "in_channels": 4, "out_channels": 4}
    config["train"].update(max_train_steps=4, validation_steps=4)
    config["val"].update(num_samples=2, num_inference_steps=2)
    assert run_trainer(config, tmp_path) == 0
    assert snaps and all(snaps)  # validation samples

    conditions = tmp_path / "conditions"
    conditions.mkdir()
    data = SyntheticShapesDataset({"size": 2, "image_size": 16, "seed": 1})
    for i in range(2):
        tifffile.imwrite(conditions / f"c{i}.tif", data[i]["cond"][0].numpy().astype(np.float32))
    snaps.clear()
    final = os.path.join(run_folder(config), "final")
    args = ["--run", final, "--conditions", str(conditions), "--out", str(tmp_path / "gen"), "--steps", "2"]
    assert generate.main(args) == 0
    assert snaps[-1]  # the samples' decode; the conditions' size check decodes their own codes first
    image = tifffile.imread(tmp_path / "gen" / "c1.tif")
    assert image.shape == (16, 16) and np.isfinite(image).all()
