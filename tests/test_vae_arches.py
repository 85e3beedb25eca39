"""The stage-1 arches: save/load round trips, the diffusers export, PTI-LDM-VAE checkpoints, posteriors.

Tiny networks (widths 8-16, 32x32 images, 16^3 volumes) so the whole file runs in seconds on a CPU.
"""

import importlib.util
import math

import diffusers
import numpy as np
import pytest
import torch
from monai.networks.nets import AutoencoderKL as MonaiAutoencoderKL

from models.archs.autoencoder_kl_arch import AutoencoderKL_arch, AutoencoderKL_config
from models.archs.autoencoder_outputs import DiagonalGaussianPosterior
from models.archs.lookup_free_quantizer import LookupFreeQuantizer
from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch, MonaiAutoencoderKL_config
from models.archs.patch_discriminator_arch import PatchDiscriminator_arch, PatchDiscriminator_config
from models.archs.vqvae_arch import VQVAE_arch, VQVAE_config
from tests.helpers.configs import TINY_VQ_ARCH
from utils.errors import ConfigError, DataError

HAS_EINOPS = importlib.util.find_spec("einops") is not None  # MONAI's attention blocks need it

TINY_KL = dict(
    in_channels=1,
    out_channels=1,
    block_out_channels=[8, 16],
    layers_per_block=1,
    latent_channels=2,
    norm_num_groups=4,
    sample_size=32,
)
# MONAI's attention needs einops, which is optional; these tiny MONAI nets do without it.
TINY_MONAI = dict(
    in_channels=1,
    out_channels=1,
    channels=[8, 16],
    latent_channels=2,
    num_res_blocks=1,
    norm_num_groups=4,
    with_encoder_nonlocal_attn=False,
    with_decoder_nonlocal_attn=False,
)
TINY_VQ = TINY_VQ_ARCH


