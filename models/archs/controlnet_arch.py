"""`type: ControlNet`: diffusers' `ControlNetModel` (2D), shaped after a trained stage-2 UNet.

`copy_encoder(unet)` starts it as a copy of the trained UNet's encoder, with zero convolutions, so
before training the controlled UNet predicts exactly what the UNet alone does. `forward` returns
(down residuals, mid residual), already scaled, for the UNet's `down_block_additional_residuals` /
`mid_block_additional_residual`.
"""

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from transformers import PretrainedConfig, PreTrainedModel

from utils.errors import ConfigError


class ControlNet_config(PretrainedConfig):
    """The keys a YAML gives:

        network:
          type: ControlNet
          conditioning_channels: 1                    # channels of the control image (a mask, an edge map)
          conditioning_embedding_out_channels: [16, 32, 64]   # one stride-2 conv between entries:
                                                      # the control image is 2**(len - 1) times the latent
          gradient_checkpointing: false               # true: recompute activations in the backward pass

    `unet` (the diffusers config of the stage-2 UNet) is filled in by `ControlNet_model` from the frozen
    LDM run, so the saved config rebuilds the same ControlNet."""

    model_type = "ControlNet"

    def __init__(
        self,
        conditioning_channels: int = 1,
        conditioning_embedding_out_channels: list[int] = (16, 32, 64),
        unet: dict | None = None,
        gradient_checkpointing: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.conditioning_channels = conditioning_channels
        self.conditioning_embedding_out_channels = list(conditioning_embedding_out_channels)
        self.unet = dict(unet) if unet is not None else None
        self.gradient_checkpointing = gradient_checkpointing

    @property
    def control_downsampling(self) -> int:
        """How many times larger the control image is than the latent."""
        return 2 ** (len(self.conditioning_embedding_out_channels) - 1)


class ControlNet_arch(PreTrainedModel):
    config_class = ControlNet_config
    main_input_name = "sample"

    def __init__(self, config: ControlNet_config):
        super().__init__(config)
        if not config.unet:
            raise ConfigError(
                "A ControlNet is shaped after a trained UNet: train it with 'model_type: ControlNet_model' "
                "and 'ldm.pretrained' (an LDM run's final/), which fills in 'network.unet'."
            )
        if config.conditioning_channels < 1 or not config.conditioning_embedding_out_channels:
            raise ConfigError(
                "'network.conditioning_channels' must be 1 or more and 'network.conditioning_embedding_out_channels' "
                "a non-empty list of widths."
            )
        # Only the shape is taken here (load_weights_from_unet=False); copy_encoder brings the weights.
        shape = UNet2DConditionModel.from_config(config.unet)
        self.controlnet = ControlNetModel.from_unet(
            shape,
            conditioning_channels=config.conditioning_channels,
            conditioning_embedding_out_channels=tuple(config.conditioning_embedding_out_channels),
            load_weights_from_unet=False,
        )
        if config.gradient_checkpointing:
            self.controlnet.enable_gradient_checkpointing()
        self.post_init()

    def _init_weights(self, module):
        # Keep diffusers' initialisation: its zero convolutions must stay zero at the start.
        pass

    def copy_encoder(self, unet: UNet2DConditionModel) -> None:
        """Start from the trained UNet: its input conv, time embedding, down and mid blocks are copied
        (diffusers' `ControlNetModel.from_unet`); the zero convolutions start at zero. The class embedding
        is copied too, for a UNet whose condition enters through its time embedding."""
        copied = ControlNetModel.from_unet(
            unet,
            conditioning_channels=self.config.conditioning_channels,
            conditioning_embedding_out_channels=tuple(self.config.conditioning_embedding_out_channels),
            load_weights_from_unet=True,
        )
        self.controlnet.load_state_dict(copied.state_dict())

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        control: torch.Tensor,
        conditioning_scale: float = 1.0,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ):
        """(down residuals, mid residual), already multiplied by `conditioning_scale`, for the UNet's
        `down_block_additional_residuals` / `mid_block_additional_residual` (residual addition).
        `encoder_hidden_states` and `class_labels` are given as the UNet takes them
        (`DiffusionUNet_arch.diffusers_inputs`): a UNet whose condition enters through its time
        embedding (`condition.inject: time_embedding`) passes its ControlNet the same class embedding
        input."""
        down, mid = self.controlnet(
            sample,
            timesteps,
            encoder_hidden_states=encoder_hidden_states,
            class_labels=class_labels,
            controlnet_cond=control,
            conditioning_scale=float(conditioning_scale),
            return_dict=False,
        )
        return tuple(down), mid
