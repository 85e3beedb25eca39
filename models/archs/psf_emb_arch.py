"""`type: PSF_Emb`: a VAE over PSF kernels, conditioned on an embedding of their field coordinates.

    encode(psf, coords) -> q(z | psf, coords) = N(mean, exp(logvar))     the encoder sees the real PSF
    decode(z, coords)   -> kernel (N, C, K, K)
    forward(psf, coords, sample_posterior=True) -> AutoencoderOutput(reconstruction, latents, latent_dist)

`PSF_Emb_model` trains it with a KL term and the interpolation loss that makes latents of neighbouring
field points interpolate.
"""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.autoencoder_outputs import AutoencoderOutput, DiagonalGaussianPosterior
from models.archs.config_signature import keys_from_signature
from models.archs.psf_mlp_arch import FourierFeatures, check_output, kernel_activation
from utils.errors import ConfigError

POOLED_SIZE = 4  # the encoder's map is pooled to 4 x 4 whatever the kernel size


def mlp(width_in: int, width: int, num_layers: int) -> nn.Sequential:
    """num_layers (at least 1) linear layers with SiLU, ending at `width`."""
    if num_layers < 1:
        raise ConfigError(f"'network.num_layers' is {num_layers}; PSF_Emb needs at least 1.")
    layers = []
    for _ in range(num_layers):
        layers += [nn.Linear(width_in, width), nn.SiLU()]
        width_in = width
    return nn.Sequential(*layers)


class PSF_Emb_config(PretrainedConfig):
    """in_dim: coordinates per point; in_channels: PSF channels (one per wavelength); kernel_size: K;
    latent_dim: size of z; embed_dim: width of the coordinate embedding; encoder_channels: one strided
    conv per entry; output: softplus | peak | sum (see psf_mlp_arch.py)."""

    model_type = "PSF_Emb"

    @keys_from_signature
    def __init__(
        self,
        in_dim: int = 3,
        in_channels: int = 3,
        kernel_size: int = 32,
        latent_dim: int = 8,
        num_frequencies: int = 6,
        embed_dim: int = 64,
        encoder_channels: list[int] = (32, 64),
        hidden_dim: int = 256,
        num_layers: int = 2,
        output: str = "softplus",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder_channels = list(encoder_channels)


class PSF_Emb_arch(PreTrainedModel):
    """Encoder: strided 3x3 convs over the kernel, pooled to a 4 x 4 map (so any K works), concatenated
    with the coordinate embedding, then an MLP to the mean and log-variance. Decoder: the latent
    concatenated with the coordinate embedding, an MLP, and a linear layer to every pixel, as in
    `PSF_MLP`: on these mostly-dark kernels it learns within a few hundred steps where the
    convolutional decoder of `PSFDecoder` stalls near the empty kernel (measured, kernel 9 and 32).
    The embedding (Fourier features and a linear layer) is shared by both."""

    config_class = PSF_Emb_config
    main_input_name = "psf"

    def __init__(self, config: PSF_Emb_config):
        super().__init__(config)
        check_output(config.output)
        fourier = FourierFeatures(config.in_dim, config.num_frequencies)
        self.coord_embed = nn.Sequential(fourier, nn.Linear(fourier.out_dim, config.embed_dim), nn.SiLU())

        convs, channels = [], config.in_channels
        for out in config.encoder_channels:
            convs += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.SiLU()]
            channels = out
        self.encoder = nn.Sequential(*convs, nn.AdaptiveAvgPool2d(POOLED_SIZE), nn.Flatten())
        encoded = channels * POOLED_SIZE**2 + config.embed_dim
        self.encoder_mlp = mlp(encoded, config.hidden_dim, config.num_layers)
        self.to_posterior = nn.Linear(config.hidden_dim, 2 * config.latent_dim)

        self.decoder_mlp = mlp(config.latent_dim + config.embed_dim, config.hidden_dim, config.num_layers)
        self.decoder_head = nn.Linear(config.hidden_dim, config.in_channels * config.kernel_size**2)
        self.post_init()

    def _init_weights(self, module):
        # Keep PyTorch's initialisation (transformers' N(0, 0.02) would shrink every layer).
        pass

    def encode(self, psf: torch.Tensor, coords: torch.Tensor) -> DiagonalGaussianPosterior:
        features = torch.cat([self.encoder(psf), self.coord_embed(coords)], dim=-1)
        mean, logvar = self.to_posterior(self.encoder_mlp(features)).chunk(2, dim=-1)
        return DiagonalGaussianPosterior(mean, logvar)

    def decode(self, z: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        k = self.config.kernel_size
        hidden = self.decoder_mlp(torch.cat([z, self.coord_embed(coords)], dim=-1))
        logits = self.decoder_head(hidden).reshape(-1, self.config.in_channels, k, k)
        return kernel_activation(logits, self.config.output)

    def forward(
        self,
        psf: torch.Tensor,
        coords: torch.Tensor,
        sample_posterior: bool = True,
        generator: torch.Generator | None = None,
    ) -> AutoencoderOutput:
        posterior = self.encode(psf, coords)
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return AutoencoderOutput(
            reconstruction=self.decode(latents, coords), latents=latents, latent_dist=posterior
        )
