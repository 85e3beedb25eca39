"""`type: PSF_MLP`: a coordinate network, field coordinates -> PSF kernel.

    coordinates (N, D) -> Fourier features -> MLP -> (N, C, K, K)

The coordinates are those `PSF_model` draws (field x, y and inverse depth, each in [-1, 1]). The last
layer predicts every pixel of every channel at once; `output` picks how the logits become a kernel (the
same choice in every PSF arch: `kernel_activation`).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.config_signature import keys_from_signature
from utils.errors import ConfigError

OUTPUTS = ("softplus", "peak", "sum")


class FourierFeatures(nn.Module):
    """x -> [x, sin(2^k pi x), cos(2^k pi x)] for k < num_frequencies.

    An MLP on raw coordinates is biased towards very smooth functions; PSFs change quickly towards
    the edge of the field and with defocus, and these features let it follow (NeRF's encoding).
    """

    def __init__(self, in_dim: int, num_frequencies: int):
        super().__init__()
        self.num_frequencies = num_frequencies
        self.out_dim = in_dim * (1 + 2 * num_frequencies)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        # Computed here rather than kept as a buffer: nothing to save, and nothing that
        # `from_pretrained` (which builds on the meta device) could leave uninitialised.
        powers = torch.arange(self.num_frequencies, device=coords.device, dtype=coords.dtype)
        angles = (coords.unsqueeze(-1) * math.pi * 2.0**powers).flatten(1)
        return torch.cat([coords, angles.sin(), angles.cos()], dim=-1)


def kernel_activation(logits: torch.Tensor, output: str) -> torch.Tensor:
    """(N, C, K, K) logits -> kernels, by `output`:

    softplus  non-negative, unconstrained (default of PSF_MLP and PSF_Emb).
    peak      exp(logits - their max over all channels): the brightest pixel is exactly 1, like a PSF
              with `train.psf_normalize: peak` (default of PSFDecoder: trained with MSE on these
              mostly-dark kernels, its softplus outputs sink below zero everywhere and stay there,
              which this form cannot do).
    sum       a softmax over each channel's pixels: every channel sums to 1 (`psf_normalize: sum`).
    """
    n, c, h, w = logits.shape
    if output == "sum":
        return logits.reshape(n, c, h * w).softmax(-1).reshape(n, c, h, w)
    if output == "peak":
        return torch.exp(logits - logits.reshape(n, -1).amax(-1).reshape(n, 1, 1, 1))
    return F.softplus(logits)


def coordinate_mlp(in_width: int, hidden_dim: int, num_layers: int) -> tuple[nn.Sequential, int]:
    """The SiLU MLP over Fourier features that both PSF coordinate networks start with; returns it and
    its output width."""
    layers, width = [], in_width
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_dim), nn.SiLU()]
        width = hidden_dim
    return nn.Sequential(*layers), width


def check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ConfigError(f"'network.output' is {output!r}; use one of {', '.join(OUTPUTS)}.")


class PSF_MLP_config(PretrainedConfig):
    """in_dim: coordinates per point (3: x, y, inverse depth); out_channels: one per wavelength;
    kernel_size: K of the (K, K) kernels; output: softplus | peak | sum (see `kernel_activation`)."""

    model_type = "PSF_MLP"

    @keys_from_signature
    def __init__(
        self,
        in_dim: int = 3,
        out_channels: int = 3,
        kernel_size: int = 32,
        num_frequencies: int = 6,
        hidden_dim: int = 256,
        num_layers: int = 4,
        output: str = "softplus",
        **kwargs,
    ):
        super().__init__(**kwargs)


class PSF_MLP_arch(PreTrainedModel):
    config_class = PSF_MLP_config
    main_input_name = "coords"

    def __init__(self, config: PSF_MLP_config):
        super().__init__(config)
        check_output(config.output)
        self.embed = FourierFeatures(config.in_dim, config.num_frequencies)
        self.mlp, width = coordinate_mlp(self.embed.out_dim, config.hidden_dim, config.num_layers)
        self.head = nn.Linear(width, config.out_channels * config.kernel_size**2)
        self.post_init()

    def _init_weights(self, module):
        # Keep PyTorch's initialisation: transformers' N(0, 0.02) starts a deep MLP nearly dead.
        pass

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        k = self.config.kernel_size
        logits = self.head(self.mlp(self.embed(coords))).reshape(-1, self.config.out_channels, k, k)
        return kernel_activation(logits, self.config.output)
