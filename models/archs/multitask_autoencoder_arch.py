"""`type: MultiTaskAutoencoder`: one 2D encoder, one decoder trunk, several output heads at once.

The heads are an image (`RGBHead`), per-pixel class logits (`SegmentationHead`) and a label read from
the latent (`ClassificationHead`). The methods are the shared autoencoder interface of
`models/archs/autoencoder_outputs.py`, so the arch is a stage 1 for `LDM_model` as it is;
`decode_heads(z)` gives every head and `forward` returns them all in `.heads`.
"""

from dataclasses import dataclass

import torch
from diffusers.models.autoencoders.vae import Decoder, Encoder
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.autoencoder_outputs import (
    AutoencoderOutput,
    DiagonalGaussianPosterior,
    EncoderOutput,
    activate_output,
    check_output_activation,
)
from models.archs.checkpointing import enable_diffusers_flag
from utils.errors import ConfigError, did_you_mean

HEAD_TYPES = ("RGBHead", "SegmentationHead", "ClassificationHead")
# Which keys each head type takes besides `type` and `name`, with their defaults.
HEAD_KEYS = {
    "RGBHead": {"out_channels": 1},
    "SegmentationHead": {"num_classes": 2},
    "ClassificationHead": {"num_classes": 2, "hidden_channels": 64},
}


class MultiTaskAutoencoder_config(PretrainedConfig):
    """The encoder/decoder keys, in one block:

        network:
          type: MultiTaskAutoencoder
          in_channels: 1
          latent_channels: 4
          base_channels: 32          # widths base * (1, 2, 4, 4, ...), one level per downsampling step
          downsampling_steps: 2      # the latent is 2**steps times smaller than the image
          variational: false         # true: encode gives a posterior (mu, logvar) and forward samples it
          heads:
            - {type: RGBHead, name: rgb, out_channels: 1}                # an image (reconstruction)
            - {type: SegmentationHead, name: segmentation, num_classes: 3}   # per-pixel class logits
            - {type: ClassificationHead, name: class, num_classes: 2}        # a label, from the latent

    The decoder mirrors the encoder. `output_activation` (tanh, sigmoid or null) bounds every RGBHead's
    image; the other heads give logits, untouched. `gradient_checkpointing: true` recomputes the
    encoder's and decoder's block activations in the backward pass instead of keeping them.
    """

    model_type = "MultiTaskAutoencoder"

    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 16,
        base_channels: int = 32,
        downsampling_steps: int = 4,
        variational: bool = False,
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        mid_block_add_attention: bool = False,
        heads: list[dict] | None = None,
        sample_size: int = 32,
        scaling_factor: float = 1.0,
        shift_factor: float | None = None,
        output_activation: str | None = None,
        gradient_checkpointing: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.base_channels = base_channels
        self.downsampling_steps = downsampling_steps
        self.variational = variational
        self.layers_per_block = layers_per_block
        self.norm_num_groups = norm_num_groups
        self.mid_block_add_attention = mid_block_add_attention
        # A head that is not a block (`- RGBHead`) is kept as given, for _check_config to name.
        default = [{"type": "RGBHead", "name": "rgb", "out_channels": 3}]
        self.heads = [dict(h) if isinstance(h, dict) else h for h in (heads or default)]
        self.sample_size = sample_size
        self.scaling_factor = scaling_factor
        self.shift_factor = shift_factor
        self.output_activation = output_activation
        self.gradient_checkpointing = gradient_checkpointing

    @property
    def widths(self) -> list[int]:
        return [self.base_channels * min(2**level, 4) for level in range(self.downsampling_steps + 1)]


def _pixel_head(features: int, out_channels: int) -> nn.Module:
    return nn.Sequential(nn.SiLU(), nn.Conv2d(features, out_channels, kernel_size=3, padding=1))


def _classification_head(latent_channels: int, hidden: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(latent_channels, hidden, kernel_size=3, padding=1),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(hidden, num_classes),
    )


@dataclass
class MultiTaskOutput(AutoencoderOutput):
    """`AutoencoderOutput` plus `heads`: {head name: output} (`reconstruction` is the image head's)."""

    heads: dict | None = None