def _images(shape=(2, 1, 32, 32), seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _assert_same_reconstruction(model_a, model_b, x):
    """Both models in eval mode give identical outputs, on the posterior mode and on a seeded sample."""
    model_a.eval()
    model_b.eval()
    with torch.no_grad():
        for sample_posterior in (False, True):
            out_a = model_a(x, sample_posterior=sample_posterior, generator=torch.Generator().manual_seed(3))
            out_b = model_b(x, sample_posterior=sample_posterior, generator=torch.Generator().manual_seed(3))
            torch.testing.assert_close(out_a.reconstruction, out_b.reconstruction, rtol=0, atol=0)


# --- the posterior ---------------------------------------------------------------------------------


def test_posterior_kl_is_the_closed_form_and_sigma_is_not_a_log_variance():
    mean = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    sigma = torch.tensor([[0.5, 2.0], [1.0, 0.1]])
    kl = DiagonalGaussianPosterior.from_sigma(mean, sigma).kl()
    by_hand = [
        0.5 * sum(m * m + s * s - 1.0 - math.log(s * s) for m, s in zip(row_m, row_s))
        for row_m, row_s in zip(mean.tolist(), sigma.tolist())
    ]
    torch.testing.assert_close(kl, torch.tensor(by_hand))
    # The same distribution given by its log-variance.
    torch.testing.assert_close(DiagonalGaussianPosterior(mean, torch.log(sigma**2)).kl(), kl)
    # N(0, I) has no KL to itself.
    assert DiagonalGaussianPosterior(torch.zeros(3, 4), torch.zeros(3, 4)).kl().abs().max() == 0


def test_posterior_sample_is_reproducible_and_has_the_posterior_statistics():
    posterior = DiagonalGaussianPosterior(torch.full((1, 20000), 1.5), torch.full((1, 20000), math.log(0.25)))
    a = posterior.sample(torch.Generator().manual_seed(0))
    b = posterior.sample(torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert abs(a.mean().item() - 1.5) < 0.02 and abs(a.std().item() - 0.5) < 0.02
    assert torch.equal(posterior.mode(), posterior.mean)


# --- AutoencoderKL (diffusers) ---------------------------------------------------------------------


def test_autoencoder_kl_keeps_diffusers_initialisation():
    torch.manual_seed(0)
    ours = AutoencoderKL_arch(AutoencoderKL_config(**TINY_KL))
    torch.manual_seed(0)
    theirs = diffusers.AutoencoderKL(
        **TINY_KL,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
    )
    for name, tensor in theirs.state_dict().items():
        assert torch.equal(ours.diffusers_vae.state_dict()[name], tensor), name


def test_autoencoder_kl_interface_and_round_trip(tmp_path):
    model = AutoencoderKL_arch(AutoencoderKL_config(**TINY_KL, scaling_factor=0.7))
    x = _images()
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert out.latents.shape == (2, 2, 16, 16) and model.latent_channels == 2
    assert out.latent_dist.kl().shape == (2,)
    # The posterior is diffusers' own one, read through our class: same KL (diffusers sums over C, H, W).
    diffusers_posterior = model.diffusers_vae.encode(x).latent_dist
    torch.testing.assert_close(out.latent_dist.kl(), diffusers_posterior.kl())
    z = torch.randn(2, 2, 16, 16)
    torch.testing.assert_close(model.unscale_latents(model.scale_latents(z)), z)
    torch.testing.assert_close(model.scale_latents(z), 0.7 * z)
    out.reconstruction.mean().backward()
    assert model.last_decoder_layer().grad is not None

    model.save_pretrained(tmp_path / "saved")
    reloaded = AutoencoderKL_arch.from_pretrained(tmp_path / "saved")
    assert reloaded.config.scaling_factor == 0.7
    _assert_same_reconstruction(model, reloaded, x)


def test_autoencoder_kl_with_attention_levels_round_trips(tmp_path):
    config = AutoencoderKL_config(
        **TINY_KL,
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
    )
    model = AutoencoderKL_arch(config)
    model.save_pretrained(tmp_path)
    _assert_same_reconstruction(model, AutoencoderKL_arch.from_pretrained(tmp_path), _images())


def test_autoencoder_kl_exports_to_diffusers_with_identical_outputs(tmp_path):
    model = AutoencoderKL_arch(AutoencoderKL_config(**TINY_KL)).eval()
    model.config.scaling_factor = 0.42  # what the VAE training model stores after measuring the latents
    model.export_diffusers(tmp_path / "vae")
    exported = diffusers.AutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    assert exported.config.scaling_factor == 0.42
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(
            exported(x, sample_posterior=False).sample,
            model(x, sample_posterior=False).reconstruction,
            rtol=0,
            atol=0,
        )
        torch.testing.assert_close(
            exported.decode(torch.ones(1, 2, 16, 16)).sample,
            model.decode(torch.ones(1, 2, 16, 16)),
            rtol=0,
            atol=0,
        )


def test_autoencoder_kl_starts_from_a_diffusers_folder(tmp_path):
    # A pipeline folder with the VAE in its `vae` subfolder, as Stable Diffusion checkpoints are laid out.
    source = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=[8, 16],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        scaling_factor=0.13025,
        shift_factor=0.1,
        use_quant_conv=False,
    ).eval()
    source.save_pretrained(tmp_path / "pipeline" / "vae")
    model = AutoencoderKL_arch.from_diffusers(tmp_path / "pipeline", subfolder="vae")
    assert model.config.scaling_factor == 0.13025 and model.config.shift_factor == 0.1
    assert model.config.use_quant_conv is False and model.config.block_out_channels == [8, 16]
    x = _images((1, 3, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, sample_posterior=False).reconstruction,
            source(x, sample_posterior=False).sample,
            rtol=0,
            atol=0,
        )
    torch.testing.assert_close(model.scale_latents(torch.ones(1)), torch.tensor([0.9 * 0.13025]))

    with pytest.raises(DataError, match="pipeline"):
        AutoencoderKL_arch.from_diffusers(tmp_path / "pipeline")


def test_autoencoder_kl_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="norm_num_groups"):
        AutoencoderKL_arch(AutoencoderKL_config(**{**TINY_KL, "block_out_channels": [8, 18]}))
    with pytest.raises(ConfigError, match="down_block_types"):
        AutoencoderKL_arch(AutoencoderKL_config(**TINY_KL, down_block_types=["DownEncoderBlock2D"]))


