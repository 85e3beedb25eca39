"""`type: DiffusionUNet`: the noise-prediction UNet of stage 2.

The keys are those of MONAI's `DiffusionModelUNet` (its JSON configs carry over), plus `backend`,
`condition_injection`, `resnet_time_scale_shift` and `coordinate_channels` (see `DiffusionUNet_config`).
2D runs on diffusers' `UNet2DConditionModel` (fused attention, well kept); 3D on MONAI's
`DiffusionModelUNet` (its integer-class embedding replaced by a projection of the condition's summary
token under `condition_injection: time_embedding`). `backend: monai` forces MONAI in 2D too (to reuse
weights trained with MONAI). `forward(sample, timesteps, context=None)` returns the prediction, a tensor.
"""

import torch
from diffusers import UNet2DConditionModel
from monai.networks.nets import DiffusionModelUNet
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.checkpointing import checkpoint_blocks
from models.archs.config_signature import keys_from_signature
from utils.errors import ConfigError

BACKENDS = ("auto", "diffusers", "monai")
# A global condition such as a PSF's coordinates reached through cross-attention alone is ignored in
# training (samples score the same with the conditions shuffled across the batch): time_embedding and
# both give it a direct path.
INJECTIONS = ("cross_attention", "time_embedding", "both")
# How a ResNet block uses the time embedding: add it (default), or scale and shift by it (FiLM).
TIME_SCALE_SHIFTS = ("default", "scale_shift")


class DiffusionUNet_config(PretrainedConfig):
    """Defaults: 4 levels, attention below the first, 512-wide context.

    `condition_injection` says where the context tokens enter. `cross_attention`: the attention levels
    attend to them. `time_embedding`: the last token (the condition's global summary, see the condition
    projector's `global_token`) is projected and added to the timestep embedding (diffusers'
    `class_embed_type: projection`), which every ResNet block adds to its features as a per-channel
    shift, or, with `resnet_time_scale_shift: scale_shift`, uses to scale and shift them (FiLM).
    `both` does the two.

    `coordinate_channels: true` stacks the position of every latent pixel (one channel per axis, -1 to 1)
    on the input, as CoordConv does. Convolutions are blind to where they are, and the input at high
    noise carries no structure, so a UNet told only a global vector (a PSF's field point and defocus)
    must build where things go from its padding; with the coordinates it reads it. The channels are
    added inside, so the UNet still takes and returns latents of `in_channels`.

    `gradient_checkpointing: true` recomputes each block's activations in the backward pass instead of
    keeping them (both backends): less memory for about one more forward pass per step.
    """

    model_type = "DiffusionUNet"

    @keys_from_signature
    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 4,
        out_channels: int = 4,
        channels: list[int] = (32, 64, 128, 256),
        attention_levels: list[bool] = (False, True, True, True),
        num_head_channels: int | list[int] = (0, 32, 32, 32),
        num_res_blocks: int = 2,
        with_conditioning: bool = True,
        cross_attention_dim: int | None = 512,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        transformer_num_layers: int = 1,
        sample_size: int | None = None,
        backend: str = "auto",
        condition_injection: str = "cross_attention",
        resnet_time_scale_shift: str = "default",
        coordinate_channels: bool = False,
        gradient_checkpointing: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = list(channels)
        self.attention_levels = list(attention_levels)
        if isinstance(num_head_channels, int):
            num_head_channels = [num_head_channels] * len(self.channels)
        self.num_head_channels = list(num_head_channels)


