"""The loss pieces of VAE training: reconstruction, KL, adversarial (PatchGAN) and the adaptive GAN weight.
Pure functions of tensors, combined by the VAE training model (the perceptual loss: `perceptual.py`):

    out = net(x)
    image = decoded_image(out.reconstruction, recon_type)
    rec = recon_loss(out.reconstruction, x, recon_type) + perceptual_weight * perceptual(image, x)
    reg = kl_loss(out.latent_dist)                       # VQ arches: out.quant_loss
    g = generator_loss(disc(image), gan_type)
    w = adaptive_gan_weight(rec, g, net.last_decoder_layer()) if adaptive else 1.0
    loss = rec + kl_weight * reg + disc_weight * w * g   # the adversarial term only from step disc_start on
    d_loss = discriminator_loss(disc(x), disc(image.detach()), gan_type)   # the discriminator step
"""

import torch
import torch.nn.functional as F

from utils.errors import ConfigError, did_you_mean

RECON_TYPES = ("l1", "mse", "bce", "bce_focal")
GAN_TYPES = ("hinge", "lsgan", "vanilla")
KL_REDUCTIONS = ("batchmean", "mean", "sum")


def recon_loss(pred: torch.Tensor, target: torch.Tensor, recon_type: str = "l1", focal_gamma: float = 2.0):
    """Reconstruction loss, averaged over every element.

    `l1`, `mse`: `pred` is the image. `bce`, `bce_focal`: `pred` holds logits (the decoder has no final
    sigmoid) and `target` lies in [0, 1]; `decoded_image` turns such a prediction into the image.
    `bce_focal` weighs each element's BCE by (1 - p_t) ** focal_gamma, p_t being the probability the
    prediction gives the target (p_t = p * t + (1 - p) * (1 - t), p = sigmoid(logit)), so elements already
    reconstructed well count less (Lin et al., 2017); focal_gamma = 0 is plain BCE.
    """
    if recon_type == "l1":
        return F.l1_loss(pred, target)
    if recon_type == "mse":
        return F.mse_loss(pred, target)
    if recon_type == "bce":
        return F.binary_cross_entropy_with_logits(pred, target)
    if recon_type == "bce_focal":
        bce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
        probability = torch.sigmoid(pred)
        p_target = probability * target + (1.0 - probability) * (1.0 - target)
        return ((1.0 - p_target) ** focal_gamma * bce).mean()
    raise ConfigError(
        f"Unknown reconstruction loss 'recon_type: {recon_type}'{did_you_mean(recon_type, RECON_TYPES)}; "
        f"use one of {', '.join(RECON_TYPES)}."
    )


def check_recon_activation(where: str, loss: str, output_activation: str | None) -> None:
    """A loss that reads the decoder output as logits (`where` names the key that asks for it, `loss` the
    loss) must not follow an `output_activation`: the sigmoid would be applied on top of it."""
    if output_activation is not None:
        raise ConfigError(
            f"'{where}: {loss}' reads the decoder output as logits and applies the sigmoid itself, but "
            f"'network.output_activation' is {output_activation}; set output_activation to null, or use "
            f"an l1/mse (MSE/L1) loss on the activated output."
        )


def decoded_image(pred: torch.Tensor, recon_type: str) -> torch.Tensor:
    """The image a decoder output stands for: sigmoid of the logits for the BCE losses, else itself."""
    return torch.sigmoid(pred) if recon_type in ("bce", "bce_focal") else pred


def kl_loss(posterior, reduction: str = "batchmean") -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of an arch's posterior (`out.latent_dist`), reduced to a scalar.

    `batchmean` (default): summed over the latent dimensions, averaged over the batch, as in latent
    diffusion and PTI-LDM-VAE (kl_weight around 1e-6 there). `mean`: averaged over every latent element,
    which does not grow with the latent size (kl_weight near 1e-3 is comparable). `sum`: over everything.
    """
    per_sample = posterior.kl()
    if reduction == "batchmean":
        return per_sample.mean()
    if reduction == "mean":
        return per_sample.sum() / posterior.mean.numel()
    if reduction == "sum":
        return per_sample.sum()
    raise ConfigError(
        f"Unknown KL reduction '{reduction}'{did_you_mean(reduction, KL_REDUCTIONS)}; "
        f"use one of {', '.join(KL_REDUCTIONS)}."
    )


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, gan_type: str = "hinge"):
    """The discriminator's loss on real and (detached) fake patch logits, halved as in latent diffusion.

    hinge:   0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))
    lsgan:   0.5 * (mean((real - 1)^2) + mean(fake^2))
    vanilla: 0.5 * (mean(softplus(-real)) + mean(softplus(fake)))    i.e. BCE with targets 1 and 0
    """
    if gan_type == "hinge":
        return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())
    if gan_type == "lsgan":
        return 0.5 * ((real_logits - 1.0).pow(2).mean() + fake_logits.pow(2).mean())
    if gan_type == "vanilla":
        return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())
    raise _unknown_gan_type(gan_type)


def generator_loss(fake_logits: torch.Tensor, gan_type: str = "hinge") -> torch.Tensor:
    """The generator's (the decoder's) adversarial loss on the discriminator's logits of its output.

    hinge:   -mean(fake)
    lsgan:   mean((fake - 1)^2)
    vanilla: mean(softplus(-fake))      the non-saturating BCE with target 1
    """
    if gan_type == "hinge":
        return -fake_logits.mean()
    if gan_type == "lsgan":
        return (fake_logits - 1.0).pow(2).mean()
    if gan_type == "vanilla":
        return F.softplus(-fake_logits).mean()
    raise _unknown_gan_type(gan_type)


def _unknown_gan_type(gan_type: str) -> ConfigError:
    return ConfigError(
        f"Unknown adversarial loss 'gan_type: {gan_type}'{did_you_mean(gan_type, GAN_TYPES)}; "
        f"use one of {', '.join(GAN_TYPES)}."
    )


def adaptive_gan_weight(
    nll_loss: torch.Tensor,
    g_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """||grad nll|| / (||grad g|| + eps) at the decoder's last layer, clamped to [0, max_weight], detached.

    The latent-diffusion (taming-transformers) recipe: the adversarial term is scaled so its gradient at
    the decoder output is as large as the reconstruction's, whatever their raw magnitudes. `last_layer` is
    `net.last_decoder_layer()`. Without a graph to differentiate (validation, `torch.no_grad`) it is 0.
    """
    if not (nll_loss.requires_grad and g_loss.requires_grad):
        return torch.zeros((), device=g_loss.device)
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grad) / (torch.norm(g_grad) + eps)
    return torch.clamp(weight, 0.0, max_weight).detach()