# --- MonaiAutoencoderKL ------------------------------------------------------------------------------


def test_monai_autoencoder_kl_kl_uses_sigma_correctly():
    model = MonaiAutoencoderKL_arch(MonaiAutoencoderKL_config(**TINY_MONAI))
    x = _images()
    mu, sigma = model.monai_autoencoder.encode(x)
    closed_form = 0.5 * (mu**2 + sigma**2 - 1.0 - torch.log(sigma**2)).sum(dim=(1, 2, 3))
    posterior = model.encode(x).latent_dist
    torch.testing.assert_close(posterior.kl(), closed_form)
    torch.testing.assert_close(posterior.std, sigma)
    # The PTI-LDM-VAE mistake (sigma read as a log-variance) gives another number.
    wrong = 0.5 * (mu**2 + torch.exp(sigma) - 1.0 - sigma).sum(dim=(1, 2, 3))
    assert not torch.allclose(wrong, closed_form)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 1, 32, 32)), (3, (1, 1, 16, 16, 16))])
def test_monai_autoencoder_kl_round_trip(tmp_path, spatial_dims, shape):
    model = MonaiAutoencoderKL_arch(MonaiAutoencoderKL_config(**TINY_MONAI, spatial_dims=spatial_dims))
    x = _images(shape)
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert out.latents.shape == (shape[0], 2) + tuple(s // 2 for s in shape[2:])
    out.reconstruction.mean().backward()
    assert model.last_decoder_layer().grad is not None
    model.save_pretrained(tmp_path)
    reloaded = MonaiAutoencoderKL_arch.from_pretrained(tmp_path)
    assert reloaded.config.spatial_dims == spatial_dims
    _assert_same_reconstruction(model, reloaded, x)


@pytest.mark.skipif(not HAS_EINOPS, reason="MONAI's attention blocks need einops")
def test_monai_autoencoder_kl_with_attention_round_trip(tmp_path):
    config = MonaiAutoencoderKL_config(
        **{**TINY_MONAI, "with_encoder_nonlocal_attn": True, "with_decoder_nonlocal_attn": True},
        attention_levels=[False, True],
    )
    model = MonaiAutoencoderKL_arch(config)
    model.save_pretrained(tmp_path)
    _assert_same_reconstruction(model, MonaiAutoencoderKL_arch.from_pretrained(tmp_path), _images())


def _pti_ldm_vae_autoencoder(channels=(8, 16)):
    """The network PTI-LDM-VAE trains and saves: MONAI's AutoencoderKL itself."""
    torch.manual_seed(1)
    config = {**TINY_MONAI, "channels": channels, "attention_levels": (False,) * len(channels)}
    return MonaiAutoencoderKL(spatial_dims=2, **config).eval()


@pytest.mark.parametrize("layout", ["autoencoder_epoch", "checkpoint_epoch", "ddp_autoencoder_epoch"])
def test_monai_autoencoder_kl_loads_pti_ldm_vae_checkpoints(tmp_path, layout):
    monai_net = _pti_ldm_vae_autoencoder()
    state_dict = monai_net.state_dict()
    if layout == "autoencoder_epoch":
        content = state_dict
    elif layout == "ddp_autoencoder_epoch":
        content = {f"module.{key}": tensor for key, tensor in state_dict.items()}
    else:  # the full resume checkpoint, numpy scalars included
        content = {
            "epoch": 7,
            "autoencoder_state_dict": state_dict,
            "discriminator_state_dict": {"conv.weight": torch.zeros(2)},
            "optimizer_g_state_dict": torch.optim.Adam(monai_net.parameters()).state_dict(),
            "best_val_loss": np.float64(0.25),
        }
    path = tmp_path / f"{layout}7.pth"
    torch.save(content, path)

    model = MonaiAutoencoderKL_arch.from_monai_checkpoint(path, **TINY_MONAI)
    x = _images()
    with torch.no_grad():
        mu, sigma = monai_net.encode(x)
        torch.testing.assert_close(model.decode(mu), monai_net.decode(mu), rtol=0, atol=0)
        torch.testing.assert_close(
            model(x, sample_posterior=False).reconstruction, monai_net.reconstruct(x), rtol=0, atol=0
        )
        posterior = model.encode(x).latent_dist
        torch.testing.assert_close(posterior.mean, mu, rtol=0, atol=0)
        torch.testing.assert_close(posterior.std, sigma)


def test_monai_checkpoint_errors_name_the_file(tmp_path):
    model = MonaiAutoencoderKL_arch(MonaiAutoencoderKL_config(**TINY_MONAI))
    with pytest.raises(DataError, match="missing.pth"):
        model.load_monai_checkpoint(tmp_path / "missing.pth")

    pickled = tmp_path / "needs_pickle.pth"
    torch.save(
        {"autoencoder_state_dict": _pti_ldm_vae_autoencoder().state_dict(), "args": DataError("x")}, pickled
    )
    with pytest.raises(DataError, match="needs_pickle.pth.*full pickle"):
        model.load_monai_checkpoint(pickled)

    wider = tmp_path / "wider.pth"
    torch.save(_pti_ldm_vae_autoencoder(channels=(8, 32)).state_dict(), wider)
    with pytest.raises(DataError, match="wider.pth.*shape"):
        model.load_monai_checkpoint(wider)

    other = tmp_path / "other.pth"
    torch.save({"unet_state_dict": {"w": torch.zeros(1)}}, other)
    with pytest.raises(DataError, match="other.pth.*autoencoder_state_dict"):
        model.load_monai_checkpoint(other)


def test_monai_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="attention_levels"):
        MonaiAutoencoderKL_arch(MonaiAutoencoderKL_config(**TINY_MONAI, attention_levels=[False]))
    with pytest.raises(ConfigError, match="spatial_dims"):
        MonaiAutoencoderKL_arch(MonaiAutoencoderKL_config(**TINY_MONAI, spatial_dims=1))


