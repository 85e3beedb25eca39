"""A trained stage-2 run's `final/` folder, loaded for generation: UNet, projector, schedule, frozen VAE.

    pipe = LDMPipeline.from_final("experiments/LDM_PSF/demo/final")
    images = pipe(conditions, seeds=[0, 1, 2], sampler="ddim", num_inference_steps=50, guidance_scale=1.0)

`conditions` are what the model was trained on: condition images (B, C, H, W) in the training's
normalisation, vectors in the dataset's layout (`condition.indices` is applied here), class labels, or
None for an unconditional model. The VAE's scale factor is the one the run trained with (`ldm.json`).
"""

import os

import torch
from diffusers import DDPMScheduler

from models.archs.autoencoder_outputs import decode_generated
from models.archs.condition_projector_arch import ConditionProjector_arch
from models.archs.diffusion_unet_arch import DiffusionUNet_arch
from models.ldm.concat import ConcatConditionUNet
from models.ldm.frozen_vae import encode_latents, load_frozen_vae
from models.ldm.patched import SlidingWindowDenoiser
from models.ldm.sampling import make_sampler, sample_latents
from utils.errors import ConfigError
from utils.errors.files import read_json
from utils.losses.vae import decoded_image


class LDMPipeline:
    def __init__(self, unet, projector, noise_scheduler_config, vae, description: dict):
        self.unet, self.projector, self.vae = unet, projector, vae
        self.noise_scheduler_config = noise_scheduler_config
        self.description = description

    @classmethod
    def from_final(cls, folder: str, device: str = "cpu") -> "LDMPipeline":
        path = os.path.join(folder, "ldm.json")
        if not os.path.isfile(path):
            raise ConfigError(
                f"No ldm.json in '{folder}': point at a trained LDM run's final/, best/ or checkpoint-N/ folder."
            )
        description = read_json(path)
        unet = DiffusionUNet_arch.from_pretrained(os.path.join(folder, description["unet"])).to(device).eval()
        inject = description["condition"].get("inject", "cross_attention")
        if unet.config.with_conditioning and unet.config.condition_injection != inject:
            raise ConfigError(
                f"'{path}' says condition.inject: {inject} but its UNet was built with "
                f"{unet.config.condition_injection}; the folder mixes two runs."
            )
        projector = None
        if description.get("projector"):
            projector = ConditionProjector_arch.from_pretrained(
                os.path.join(folder, description["projector"])
            )
            projector = projector.to(device).eval()
        scheduler_config = DDPMScheduler.load_config(os.path.join(folder, "scheduler"))
        vae, _ = load_frozen_vae(**description["vae"])
        vae.config.scaling_factor = description["scale_factor"]  # the factor the run trained with
        return cls(unet, projector, scheduler_config, vae.to(device), description)

    @property
    def condition_type(self) -> str:
        return self.description["condition"]["type"]

    def projector_inputs(self, conditions):
        """(what the projector takes, latent shape) for a batch of conditions."""
        kind = self.condition_type
        if kind == "none":
            return None, self.description["latent_shape"]
        if kind == "image":
            latents = encode_latents(self.vae, conditions.float())
            return latents, list(latents.shape[1:])
        if kind == "vector":
            vectors = torch.as_tensor(conditions).float().reshape(len(conditions), -1)
            indices = self.description["condition"].get("indices")
            if indices is not None:
                vectors = vectors[:, list(indices)]
            return vectors, self.description["latent_shape"]
        return torch.as_tensor(conditions).long(), self.description["latent_shape"]

    def context(self, conditions):
        """(context tokens, latent shape) for a batch of conditions."""
        inputs, shape = self.projector_inputs(conditions)
        return (self.projector(inputs) if inputs is not None else None), shape

    @torch.no_grad()
    def __call__(
        self,
        conditions=None,
        seeds: list[int] | None = None,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        d = self.description
        device = next(self.unet.parameters()).device
        if conditions is not None and torch.is_tensor(conditions):
            conditions = conditions.to(device)
        count = len(conditions) if conditions is not None else len(seeds)
        seeds = list(range(count)) if seeds is None else list(seeds)
        guidance_scale = d["guidance_scale"] if guidance_scale is None else guidance_scale
        unet = self.unet
        patched = d.get("patched")
        concat = d["condition"].get("concat", False)
        inputs, shape = self.projector_inputs(conditions)
        if patched and list(shape[1:]) != list(
            patched["window"]
        ):  # trained on windows: sample window by window
            unet = SlidingWindowDenoiser(
                self.unet,
                self.projector,
                "concat" if concat else self.condition_type,
                patched["window"],
                patched["overlap"],
                guidance_scale,
            )
            context, guidance_scale = inputs, 1.0
        else:
            context = self.projector(inputs) if inputs is not None else None
            if concat:
                unet = ConcatConditionUNet(self.unet, inputs)
        return self.denoise_and_decode(
            unet, shape, seeds, context, guidance_scale, sampler, num_inference_steps, device
        )

    def denoise_and_decode(
        self, unet, shape, seeds, context, guidance_scale, sampler, num_inference_steps, device
    ) -> torch.Tensor:
        """Sample latents with `unet` (this LDM's UNet, or a wrapper of it such as a ControlNet's) and
        decode them; the run's sampler and step count unless given."""
        d = self.description
        null = None
        if context is not None and guidance_scale != 1.0:
            null = self.projector.null_token.expand_as(context)
        latents = sample_latents(
            unet,
            make_sampler(sampler or d["sampler"], self.noise_scheduler_config),
            shape,
            seeds,
            context,
            null,
            guidance_scale=float(guidance_scale),
            num_inference_steps=num_inference_steps or d["num_inference_steps"],
            device=device,
        )
        return decoded_image(decode_generated(self.vae, latents), d.get("recon_type", "l1")).float()