class DiffusionUNet_arch(PreTrainedModel):
    config_class = DiffusionUNet_config
    main_input_name = "sample"

    def __init__(self, config: DiffusionUNet_config):
        super().__init__(config)
        _check_config(config)
        inputs = config.in_channels + (config.spatial_dims if config.coordinate_channels else 0)
        if self.uses_diffusers:
            self.unet = UNet2DConditionModel(**{**_diffusers_kwargs(config), "in_channels": inputs})
        else:
            self.unet = DiffusionModelUNet(
                spatial_dims=config.spatial_dims,
                in_channels=inputs,
                out_channels=config.out_channels,
                num_res_blocks=config.num_res_blocks,
                channels=config.channels,
                attention_levels=config.attention_levels,
                norm_num_groups=config.norm_num_groups,
                norm_eps=config.norm_eps,
                num_head_channels=config.num_head_channels,
                with_conditioning=self.cross_attends,
                transformer_num_layers=config.transformer_num_layers,
                cross_attention_dim=config.cross_attention_dim if self.cross_attends else None,
                num_class_embeds=1 if self.embeds_condition else None,
            )
            if self.embeds_condition:  # as diffusers' `class_embed_type: projection`: the summary token,
                # projected (linear, SiLU, linear) and added to the time embedding, in place of MONAI's
                # table of integer classes
                width = 4 * config.channels[0]
                self.unet.class_embedding = torch.nn.Sequential(
                    torch.nn.Linear(config.cross_attention_dim, width),
                    torch.nn.SiLU(),
                    torch.nn.Linear(width, width),
                )
        if config.gradient_checkpointing:
            self._enable_gradient_checkpointing()
        self.post_init()

    def _enable_gradient_checkpointing(self) -> None:
        if self.uses_diffusers:
            self.unet.enable_gradient_checkpointing()
        else:  # MONAI's DiffusionModelUNet has no switch for it: its blocks are checkpointed from outside
            checkpoint_blocks([*self.unet.down_blocks, self.unet.middle_block, *self.unet.up_blocks])

    def _init_weights(self, module):
        # Keep the library's initialisation (diffusers zero-inits the output conv of each resnet path):
        # transformers' default would redraw every layer from N(0, 0.02).
        pass

    @property
    def uses_diffusers(self) -> bool:
        backend = self.config.backend
        return backend == "diffusers" or (backend == "auto" and self.config.spatial_dims == 2)

    @property
    def size_divisor(self) -> int:
        """What every spatial size of a latent must be a multiple of: MONAI's UNet halves it at every
        level but the last and cannot join odd sizes back; diffusers' upsamples to the skip's size."""
        return 1 if self.uses_diffusers else 2 ** (len(self.config.channels) - 1)

    @property
    def cross_attends(self) -> bool:
        return self.config.with_conditioning and self.config.condition_injection != "time_embedding"

    @property
    def embeds_condition(self) -> bool:
        return self.config.with_conditioning and self.config.condition_injection != "cross_attention"

    def forward(
        self, sample: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.config.with_conditioning and context is None:
            raise ValueError("This DiffusionUNet has with_conditioning: true and needs a context.")
        if self.uses_diffusers:
            sample, inputs = self.diffusers_inputs(sample, context)
            return self.unet(sample, timesteps, **inputs, return_dict=False)[0]
        if self.config.coordinate_channels:
            sample = torch.cat([sample, coordinate_grid(sample)], dim=1)
        return self.unet(
            sample,
            timesteps=timesteps,
            context=context if self.cross_attends else None,
            class_labels=context[:, -1] if self.embeds_condition else None,
        )

    def diffusers_inputs(
        self, sample: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict]:
        """(sample with the coordinate channels when on, {encoder_hidden_states, class_labels}): what the
        inner `UNet2DConditionModel`, and a ControlNet copied from it, take for these inputs."""
        if self.config.coordinate_channels:
            sample = torch.cat([sample, coordinate_grid(sample)], dim=1)
        conditioned = self.config.with_conditioning and context is not None
        return sample, {
            "encoder_hidden_states": context if conditioned and self.cross_attends else None,
            # time_embedding: the projector's summary token (its last) is the UNet's class embedding input
            "class_labels": context[:, -1] if conditioned and self.embeds_condition else None,
        }


def coordinate_grid(sample: torch.Tensor) -> torch.Tensor:
    """(B, spatial_dims, *spatial): each pixel's position along each axis, from -1 to 1."""
    axes = [torch.linspace(-1.0, 1.0, n, device=sample.device, dtype=sample.dtype) for n in sample.shape[2:]]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return grid.expand(len(sample), *grid.shape)


def _diffusers_kwargs(config: DiffusionUNet_config) -> dict:
    """MONAI-style keys -> `UNet2DConditionModel` keys, with the same widths, heads and attention levels."""
    cross_attention = config.with_conditioning and config.condition_injection != "time_embedding"
    embedded = config.with_conditioning and config.condition_injection != "cross_attention"
    down, up, heads = [], [], []
    for width, attend, head_channels in zip(
        config.channels, config.attention_levels, config.num_head_channels
    ):
        if attend and cross_attention:
            down.append("CrossAttnDownBlock2D")
            up.append("CrossAttnUpBlock2D")
            # UNet2DConditionModel reads `attention_head_dim` as the number of heads of its
            # cross-attention blocks (a known misnomer kept for Stable Diffusion's configs) ...
            heads.append(width // head_channels)
        elif attend:
            down.append("AttnDownBlock2D")
            up.append("AttnUpBlock2D")
            heads.append(head_channels)  # ... and as the channels per head of its self-attention blocks
        else:
            down.append("DownBlock2D")
            up.append("UpBlock2D")
            heads.append(1)  # unused: no attention at this level
    conditioned_mid = cross_attention and config.attention_levels[-1]
    return dict(
        sample_size=config.sample_size,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        down_block_types=tuple(down),
        up_block_types=tuple(reversed(up)),
        mid_block_type="UNetMidBlock2DCrossAttn" if conditioned_mid else "UNetMidBlock2D",
        block_out_channels=tuple(config.channels),
        layers_per_block=config.num_res_blocks,
        norm_num_groups=config.norm_num_groups,
        norm_eps=config.norm_eps,
        cross_attention_dim=config.cross_attention_dim or 8,
        transformer_layers_per_block=config.transformer_num_layers,
        attention_head_dim=tuple(heads),
        # the condition's summary token, projected (linear, SiLU, linear) and added to the time embedding
        class_embed_type="projection" if embedded else None,
        projection_class_embeddings_input_dim=config.cross_attention_dim if embedded else None,
        resnet_time_scale_shift=config.resnet_time_scale_shift,
    )


def _check_config(config: DiffusionUNet_config) -> None:
    if config.spatial_dims not in (2, 3):
        raise ConfigError(f"'network.spatial_dims' is {config.spatial_dims}; DiffusionUNet takes 2 or 3.")
    if config.backend not in BACKENDS:
        raise ConfigError(f"'network.backend' is {config.backend!r}; use one of {', '.join(BACKENDS)}.")
    if config.condition_injection not in INJECTIONS:
        raise ConfigError(
            f"'condition.inject' (the UNet's condition_injection) is {config.condition_injection!r}; use one of {', '.join(INJECTIONS)}."
        )
    uses_monai = config.backend == "monai" or (config.backend == "auto" and config.spatial_dims == 3)
    if config.resnet_time_scale_shift not in TIME_SCALE_SHIFTS:
        raise ConfigError(
            f"'network.resnet_time_scale_shift' is {config.resnet_time_scale_shift!r}; use one of "
            f"{', '.join(TIME_SCALE_SHIFTS)}."
        )
    if uses_monai and config.resnet_time_scale_shift != "default":
        raise ConfigError(
            "'network.resnet_time_scale_shift: scale_shift' needs the diffusers backend (2D); MONAI's "
            "DiffusionModelUNet only adds the time embedding."
        )
    if config.backend == "diffusers" and config.spatial_dims == 3:
        raise ConfigError("'network.backend: diffusers' is 2D only; use 'monai' (or 'auto') for 3D.")
    levels = len(config.channels)
    for key in ("attention_levels", "num_head_channels"):
        if len(getattr(config, key)) != levels:
            raise ConfigError(
                f"'network.{key}' has {len(getattr(config, key))} entries but 'network.channels' has {levels}; "
                "give one per level."
            )
    for width, attend, head_channels in zip(
        config.channels, config.attention_levels, config.num_head_channels
    ):
        if width % config.norm_num_groups:
            raise ConfigError(
                f"'network.channels' entry {width} is not a multiple of 'network.norm_num_groups' "
                f"({config.norm_num_groups})."
            )
        if attend and (head_channels <= 0 or width % head_channels):
            raise ConfigError(
                f"'network.num_head_channels' is {head_channels} at a level of width {width} with attention; "
                "give a positive divisor of the width."
            )
    head, width = (config.num_head_channels[-1], config.channels[-1]) if levels else (1, 1)
    if uses_monai and levels and (head <= 0 or width % head):
        raise ConfigError(
            f"'network.num_head_channels' ends with {head}, but MONAI's DiffusionModelUNet always attends "
            f"in its middle block, at the last level's width ({width}): give the last level a positive "
            "divisor of it."
        )
    if config.with_conditioning and not config.cross_attention_dim:
        raise ConfigError("'network.with_conditioning' is true but 'network.cross_attention_dim' is empty.")
    if (
        config.with_conditioning
        and config.condition_injection == "cross_attention"
        and not any(config.attention_levels)
    ):
        raise ConfigError(
            "'network.with_conditioning' is true but no level has attention, so the condition would be "
            "ignored; set one of 'network.attention_levels' true, or condition.inject: time_embedding."
        )