# --- PatchDiscriminator ------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 1, 32, 32)), (3, (1, 1, 16, 16, 16))])
def test_patch_discriminator_round_trip(tmp_path, spatial_dims, shape):
    config = PatchDiscriminator_config(spatial_dims=spatial_dims, channels=8, num_layers_d=2)
    disc = PatchDiscriminator_arch(config)
    x = _images(shape)
    disc(x).mean().backward()  # one training step's forward: moves the BatchNorm running statistics
    disc.save_pretrained(tmp_path)
    reloaded = PatchDiscriminator_arch.from_pretrained(tmp_path)
    disc.eval()
    with torch.no_grad():
        logits, features = disc(x, return_features=True)
        torch.testing.assert_close(reloaded(x), logits, rtol=0, atol=0)
    assert logits.dim() == len(shape) and logits.shape[1] == 1
    assert len(features) == config.num_layers_d + 1


# --- VQVAE ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantizer", ["vq", "lfq"])
def test_vqvae_interface_and_round_trip(tmp_path, quantizer):
    model = VQVAE_arch(VQVAE_config(**TINY_VQ, quantizer=quantizer))
    x = _images()
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert out.latents.shape == (2, model.latent_channels, 16, 16)
    assert out.codebook_indices.shape == (2, 16, 16)
    assert int(out.codebook_indices.max()) < 16
    assert 1.0 <= out.perplexity.item() <= 16.0
    (out.reconstruction.mean() + out.quant_loss).backward()
    assert model.last_decoder_layer().grad is not None
    assert model.vq_model.encoder.conv_in.weight.grad is not None  # straight-through estimator
    model.save_pretrained(tmp_path)
    reloaded = VQVAE_arch.from_pretrained(tmp_path)
    _assert_same_reconstruction(model, reloaded, x)


