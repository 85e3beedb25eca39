"""`type: MonaiControlNet`: MONAI's `ControlNet` (2D or 3D), shaped after a trained stage-2 UNet on the
MONAI backend (`DiffusionUNet` with `backend: monai`, or any 3D one).

The same interface as the diffusers-based `ControlNet` (models/archs/controlnet_arch.py): `copy_encoder(unet)`
starts it as a copy of the trained UNet's encoder (input conv, time embedding, down and middle blocks,
loaded by name as MONAI's ControlNet tutorial does) with its output convolutions at zero, so
before training the controlled UNet predicts exactly what the UNet alone does; `residuals` gives
(down residuals, mid residual), already scaled, for MONAI `DiffusionModelUNet`'s
`down_block_additional_residuals` / `mid_block_additional_residual`; `forward` gives them as a
`MonaiSteering` (models/archs/controlnet_fusion.py), one branch per control, summed, so
`ControlNet_model` and its pipeline drive both arches alike. Only residual fusion exists here.
`controlled_prediction` is the whole call for one control: the UNet's prediction with the residuals added.
A UNet whose condition enters through its time embedding (`condition.inject: time_embedding`) gets a
ControlNet with the same class embedding (the summary token's projection), copied with the encoder.
"""

import torch
from monai.networks.nets import ControlNet
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.checkpointing import checkpoint_blocks
from models.archs.controlnet_arch import check_controlnet_config
from models.archs.controlnet_fusion import Steering, combine
from models.archs.diffusion_unet_arch import DiffusionUNet_arch, DiffusionUNet_config
from utils.errors import ConfigError


