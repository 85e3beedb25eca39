"""The VAE loss pieces against numbers worked out by hand, the adaptive GAN weight, the perceptual loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.archs.autoencoder_kl_arch import AutoencoderKL_arch, AutoencoderKL_config
from models.archs.autoencoder_outputs import DiagonalGaussianPosterior
from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch, MonaiAutoencoderKL_config
from models.archs.patch_discriminator_arch import PatchDiscriminator_arch, PatchDiscriminator_config
from models.archs.vqvae_arch import VQVAE_arch, VQVAE_config
from utils.errors import ConfigError, DataError
from utils.losses.perceptual import PerceptualLoss, VGG16Features, save_vgg16_weights
from utils.losses.vae import (
    adaptive_gan_weight,
    decoded_image,
    discriminator_loss,
    generator_loss,
    kl_loss,
    recon_loss,
)


def softplus(v):
    return math.log1p(math.exp(v))


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


# --- reconstruction ------------------------------------------------------------------------------------


def test_l1_and_mse_by_hand():
    pred = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    target = torch.tensor([[0.5, 1.0], [0.0, 0.0]])
    assert recon_loss(pred, target, "l1").item() == pytest.approx((0.5 + 0 + 2 + 1) / 4)
    assert recon_loss(pred, target, "mse").item() == pytest.approx((0.25 + 0 + 4 + 1) / 4)


LOGITS = [0.0, 2.0, -1.0, 3.0]
TARGETS = [1.0, 0.0, 0.5, 1.0]


def _bce_by_hand(logit, target):
    p = sigmoid(logit)
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_bce_takes_logits_and_targets_in_zero_one():
    expected = sum(_bce_by_hand(x, t) for x, t in zip(LOGITS, TARGETS)) / 4
    got = recon_loss(torch.tensor(LOGITS), torch.tensor(TARGETS), "bce")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(decoded_image(torch.tensor(LOGITS), "bce"), torch.sigmoid(torch.tensor(LOGITS)))
    assert torch.equal(decoded_image(torch.tensor(LOGITS), "l1"), torch.tensor(LOGITS))


def test_bce_focal_by_hand():
    def focal(logit, target, gamma):
        p = sigmoid(logit)
        p_target = p * target + (1 - p) * (1 - target)
        return (1 - p_target) ** gamma * _bce_by_hand(logit, target)

    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS)
    for gamma in (2.0, 0.5):
        expected = sum(focal(x, t, gamma) for x, t in zip(LOGITS, TARGETS)) / 4
        got = recon_loss(logits, targets, "bce_focal", focal_gamma=gamma)
        assert got.item() == pytest.approx(expected, rel=1e-6)
    assert recon_loss(logits, targets, "bce_focal", focal_gamma=0.0).item() == pytest.approx(
        recon_loss(logits, targets, "bce").item(), rel=1e-6
    )


# --- KL ------------------------------------------------------------------------------------------------


def test_kl_loss_reductions_by_hand():
    # mean 1, variance 1: each element gives 0.5 * (1 + 1 - 1 - 0) = 0.5; 4 elements a sample, 2 samples.
    posterior = DiagonalGaussianPosterior(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2))
    assert kl_loss(posterior).item() == pytest.approx(2.0)
    assert kl_loss(posterior, "batchmean").item() == pytest.approx(2.0)
    assert kl_loss(posterior, "mean").item() == pytest.approx(0.5)
    assert kl_loss(posterior, "sum").item() == pytest.approx(4.0)
    # sigma = 2 (variance 4, log-variance log 4): 0.5 * (0 + 4 - 1 - log 4) per element.
    wide = DiagonalGaussianPosterior.from_sigma(torch.zeros(1, 3), torch.full((1, 3), 2.0))
    assert kl_loss(wide).item() == pytest.approx(3 * 0.5 * (4 - 1 - math.log(4)), rel=1e-6)
    with pytest.raises(ConfigError, match="batchmean"):
        kl_loss(posterior, "batch_mean")


# --- adversarial ---------------------------------------------------------------------------------------

REAL = torch.tensor([2.0, -0.5]).view(1, 1, 2, 1)
FAKE = torch.tensor([0.5, -3.0]).view(1, 1, 2, 1)


def test_discriminator_losses_by_hand():
    hinge = 0.5 * ((max(0, 1 - 2.0) + max(0, 1 + 0.5)) / 2 + (max(0, 1 + 0.5) + max(0, 1 - 3.0)) / 2)
    lsgan = 0.5 * (((2.0 - 1) ** 2 + (-0.5 - 1) ** 2) / 2 + (0.5**2 + 3.0**2) / 2)
    vanilla = 0.5 * ((softplus(-2.0) + softplus(0.5)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2)
    assert discriminator_loss(REAL, FAKE, "hinge").item() == pytest.approx(hinge)
    assert discriminator_loss(REAL, FAKE, "lsgan").item() == pytest.approx(lsgan)
    assert discriminator_loss(REAL, FAKE, "vanilla").item() == pytest.approx(vanilla, rel=1e-6)
    # vanilla is the BCE of real against 1 and fake against 0.
    bce = 0.5 * (
        F.binary_cross_entropy_with_logits(REAL, torch.ones_like(REAL))
        + F.binary_cross_entropy_with_logits(FAKE, torch.zeros_like(FAKE))
    )
    assert discriminator_loss(REAL, FAKE, "vanilla").item() == pytest.approx(bce.item(), rel=1e-6)


def test_generator_losses_by_hand():
    assert generator_loss(FAKE, "hinge").item() == pytest.approx(-(0.5 - 3.0) / 2)
    assert generator_loss(FAKE, "lsgan").item() == pytest.approx(((0.5 - 1) ** 2 + (-3.0 - 1) ** 2) / 2)
    assert generator_loss(FAKE, "vanilla").item() == pytest.approx(
        (softplus(-0.5) + softplus(3.0)) / 2, rel=1e-6
    )
    with pytest.raises(ConfigError, match="hinge"):
        generator_loss(FAKE, "hing")
    with pytest.raises(ConfigError, match="lsgan"):
        discriminator_loss(REAL, FAKE, "wgan")


def test_adaptive_gan_weight_is_the_clamped_detached_ratio_of_gradient_norms():
    layer = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    nll = (layer * torch.tensor([3.0, 4.0])).sum()  # gradient (3, 4), norm 5
    g = (layer * torch.tensor([0.0, 2.0])).sum()  # gradient (0, 2), norm 2
    weight = adaptive_gan_weight(nll, g, layer)
    assert weight.item() == pytest.approx(5.0 / (2.0 + 1e-4))
    assert not weight.requires_grad
    tiny_g = (layer * 1e-12).sum()
    assert adaptive_gan_weight(nll, tiny_g, layer, max_weight=100.0).item() == 100.0
    with torch.no_grad():  # validation: nothing to differentiate
        assert adaptive_gan_weight((layer * 2).sum(), (layer * 3).sum(), layer).item() == 0.0


TINY_ARCHES = {
    "AutoencoderKL": lambda: AutoencoderKL_arch(
        AutoencoderKL_config(
            in_channels=1,
            out_channels=1,
            block_out_channels=[8, 16],
            layers_per_block=1,
            latent_channels=2,
            norm_num_groups=4,
        )
    ),
    "MonaiAutoencoderKL": lambda: MonaiAutoencoderKL_arch(
        MonaiAutoencoderKL_config(
            channels=[8, 16],
            latent_channels=2,
            num_res_blocks=1,
            norm_num_groups=4,
            with_encoder_nonlocal_attn=False,
            with_decoder_nonlocal_attn=False,
        )
    ),
    "VQVAE": lambda: VQVAE_arch(
        VQVAE_config(
            block_out_channels=[8, 16],
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            num_vq_embeddings=16,
        )
    ),
}


@pytest.mark.parametrize("arch_name", sorted(TINY_ARCHES))
def test_one_generator_step_with_every_arch(arch_name):
    """The VAE training model's generator step, piece by piece: every arch fits the shared interface."""
    torch.manual_seed(0)
    net = TINY_ARCHES[arch_name]()
    disc = PatchDiscriminator_arch(PatchDiscriminator_config(channels=8, num_layers_d=2))
    x = torch.rand(2, 1, 32, 32)
    out = net(x)
    rec = recon_loss(out.reconstruction, x, "l1")
    reg = kl_loss(out.latent_dist) if out.latent_dist is not None else out.quant_loss
    g = generator_loss(disc(out.reconstruction), "hinge")
    weight = adaptive_gan_weight(rec, g, net.last_decoder_layer())
    assert torch.isfinite(weight) and weight.item() > 0
    (rec + 1e-6 * reg + weight * g).backward()
    assert net.last_decoder_layer().grad is not None

    d = discriminator_loss(disc(x), disc(out.reconstruction.detach()), "hinge")
    d.backward()
    assert all(p.grad is not None for p in disc.parameters())


