"""Sampling a frozen LDM steered by a ControlNet, and a trained ControlNet run's `final/` loaded for it.

    pipe = ControlNetPipeline.from_final("experiments/ControlNet_shapes/demo/final")
    images = pipe([masks, edges], seeds=[0, 1], conditioning_scale=[1.0, 0.5])   # each (B, C, H, W)

`ControlledUNet` is the UNet as the LDM samplers call it, `unet(latents, timesteps, context)`, steered
by the ControlNet in its fusion mode (models/archs/controlnet_fusion.py), each control times its own
weight. It goes through the LDM's own `sample_latents`, so seeds, samplers and classifier-free guidance
behave exactly as for the LDM alone; with every weight at 0 a sample is the LDM's sample bit for bit.
"""

import os

import torch

from models.archs.controlnet_arch import ControlNet_arch
from models.archs.monai_controlnet_arch import MonaiControlNet_arch
from models.ldm.pipeline import LDMPipeline
from utils.errors import ConfigError
from utils.errors.files import read_json


class ControlledUNet:
    """`unet(latents, timesteps, context)` of a `DiffusionUNet` plus a ControlNet (`ControlNet` over the
    diffusers backend, `MonaiControlNet` over MONAI's): one control tensor (or a list, one per control)
    and one weight (or one per control)."""

    def __init__(self, unet, controlnet, controls, conditioning_scale=1.0):
        self.unet, self.controlnet = unet, controlnet
        self.controls = list(controls) if isinstance(controls, (list, tuple)) else [controls]
        self.scales = per_control(conditioning_scale, len(self.controls))

    def __call__(self, latents, timesteps, context=None):
        controls = [  # classifier-free guidance doubles the batch
            c.repeat(len(latents) // len(c), *[1] * (c.ndim - 1)) if len(c) != len(latents) else c
            for c in self.controls
        ]
        arch = getattr(self.unet, "arch", self.unet)
        # The inputs DiffusionUNet.forward gives its inner UNet (coordinate channels, cross-attention
        # context or time-embedded summary), given to the ControlNet and the UNet alike.
        latents, inputs = arch.diffusers_inputs(latents, context)
        steering = self.controlnet(
            latents, timesteps, controls, self.scales, conv_in=arch.unet.conv_in, **inputs
        )
        return steering.run(arch.unet, latents, timesteps, **inputs)


def per_control(weights, count: int) -> list[float]:
    """One weight for every control, or one per control."""
    weights = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    if len(weights) == 1:
        weights = weights * count
    if len(weights) != count:
        raise ConfigError(
            f"There are {count} controls but {len(weights)} conditioning scales {weights}; give one scale for "
            "all controls or one per control, in the order of control.key."
        )
    return [float(w) for w in weights]


CONTROLNET_TYPES = {True: "ControlNet", False: "MonaiControlNet"}  # by DiffusionUNet.uses_diffusers


def check_controlnet_type(unet, network_type) -> None:
    """Each backend's UNet has its ControlNet: diffusers' `ControlNetModel` copies a
    `UNet2DConditionModel`, MONAI's `ControlNet` a `DiffusionModelUNet`."""
    wanted = CONTROLNET_TYPES[bool(unet.uses_diffusers)]
    if network_type != wanted:
        backend = "diffusers'" if unet.uses_diffusers else "MONAI's (3D, or backend: monai)"
        raise ConfigError(
            f"'network.type' is {network_type!r}, but this LDM's UNet runs on {backend} backend, which "
            f"ControlNet_model steers with 'network.type: {wanted}'."
        )


def as_control(control, spatial_dims: int = 2) -> torch.Tensor:
    """A control batch as float (B, C, *spatial): a class map (B, *spatial) gets its channel axis."""
    control = torch.as_tensor(control)
    return (control[:, None] if control.ndim == spatial_dims + 1 else control).float()


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
        arch = ControlNet_arch if ldm.unet.uses_diffusers else MonaiControlNet_arch
        controlnet = arch.from_pretrained(os.path.join(folder, description["controlnet"]))
        return cls(ldm, controlnet.to(device).eval(), description)

    @property
    def control_keys(self) -> list[str]:
        """The batch keys the run was trained on, in the order its controls are given."""
        key = self.description["control"]["key"]
        return list(key) if isinstance(key, list) else [key]

    @property
    def condition_type(self) -> str:
        return self.ldm.condition_type

    @torch.no_grad()
    def __call__(
        self,
        controls,
        conditions=None,
        seeds: list[int] | None = None,
        conditioning_scale=None,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        ldm, d = self.ldm, self.ldm.description
        device = next(self.controlnet.parameters()).device
        controls = [
            as_control(c, len(d["latent_shape"]) - 1).to(device)
            for c in (controls if isinstance(controls, (list, tuple)) else [controls])
        ]
        if conditions is not None and torch.is_tensor(conditions):
            conditions = conditions.to(device)
        context, shape = ldm.context(conditions)
        seeds = list(range(len(controls[0]))) if seeds is None else list(seeds)
        guidance_scale = d["guidance_scale"] if guidance_scale is None else guidance_scale
        if conditioning_scale is None:
            conditioning_scale = self.description["control"]["conditioning_scale"]
        return ldm.denoise_and_decode(
            ControlledUNet(ldm.unet, self.controlnet, controls, conditioning_scale),
            shape,
            seeds,
            context,
            guidance_scale,
            sampler,
            num_inference_steps,
            device,
        )
