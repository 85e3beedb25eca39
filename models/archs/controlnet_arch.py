"""`type: ControlNet`: diffusers' `ControlNetModel` (2D), shaped after a trained stage-2 UNet.

`copy_encoder(unet)` starts it as a copy of the trained UNet's encoder, so before training the
controlled UNet predicts exactly what the UNet alone does. One branch per control (diffusers'
MultiControlNetModel's way: each control its own network, their outputs summed, each times its own
weight). `forward` returns a `Steering` (models/archs/controlnet_fusion.py), the one thing the model and
its pipeline read, in the fusion mode of `fusion: {mode, controls}` (filled in from `control.fusion` and
the number of `control.key`s by `ControlNet_model`):

    residual  diffusers' zero convolutions, residuals added to the skips (the ControlNet paper)
    gated     a gate per control and level, starting at 0, times the residuals; the zero convolutions get
              a normal init instead, as with both at zero neither would get a gradient
    film      the zero convolutions give twice the channels, (gamma, beta) of each skip, starting at 0
    concat    no encoder copy: only diffusers' control encoder (its last conv with a normal init) brings
              the control to latent size, and extra input channels of the UNet's conv_in (weights starting
              at 0) read it. Only those train: the frozen UNet keeps the LDM exactly at weight 0, and
              this adapter is the smallest change that lets the control reach every later layer.
"""

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.controlnet_fusion import FUSIONS, Steering, combine, film_convs, input_conv
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
        fusion: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Filled in by ControlNet_model from control.fusion and control.key; a saved config without it
        # is one residual ControlNet.
        self.fusion = {"mode": "residual", "controls": 1, **(fusion or {})}
        self.conditioning_channels = conditioning_channels
        self.conditioning_embedding_out_channels = list(conditioning_embedding_out_channels)
        self.unet = dict(unet) if unet is not None else None
        self.gradient_checkpointing = gradient_checkpointing

    @property
    def control_downsampling(self) -> int:
        """How many times larger the control image is than the latent."""
        return 2 ** (len(self.conditioning_embedding_out_channels) - 1)


def check_controlnet_config(config: PretrainedConfig) -> None:
    """The keys every ControlNet arch reads, checked before it is built."""
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


class ControlNet_arch(PreTrainedModel):
    config_class = ControlNet_config
    main_input_name = "sample"

    def __init__(self, config: ControlNet_config):
        super().__init__(config)
        check_controlnet_config(config)
        self.mode, controls = config.fusion["mode"], int(config.fusion["controls"])
        if self.mode not in FUSIONS or controls < 1:
            raise ConfigError(
                f"'control.fusion' is {self.mode!r} over {controls} controls; give one of {', '.join(FUSIONS)} "
                "and at least one control key."
            )
        # Only the shape is taken here (load_weights_from_unet=False); copy_encoder brings the weights.
        shape = UNet2DConditionModel.from_config(config.unet)
        if self.mode == "concat":
            width, kernel = shape.conv_in.out_channels, shape.conv_in.kernel_size
            self.encoders = torch.nn.ModuleList(self._encoder(width) for _ in range(controls))
            # (UNet width, encoded channels, k, k) per control: the extra input channels of conv_in.
            self.input_weights = torch.nn.Parameter(torch.zeros(controls, width, width, *kernel))
            self.post_init()
            return
        branches = [self._branch(shape) for _ in range(controls)]
        # The first branch is named as a single residual ControlNet's, so a one-control run's weights keep their names.
        self.controlnet = branches[0]
        self.more_controlnets = torch.nn.ModuleList(branches[1:])
        if self.mode == "gated":
            levels = len(self.controlnet.controlnet_down_blocks) + 1
            self.gates = torch.nn.Parameter(torch.zeros(controls, levels))
            self._reinit_zero_convs()
        self.post_init()

    def _branch(self, shape) -> ControlNetModel:
        branch = ControlNetModel.from_unet(
            shape,
            conditioning_channels=self.config.conditioning_channels,
            conditioning_embedding_out_channels=tuple(self.config.conditioning_embedding_out_channels),
            load_weights_from_unet=False,
        )
        if self.mode == "film":
            branch.controlnet_down_blocks = film_convs(branch.controlnet_down_blocks)
            branch.controlnet_mid_block = film_convs([branch.controlnet_mid_block])[0]
        if self.config.gradient_checkpointing:
            branch.enable_gradient_checkpointing()
        return branch

    def _encoder(self, width: int) -> ControlNetConditioningEmbedding:
        encoder = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=width,
            conditioning_channels=self.config.conditioning_channels,
            block_out_channels=tuple(self.config.conditioning_embedding_out_channels),
        )
        encoder.conv_out.reset_parameters()  # the zero weights of conv_in's extra channels keep the LDM
        return encoder

    @property
    def branches(self) -> list[ControlNetModel]:
        return [self.controlnet, *self.more_controlnets] if self.mode != "concat" else []

    def _reinit_zero_convs(self) -> None:
        for branch in self.branches:
            for conv in [*branch.controlnet_down_blocks, branch.controlnet_mid_block]:
                conv.reset_parameters()

    def _init_weights(self, module):
        # Keep the initialisation set above: zero convolutions, gates and extra input weights as chosen.
        pass

    def copy_encoder(self, unet: UNet2DConditionModel) -> None:
        """Start every branch from the trained UNet: its input conv, time embedding, down and mid blocks
        are copied (diffusers' `ControlNetModel.from_unet`); the class embedding is copied too, for a
        UNet whose condition enters through its time embedding. The fusion's own layers (zero or FiLM
        convolutions, gates) keep their initialisation. Concat has no encoder copy."""
        for branch in self.branches:
            copied = ControlNetModel.from_unet(
                unet,
                conditioning_channels=self.config.conditioning_channels,
                conditioning_embedding_out_channels=tuple(self.config.conditioning_embedding_out_channels),
                load_weights_from_unet=True,
            ).state_dict()
            if self.mode != "residual":
                copied = {
                    k: v
                    for k, v in copied.items()
                    if not k.startswith(("controlnet_down_blocks", "controlnet_mid_block"))
                }
            branch.load_state_dict(copied, strict=self.mode == "residual")

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        controls: list[torch.Tensor],
        conditioning_scales: list[float],
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        conv_in: torch.nn.Conv2d | None = None,
    ) -> Steering:
        """The steering of the UNet by `controls` (one per branch), each times its weight.
        `encoder_hidden_states` and `class_labels` are given as the UNet takes them
        (`DiffusionUNet_arch.diffusers_inputs`): a UNet whose condition enters through its time
        embedding (`condition.inject: time_embedding`) passes its ControlNet the same class embedding
        input. `conv_in` (the UNet's input convolution) gives concat its stride and padding."""
        if self.mode == "concat":
            parts = [
                Steering(input=float(scale) * input_conv(encoder(control), weight, conv_in))
                for encoder, weight, control, scale in zip(
                    self.encoders, self.input_weights, controls, conditioning_scales
                )
            ]
            return combine(parts)
        parts = []
        for i, (branch, control, scale) in enumerate(zip(self.branches, controls, conditioning_scales)):
            down, mid = branch(
                sample,
                timesteps,
                encoder_hidden_states=encoder_hidden_states,
                class_labels=class_labels,
                controlnet_cond=control,
                conditioning_scale=float(scale),
                return_dict=False,
            )
            down = list(down)
            if self.mode == "gated":
                gates = self.gates[i]
                down, mid = [g * r for g, r in zip(gates[:-1], down)], gates[-1] * mid
            parts.append(Steering(down, mid, film=self.mode == "film"))
        return combine(parts)
