"""`type: PSFDecoder`: field coordinates -> PSF kernel through a small convolutional decoder.

    coordinates (N, D) -> Fourier features -> MLP -> (base_channels, g, g) grid
                       -> num_upsamples x [2x nearest upsampling, two 3x3 convs] -> centre crop to K

Unlike `PSF_MLP`, whose last layer has a weight per output pixel, the convolutions share weights across
the kernel, which suits large kernels; any kernel size works, odd ones included.
"""

import math

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.config_signature import keys_from_signature
from models.archs.psf_mlp_arch import FourierFeatures, check_output, coordinate_mlp, kernel_activation


# Plain conv blocks rather than diffusers' `Decoder`: that one needs channel counts divisible by its 32
# normalisation groups and adds ResNet and attention blocks at every level, an order of magnitude more
# compute for 16 to 64 pixel kernels, where a few convolutions already fit the smooth blur shapes.
class ConvKernelDecoder(nn.Module):
    """(N, in_features) -> (N, out_channels, K, K) logits, for any K (centre-cropped to K)."""

    def __init__(
        self, in_features: int, out_channels: int, kernel_size: int, base_channels: int, num_upsamples: int
    ):
        super().__init__()
        self.kernel_size = kernel_size
        # The decoded map covers K, with at most 2**num_upsamples - 1 extra pixels cropped: any K works.
        self.grid_size = math.ceil(kernel_size / 2**num_upsamples)
        self.base_channels = base_channels
        self.to_grid = nn.Linear(in_features, base_channels * self.grid_size**2)
        blocks, channels = [], base_channels
        for _ in range(num_upsamples):
            # Halve the channels as the map grows, as decoders do, but keep enough to shape a kernel.
            out = max(channels // 2, 16)
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels, out, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(out, out, 3, padding=1),
                nn.SiLU(),
            ]
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.to_kernel = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        g = self.grid_size
        grid = torch.nn.functional.silu(self.to_grid(features)).reshape(-1, self.base_channels, g, g)
        logits = self.to_kernel(self.blocks(grid))
        start = (logits.shape[-1] - self.kernel_size) // 2
        return logits[..., start : start + self.kernel_size, start : start + self.kernel_size]


class PSFDecoder_config(PretrainedConfig):
    """in_dim: coordinates per point; out_channels: one per wavelength; kernel_size: any K;
    output: peak | sum | softplus (see psf_mlp_arch.py)."""

    model_type = "PSFDecoder"

    @keys_from_signature
    def __init__(
        self,
        in_dim: int = 3,
        out_channels: int = 3,
        kernel_size: int = 32,
        num_frequencies: int = 6,
        hidden_dim: int = 256,
        num_layers: int = 2,
        base_channels: int = 64,
        # With deeper stacks of these plain convs the output starts near zero and training stalls at the
        # empty kernel (measured at kernel 32).
        num_upsamples: int = 1,
        output: str = "peak",
        **kwargs,
    ):
        super().__init__(**kwargs)


class PSFDecoder_arch(PreTrainedModel):
    config_class = PSFDecoder_config
    main_input_name = "coords"

    def __init__(self, config: PSFDecoder_config):
        super().__init__(config)
        check_output(config.output)
        self.embed = FourierFeatures(config.in_dim, config.num_frequencies)
        self.mlp, width = coordinate_mlp(self.embed.out_dim, config.hidden_dim, config.num_layers)
        self.decoder = ConvKernelDecoder(
            width, config.out_channels, config.kernel_size, config.base_channels, config.num_upsamples
        )
        self.post_init()

    def _init_weights(self, module):
        # Keep PyTorch's initialisation (transformers' N(0, 0.02) would shrink every conv).
        pass

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return kernel_activation(self.decoder(self.mlp(self.embed(coords))), self.config.output)
