"""`type: PatchDiscriminator`: MONAI's PatchGAN discriminator (2D or 3D), for the adversarial VAE loss.

It scores overlapping patches rather than the whole image: `forward(x)` returns one logit per patch
(shape [batch, out_channels, *patch grid]), which `utils/losses/vae.py`'s `discriminator_loss` and
`generator_loss` take. `forward(x, return_features=True)` also returns the intermediate feature maps
(for a feature-matching loss).
"""

import torch
from monai.networks.nets import PatchDiscriminator as MonaiPatchDiscriminator
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.config_signature import keys_from_signature
from utils.errors import ConfigError


class PatchDiscriminator_config(PretrainedConfig):
    """Defaults are MONAI's (a 3-layer PatchGAN with 64 base channels) for one-channel images.

    `norm` is a MONAI norm name (`BATCH`, `INSTANCE`, `GROUP`, ...); `activation` a MONAI activation name or
    a [name, {arguments}] pair. The channels double at each of the `num_layers_d` layers.
    """

    model_type = "PatchDiscriminator"

    @keys_from_signature
    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 64,
        num_layers_d: int = 3,
        kernel_size: int = 4,
        norm: str = "BATCH",
        activation: str | list = ("LEAKYRELU", {"negative_slope": 0.2}),
        bias: bool = False,
        padding: int = 1,
        dropout: float = 0.0,
        last_conv_kernel_size: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.activation = activation if isinstance(activation, str) else list(activation)


class PatchDiscriminator_arch(PreTrainedModel):
    config_class = PatchDiscriminator_config
    main_input_name = "x"

    def __init__(self, config: PatchDiscriminator_config):
        super().__init__(config)
        if config.spatial_dims not in (2, 3):
            raise ConfigError(
                f"'network.spatial_dims' is {config.spatial_dims}; PatchDiscriminator takes 2 or 3."
            )
        activation = config.activation if isinstance(config.activation, str) else tuple(config.activation)
        self.monai_discriminator = MonaiPatchDiscriminator(
            spatial_dims=config.spatial_dims,
            channels=config.channels,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            num_layers_d=config.num_layers_d,
            kernel_size=config.kernel_size,
            activation=activation,
            norm=config.norm,
            bias=config.bias,
            padding=config.padding,
            dropout=config.dropout,
            last_conv_kernel_size=config.last_conv_kernel_size,
        )
        self.post_init()

    def _init_weights(self, module):
        # Keep MONAI's own initialisation (its PatchGAN init of convs and norms), not transformers' default.
        pass

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Patch logits; with `return_features`, (logits, [intermediate feature maps])."""
        # MONAI returns every layer's output, the logits last.
        outputs = self.monai_discriminator(x)
        return (outputs[-1], outputs[:-1]) if return_features else outputs[-1]
