"""Sampling a frozen LDM steered by a ControlNet, and a trained ControlNet run's `final/` loaded for it.

    pipe = ControlNetPipeline.from_final("experiments/ControlNet_shapes/demo/final")
    images = pipe(controls, seeds=[0, 1], conditioning_scale=1.0)      # controls: (B, C, H, W)

`ControlledUNet` is the UNet as the LDM samplers call it, `unet(latents, timesteps, context)`, with the
ControlNet's residuals added to its skip connections (residual addition, times `conditioning_scale`).
It goes through the LDM's own `sample_latents`, so seeds, samplers and classifier-free guidance behave
exactly as for the LDM alone; with `conditioning_scale: 0` a sample is the LDM's sample bit for bit.
"""

import os

import torch

from models.archs.controlnet_arch import ControlNet_arch
from models.ldm.pipeline import LDMPipeline
from utils.errors import ConfigError
from utils.errors.files import read_json


class ControlledUNet:
    """`unet(latents, timesteps, context)` of a diffusers-backed `DiffusionUNet` plus a ControlNet."""

    def __init__(self, unet, controlnet, control: torch.Tensor, conditioning_scale: float = 1.0):
        check_diffusers_backend(unet)
        self.unet, self.controlnet = unet, controlnet
        self.control, self.conditioning_scale = control, float(conditioning_scale)

    def __call__(self, latents, timesteps, context=None):
        control = self.control
        if len(latents) != len(control):  # classifier-free guidance doubles the batch
            control = control.repeat(len(latents) // len(control), *[1] * (control.ndim - 1))
        arch = getattr(self.unet, "arch", self.unet)
        # The inputs DiffusionUNet.forward gives its diffusers UNet (coordinate channels, cross-attention
        # context or time-embedded summary), given to the ControlNet and the UNet alike.
        latents, inputs = arch.diffusers_inputs(latents, context)
        down, mid = self.controlnet(latents, timesteps, control, self.conditioning_scale, **inputs)
        return arch.unet(
            latents,
            timesteps,
            **inputs,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]


def check_diffusers_backend(unet) -> None:
    if not getattr(unet, "uses_diffusers", False):
        raise ConfigError(
            "A ControlNet needs the LDM's UNet on the diffusers backend (diffusers' ControlNetModel copies a "
            "UNet2DConditionModel); this LDM uses MONAI's DiffusionModelUNet, so retrain it in 2D with "
            "'network.backend: diffusers' (or auto)."
        )


def as_control(control) -> torch.Tensor:
    """A control batch as float (B, C, H, W): a class map (B, H, W) gets its channel axis."""
    control = torch.as_tensor(control)
    return (control[:, None] if control.ndim == 3 else control).float()


class ControlNetPipeline:
    def __init__(self, ldm: LDMPipeline, controlnet, description: dict):
        self.ldm, self.controlnet, self.description = ldm, controlnet, description

    @classmethod
    def from_final(cls, folder: str, device: str = "cpu") -> "ControlNetPipeline":
        path = os.path.join(folder, "controlnet.json")
        if not os.path.isfile(path):
            raise ConfigError(
                f"No controlnet.json in '{folder}': point at a trained ControlNet run's final/, best/ or checkpoint-N/ folder."
            )
        description = read_json(path)
        ldm = LDMPipeline.from_final(os.path.join(folder, description["ldm"]), device)
        controlnet = ControlNet_arch.from_pretrained(os.path.join(folder, description["controlnet"]))
        return cls(ldm, controlnet.to(device).eval(), description)

    @property
    def condition_type(self) -> str:
        return self.ldm.condition_type

    @torch.no_grad()
    def __call__(
        self,
        control,
        conditions=None,
        seeds: list[int] | None = None,
        conditioning_scale: float | None = None,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        ldm, d = self.ldm, self.ldm.description
        device = next(self.controlnet.parameters()).device
        control = as_control(control).to(device)
        if conditions is not None and torch.is_tensor(conditions):
            conditions = conditions.to(device)
        context, shape = ldm.context(conditions)
        seeds = list(range(len(control))) if seeds is None else list(seeds)
        guidance_scale = d["guidance_scale"] if guidance_scale is None else guidance_scale
        if conditioning_scale is None:
            conditioning_scale = self.description["control"]["conditioning_scale"]
        return ldm.denoise_and_decode(
            ControlledUNet(ldm.unet, self.controlnet, control, conditioning_scale),
            shape,
            seeds,
            context,
            guidance_scale,
            sampler,
            num_inference_steps,
            device,
        )