# --- perceptual ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_vgg16_weights(tmp_path_factory.mktemp("vgg") / "vgg16.safetensors")


def test_perceptual_loss_is_zero_for_identical_inputs_and_differentiable(vgg_weights):
    perceptual = PerceptualLoss(vgg_weights)
    target = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert perceptual(target, target.clone()).item() == 0.0
    pred = (
        target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    ).requires_grad_()
    loss = perceptual(pred, target)
    assert loss.item() > 0
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in perceptual.parameters())  # the backbone stays frozen
    perceptual.train()
    assert not perceptual.backbone.training


def test_perceptual_loss_reads_torch_files_too_and_handles_volumes(tmp_path, vgg_weights):
    # A torchvision-style state dict (features + classifier) saved with torch.save loads the same weights.
    backbone = VGG16Features()
    state_dict = {**backbone.state_dict(), "classifier.0.weight": torch.zeros(2, 2)}
    torch.save(state_dict, tmp_path / "vgg16.pth")
    save_vgg16_weights(tmp_path / "same.safetensors", state_dict)
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    from_pth = PerceptualLoss(tmp_path / "vgg16.pth")(x, y)
    from_safetensors = PerceptualLoss(tmp_path / "same.safetensors")(x, y)
    assert from_pth.item() == pytest.approx(from_safetensors.item())

    perceptual = PerceptualLoss(vgg_weights, layers=("relu1_2", "relu2_2"), slices_per_axis_3d=2)
    volume = torch.rand(1, 1, 16, 16, 16)
    assert perceptual(volume, volume).item() == 0.0
    assert perceptual(volume, torch.rand(1, 1, 16, 16, 16)).item() > 0


def test_perceptual_loss_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nowhere.safetensors"):
        PerceptualLoss(tmp_path / "nowhere.safetensors")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(DataError, match="wrong.pth.*VGG16"):
        PerceptualLoss(tmp_path / "wrong.pth")