def test_vq_loss_is_codebook_plus_beta_commitment():
    model = VQVAE_arch(VQVAE_config(**TINY_VQ, commitment_beta=0.25))
    x = _images()
    encoded = model.encode(x)
    z_e = model.vq_model.encode(x).latents
    codes = model.vq_model.quantize.embedding.weight[encoded.codebook_indices].permute(0, 3, 1, 2)
    torch.testing.assert_close(encoded.quantized, codes)  # the nearest codes, forward value
    squared = (z_e - codes).pow(2).mean()
    torch.testing.assert_close(encoded.quant_loss, 1.25 * squared)
    # Gradients: the codebook term moves the codes with weight 1, the commitment term the encoder with beta.
    grad_codes = torch.autograd.grad(
        encoded.quant_loss, model.vq_model.quantize.embedding.weight, retain_graph=True
    )[0]
    z_e_leaf = z_e.detach().requires_grad_()
    codes_leaf = codes.detach().requires_grad_()
    by_hand = (z_e_leaf.detach() - codes_leaf).pow(2).mean() + 0.25 * (z_e_leaf - codes_leaf.detach()).pow(
        2
    ).mean()
    by_hand.backward()
    expected_codes = torch.zeros_like(grad_codes).index_add_(
        0, encoded.codebook_indices.flatten(), codes_leaf.grad.permute(0, 2, 3, 1).reshape(-1, 4)
    )
    torch.testing.assert_close(grad_codes, expected_codes)
    # Perplexity: exp(entropy) of the code histogram of this batch.
    counts = torch.bincount(encoded.codebook_indices.flatten(), minlength=16).float()
    probs = counts / counts.sum()
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    torch.testing.assert_close(encoded.perplexity, entropy.exp())


def test_lookup_free_quantizer_by_hand():
    lfq = LookupFreeQuantizer(
        codebook_dim=2, commitment_beta=0.25, entropy_weight=0.1, diversity_gamma=1.0, temperature=1.0
    )
    z = torch.tensor([[[[0.5]], [[-2.0]]], [[[-0.1]], [[0.3]]]])  # [batch 2, dims 2, 1, 1]
    quantized, loss, perplexity, indices = lfq(z)
    torch.testing.assert_close(quantized, torch.tensor([[[[1.0]], [[-1.0]]], [[[-1.0]], [[1.0]]]]))
    # Bit i of the index is 1 where dimension i is positive (dimension 0 the most significant).
    assert indices.flatten().tolist() == [0b10, 0b01]
    commitment = ((0.5 - 1) ** 2 + (-2 + 1) ** 2 + (-0.1 + 1) ** 2 + (0.3 - 1) ** 2) / 4
    codes = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    probs = torch.softmax(2.0 * z.flatten(2).squeeze(-1) @ codes.T, dim=-1)  # distance logits, temperature 1
    per_sample = -(probs * probs.log()).sum(-1).mean()
    average = probs.mean(0)
    codebook_entropy = -(average * average.log()).sum()
    torch.testing.assert_close(loss, torch.tensor(0.25 * commitment) + 0.1 * (per_sample - codebook_entropy))
    torch.testing.assert_close(perplexity, torch.tensor(2.0))  # two codes used once each


def test_vqvae_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="quantizer"):
        VQVAE_arch(VQVAE_config(**TINY_VQ, quantizer="fsq"))
    with pytest.raises(ConfigError, match="num_vq_embeddings"):
        VQVAE_arch(VQVAE_config(**{**TINY_VQ, "num_vq_embeddings": 12}, quantizer="lfq"))