class MonaiControlNet_config(PretrainedConfig):
    """The keys a YAML gives (the same as `type: ControlNet`'s, so switching the type is enough):

        network:
          type: MonaiControlNet
          conditioning_channels: 1                    # channels of the control image (a mask, an edge map)
          conditioning_embedding_out_channels: [16, 32, 64]   # one stride-2 conv between entries:
                                                      # the control image is 2**(len - 1) times the latent
          gradient_checkpointing: false               # true: recompute activations in the backward pass

    They are MONAI's `conditioning_embedding_in_channels` / `conditioning_embedding_num_channels`. `unet`
    (the `DiffusionUNet` config of the stage-2 UNet, `unet_arch.config.to_dict()`) is filled in by the
    training model from the frozen LDM run, so the saved config rebuilds the same ControlNet."""

    model_type = "MonaiControlNet"

    def __init__(
        self,
        conditioning_channels: int = 1,
        conditioning_embedding_out_channels: list[int] = (16, 32, 64),
        unet: dict | None = None,
        gradient_checkpointing: bool = False,
        fusion: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Filled in by ControlNet_model from control.fusion and control.key (residual is the only mode).
        self.fusion = {"mode": "residual", "controls": 1, **(fusion or {})}
        self.conditioning_channels = conditioning_channels
        self.conditioning_embedding_out_channels = list(conditioning_embedding_out_channels)
        self.unet = dict(unet) if unet is not None else None
        self.gradient_checkpointing = gradient_checkpointing

    @property
    def control_downsampling(self) -> int:
        """How many times larger the control image is than the latent."""
        return 2 ** (len(self.conditioning_embedding_out_channels) - 1)


class MonaiControlNet_arch(PreTrainedModel):
    config_class = MonaiControlNet_config
    main_input_name = "sample"

    def __init__(self, config: MonaiControlNet_config):
        super().__init__(config)
        check_controlnet_config(config)
        unet = DiffusionUNet_config(**{k: v for k, v in config.unet.items() if k != "model_type"})
        if unet.spatial_dims == 2 and unet.backend != "monai":
            raise ConfigError(
                "'network.type: MonaiControlNet' copies a UNet on MONAI's backend, but this LDM's 2D UNet runs "
                "on diffusers; use 'network.type: ControlNet', or retrain the LDM with 'network.backend: monai'."
            )
        mode, controls = config.fusion["mode"], int(config.fusion["controls"])
        if mode != "residual" or controls < 1:
            raise ConfigError(
                f"'control.fusion' is {mode!r} over {controls} controls, but a ControlNet over a MONAI-backed "
                "UNet (3D, or backend: monai) fuses only by 'residual'; set control.fusion: residual."
            )
        branches = [self._branch(config, unet) for _ in range(controls)]
        # The first branch is named as a single ControlNet's, so a one-control run's weights keep their names.
        self.controlnet = branches[0]
        self.more_controlnets = torch.nn.ModuleList(branches[1:])
        self.post_init()

    @staticmethod
    def _branch(config, unet: DiffusionUNet_config) -> ControlNet:
        # As DiffusionUNet_arch decides (cross_attends / embeds_condition), from the config alone.
        cross_attends = unet.with_conditioning and unet.condition_injection != "time_embedding"
        embeds = unet.with_conditioning and unet.condition_injection != "cross_attention"
        # The UNet's input conv also takes the coordinate channels when it has them.
        in_channels = unet.in_channels + (unet.spatial_dims if unet.coordinate_channels else 0)
        branch = ControlNet(
            spatial_dims=unet.spatial_dims,
            in_channels=in_channels,
            num_res_blocks=unet.num_res_blocks,
            channels=unet.channels,
            attention_levels=unet.attention_levels,
            norm_num_groups=unet.norm_num_groups,
            norm_eps=unet.norm_eps,
            num_head_channels=unet.num_head_channels,
            with_conditioning=cross_attends,
            transformer_num_layers=unet.transformer_num_layers,
            cross_attention_dim=unet.cross_attention_dim if cross_attends else None,
            num_class_embeds=1 if embeds else None,
            conditioning_embedding_in_channels=config.conditioning_channels,
            conditioning_embedding_num_channels=config.conditioning_embedding_out_channels,
        )
        if embeds:  # the UNet's projection of the summary token (DiffusionUNet_arch's), copied by name
            width = 4 * unet.channels[0]
            branch.class_embedding = torch.nn.Sequential(
                torch.nn.Linear(unet.cross_attention_dim, width),
                torch.nn.SiLU(),
                torch.nn.Linear(width, width),
            )
        if config.gradient_checkpointing:  # MONAI's ControlNet has no switch for it (as its UNet)
            checkpoint_blocks([*branch.down_blocks, branch.middle_block])
        return branch

    @property
    def branches(self) -> list[ControlNet]:
        return [self.controlnet, *self.more_controlnets]

    def _init_weights(self, module):
        # Keep MONAI's initialisation: its zero convolutions must stay zero at the start.
        pass

    def copy_encoder(self, unet) -> None:
        """Start every branch from the trained UNet (a `DiffusionUNet_arch` on the MONAI backend, or its
        `DiffusionModelUNet`): every weight the two share by name (input conv, time and class embedding,
        down and middle blocks) is copied; the conditioning embedding's last conv and the output convs
        stay zero."""
        inner = unet.unet if isinstance(unet, DiffusionUNet_arch) else unet
        for branch in self.branches:
            own = branch.state_dict()
            shared = {k: v for k, v in inner.state_dict().items() if k in own and own[k].shape == v.shape}
            # strict=False: the UNet's decoder has no place here, and the ControlNet's own convs no source.
            branch.load_state_dict(shared, strict=False)
            missing = [k for k in own if k not in shared and not k.startswith("controlnet_")]
            if missing:
                raise ConfigError(
                    f"The UNet does not fit this ControlNet's 'network.unet' config: {len(missing)} encoder "
                    f"weights were not copied (first: {missing[:2]}); build the ControlNet from that UNet's "
                    "own config."
                )

    def residuals(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        control: torch.Tensor,
        conditioning_scale: float = 1.0,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        branch: int = 0,
    ):
        """(down residuals, mid residual) of one branch, already multiplied by `conditioning_scale`, for
        MONAI `DiffusionModelUNet`'s `down_block_additional_residuals` / `mid_block_additional_residual`.
        `sample` is what the UNet's input conv takes (with the coordinate channels when the UNet has them),
        `encoder_hidden_states` its cross-attention context (MONAI's `context`) and `class_labels` its
        class embedding input (the summary token, under `condition.inject: time_embedding`)."""
        down, mid = self.branches[branch](
            sample,
            timesteps,
            controlnet_cond=control,
            conditioning_scale=float(conditioning_scale),
            context=encoder_hidden_states,
            class_labels=class_labels,
        )
        return tuple(down), mid

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        controls: list[torch.Tensor],
        conditioning_scales: list[float],
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        conv_in=None,
    ) -> "MonaiSteering":
        """The steering of the UNet by `controls` (one per branch), each times its weight; the inputs as
        `DiffusionUNet_arch.diffusers_inputs` gives them (`conv_in` is taken for the shared interface)."""
        parts = [
            MonaiSteering(*self.residuals(sample, timesteps, c, s, encoder_hidden_states, class_labels, i))
            for i, (c, s) in enumerate(zip(controls, conditioning_scales))
        ]
        return combine(parts)


class MonaiSteering(Steering):
    """Residuals for MONAI's `DiffusionModelUNet`, which names its inputs otherwise than diffusers' UNet."""

    def run(self, unet, sample, timesteps, encoder_hidden_states=None, class_labels=None) -> torch.Tensor:
        return unet(
            sample,
            timesteps=timesteps,
            context=encoder_hidden_states,
            class_labels=class_labels,
            down_block_additional_residuals=list(self.down),
            mid_block_additional_residual=self.mid,
        )


def controlled_prediction(
    unet: DiffusionUNet_arch,
    controlnet: MonaiControlNet_arch,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    control: torch.Tensor,
    conditioning_scale: float = 1.0,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """`unet(latents, timesteps, context)` of a MONAI-backed `DiffusionUNet` with one ControlNet branch's
    residuals added: the same inputs (coordinate channels, cross-attention context, class embedding
    input) go to both networks."""
    arch = getattr(unet, "arch", unet)  # the bare arch of a training model's network handle
    latents, inputs = arch.diffusers_inputs(latents, context)
    steering = controlnet(latents, timesteps, [control], [conditioning_scale], **inputs)
    return steering.run(arch.unet, latents, timesteps, **inputs)