class MultiTaskAutoencoder_arch(PreTrainedModel):
    """The encoder and decoder are diffusers' `Encoder` / `Decoder` (the blocks of the Stable Diffusion
    VAE): well-kept ResNet and attention blocks with group norm, rather than hand-written ones. The
    decoder's last conv gives a `base_channels`-wide feature map that every pixel head reads; the
    classification head reads the latent itself, so the label is carried by the code stage 2 diffuses.
    `encode(x).latent` (deterministic) or `.latent_dist.mean` (variational) is the diffusion latent,
    `decode(z)` is the image head."""

    config_class = MultiTaskAutoencoder_config
    main_input_name = "x"

    def __init__(self, config: MultiTaskAutoencoder_config):
        super().__init__(config)
        heads = _check_config(config)
        widths = config.widths
        levels = len(widths)
        self.encoder = Encoder(
            in_channels=config.in_channels,
            out_channels=config.latent_channels,
            down_block_types=("DownEncoderBlock2D",) * levels,
            block_out_channels=tuple(widths),
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            double_z=config.variational,
            mid_block_add_attention=config.mid_block_add_attention,
        )
        self.decoder = Decoder(
            in_channels=config.latent_channels,
            out_channels=config.base_channels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=tuple(widths),
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            mid_block_add_attention=config.mid_block_add_attention,
        )
        if config.gradient_checkpointing:
            enable_diffusers_flag(self.encoder)
            enable_diffusers_flag(self.decoder)
        self.heads = nn.ModuleDict()
        for head in heads:
            if head["type"] == "RGBHead":
                self.heads[head["name"]] = _pixel_head(config.base_channels, head["out_channels"])
            elif head["type"] == "SegmentationHead":
                self.heads[head["name"]] = _pixel_head(config.base_channels, head["num_classes"])
            else:
                self.heads[head["name"]] = _classification_head(
                    config.latent_channels, head["hidden_channels"], head["num_classes"]
                )
        self.head_specs = heads
        self.post_init()

    def _init_weights(self, module):
        # Keep diffusers' and torch's initialisation: transformers' default would redraw every conv from
        # N(0, 0.02), which starts the deep decoder with vanishing activations.
        pass

    # --- what the heads are -----------------------------------------------------------------------------

    def head_type(self, name: str) -> str:
        return next(h["type"] for h in self.head_specs if h["name"] == name)

    @property
    def image_head(self) -> str | None:
        """The first RGBHead's name: what `decode` returns (None when the arch has no image head)."""
        return next((h["name"] for h in self.head_specs if h["type"] == "RGBHead"), None)

    # --- the shared autoencoder interface ---------------------------------------------------------------

    @property
    def size_divisor(self) -> int:
        """What every spatial size of an input must be a multiple of: the encoder halves it once per `downsampling_steps`."""
        return 2**self.config.downsampling_steps

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        moments = self.encoder(x)
        if not self.config.variational:
            return EncoderOutput(latent=moments)
        mean, logvar = moments.chunk(2, dim=1)
        return EncoderOutput(latent_dist=DiagonalGaussianPosterior(mean, logvar))

    def decode_heads(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.decoder(z)
        return {
            h["name"]: self._head(h, z if h["type"] == "ClassificationHead" else features)
            for h in self.head_specs
        }

    def _head(self, spec: dict, features: torch.Tensor) -> torch.Tensor:
        out = self.heads[spec["name"]](features)
        return activate_output(out, self.config.output_activation) if spec["type"] == "RGBHead" else out

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.image_head is None:
            raise ConfigError(
                "This MultiTaskAutoencoder has no RGBHead, so it cannot decode images (as stage 1 of a "
                "diffusion model must); add one to 'network.heads'."
            )
        image = self.heads[self.image_head](self.decoder(z))  # the image head is an RGBHead
        return activate_output(image, self.config.output_activation)

    def forward(
        self, x: torch.Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> MultiTaskOutput:
        encoded = self.encode(x)
        posterior = encoded.latent_dist
        if posterior is None:
            latents = encoded.latent
        else:
            latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        heads = self.decode_heads(latents)
        image = heads.get(self.image_head) if self.image_head else None
        return MultiTaskOutput(reconstruction=image, latents=latents, latent_dist=posterior, heads=heads)

    def scale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return (z - (self.config.shift_factor or 0.0)) * self.config.scaling_factor

    def unscale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.config.scaling_factor + (self.config.shift_factor or 0.0)

    def last_decoder_layer(self) -> torch.nn.Parameter:
        return self.heads[self.image_head][-1].weight


def _check_config(config: MultiTaskAutoencoder_config) -> list[dict]:
    """The heads with their defaults filled in, or a ConfigError naming the bad key."""
    check_output_activation(config.output_activation)
    if config.downsampling_steps < 0:
        raise ConfigError(f"'network.downsampling_steps' is {config.downsampling_steps}; give 0 or more.")
    for width in config.widths:
        if width % config.norm_num_groups:
            raise ConfigError(
                f"'network.base_channels' ({config.base_channels}) gives a width {width} that is not a multiple "
                f"of 'network.norm_num_groups' ({config.norm_num_groups}); pick a base divisible by it."
            )
    if not config.heads:
        raise ConfigError(
            "'network.heads' is empty; give at least one head (e.g. {type: RGBHead, name: rgb})."
        )
    heads, names = [], set()
    for i, head in enumerate(config.heads):
        if not isinstance(head, dict):
            raise ConfigError(
                f"'network.heads[{i}]' is {head!r}; each head is a block, e.g. "
                "{type: RGBHead, name: rgb, out_channels: 1}."
            )
        kind, name = head.get("type"), head.get("name")
        if kind not in HEAD_TYPES:
            raise ConfigError(
                f"'network.heads[{i}].type' is {kind!r}{did_you_mean(str(kind), HEAD_TYPES)}; "
                f"use one of {', '.join(HEAD_TYPES)}."
            )
        if not name or name in names:
            raise ConfigError(f"'network.heads[{i}].name' is {name!r}; every head needs its own name.")
        names.add(name)
        allowed = HEAD_KEYS[kind]
        for key in head:
            if key not in ("type", "name", *allowed):
                raise ConfigError(
                    f"Unknown key 'network.heads[{i}].{key}'{did_you_mean(key, allowed)}; a {kind} takes: "
                    f"type, name, {', '.join(allowed)}."
                )
        for key in allowed:
            if key in head and (isinstance(head[key], bool) or not isinstance(head[key], int)):
                raise ConfigError(f"'network.heads[{i}].{key}' is {head[key]!r}; give a whole number.")
        filled = {"type": kind, "name": name, **{k: int(head.get(k, d)) for k, d in allowed.items()}}
        if filled.get("num_classes", 2) < 2 or filled.get("out_channels", 1) < 1:
            raise ConfigError(
                f"'network.heads[{i}]' asks for {filled}; a head needs at least 2 classes or 1 channel."
            )
        heads.append(filled)
    return heads
