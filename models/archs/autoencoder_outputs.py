"""What every autoencoder arch returns: the one interface the VAE training model is written against.

Each autoencoder arch (`AutoencoderKL`, `MonaiAutoencoderKL`, `VQVAE`) offers the same methods, whatever
library network it wraps:

    encode(x)                      -> EncoderOutput
        .latent_dist               KL arches: a `DiagonalGaussianPosterior` (None for VQ arches)
        .latent                    deterministic arches: the latent itself (None for KL and VQ arches)
        .quantized                 VQ arches: the quantised latent, straight-through gradient (None for KL)
        .quant_loss                VQ arches: codebook + beta * commitment (+ LFQ entropy) loss, a scalar
        .perplexity                VQ arches: exp(entropy of the codebook usage in this batch), a scalar
        .codebook_indices          VQ arches: the chosen code of every latent position
    decode(z)                      -> reconstruction tensor (for `bce`/`bce_focal` training: logits),
                                      through `config.output_activation` (`activate_output`)
    forward(x, sample_posterior=True, generator=None) -> AutoencoderOutput
        .reconstruction            the decoded tensor, same shape as x
        .latent_dist / .latents    the posterior (KL) and the latent that was decoded
        .quant_loss, .perplexity, .codebook_indices   (VQ)
    latent_channels                property: channels of the latent the diffusion model sees
    scale_latents(z)               latent -> what stage 2 diffuses: (z - shift) * config.scaling_factor
    unscale_latents(z)             the inverse, before `decode`
    snaps_to_codebook              class attribute, True for VQ arches: `decode_generated` quantises
    last_decoder_layer()           the weight of the decoder's last conv, for `adaptive_gan_weight`

`config.scaling_factor` (1 / std of the latents, measured by the VAE training model) is saved with
the weights.

A training step, for a KL arch (`utils/losses/vae.py` has the loss pieces):

    out = net(x)                                       # sample_posterior=True while training
    rec = recon_loss(out.reconstruction, x, recon_type)
    reg = kl_loss(out.latent_dist)                     # VQ arches: out.quant_loss
    loss = rec + kl_weight * reg
"""

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from utils.errors import ConfigError

# `output_activation` of the autoencoder configs: what bounds the decoded image. None leaves the last
# conv's output as it is; tanh suits images in [-1, 1], sigmoid images in [0, 1].
OUTPUT_ACTIVATIONS = ("tanh", "sigmoid")


def check_output_activation(name) -> None:
    if name is not None and name not in OUTPUT_ACTIVATIONS:
        raise ConfigError(
            f"'network.output_activation' is {name!r}; use tanh, sigmoid or null (no activation)."
        )


def activate_output(x: torch.Tensor, name: str | None) -> torch.Tensor:
    """The decoded image through the config's `output_activation` (itself, untouched, for None)."""
    if name is None:
        return x
    return torch.tanh(x) if name == "tanh" else torch.sigmoid(x)


def decode_generated(vae, z: torch.Tensor) -> torch.Tensor:
    """The decoder output for `z` in the scaled space stage 2 diffuses (a diffusion sample, a random draw).

    A VQ arch's decoder only ever sees codebook entries, so such a latent is snapped to the nearest codes
    first, as latent diffusion does for VQ-regularised autoencoders; the snap is of the unscaled latent,
    the space the codes live in.
    """
    z = vae.unscale_latents(z)
    if getattr(vae, "snaps_to_codebook", False):
        return vae.decode(z, quantize=True)
    return vae.decode(z)


class DiagonalGaussianPosterior:
    """A diagonal Gaussian q(z|x) = N(mean, exp(logvar)), the posterior of the KL autoencoders.

    Built from the log-variance (diffusers) or, with `from_sigma`, from the standard deviation (MONAI,
    whose `encode` returns sigma: reading sigma as a log-variance gives a wrong KL term).
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        # The same clamp as diffusers and MONAI: exp(logvar) stays finite in float16 and never reaches 0.
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    @classmethod
    def from_sigma(cls, mean: torch.Tensor, sigma: torch.Tensor) -> "DiagonalGaussianPosterior":
        # log(sigma^2) = 2 log(sigma); MONAI's sigma = exp(clamped logvar / 2) >= exp(-15): the log is finite.
        return cls(mean, 2.0 * torch.log(sigma))

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over every latent dimension (shape [batch]).

        Closed form: 0.5 * sum(mean^2 + var - 1 - logvar).
        """
        # In float32: a half-precision sum over a whole latent loses the small per-element terms.
        mean, logvar = self.mean.float(), self.logvar.float()
        per_element = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
        return per_element.flatten(start_dim=1).sum(dim=1)


@dataclass
class EncoderOutput(ModelOutput):
    """What `encode` returns: a posterior for KL arches, a quantised latent and its losses for VQ arches."""

    latent_dist: DiagonalGaussianPosterior | None = None
    latent: torch.Tensor | None = None
    quantized: torch.Tensor | None = None
    quant_loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    codebook_indices: torch.Tensor | None = None


@dataclass
class AutoencoderOutput(ModelOutput):
    """What `forward` returns. `latents` is the tensor that was decoded (a sample, the mode, or the codes)."""

    reconstruction: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    latent_dist: DiagonalGaussianPosterior | None = None
    quant_loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    codebook_indices: torch.Tensor | None = None
