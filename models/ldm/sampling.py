"""Sampling stage 2: diffusers' DDPM, DDIM and DPM-Solver++ with classifier-free guidance.

Each sample is denoised with its own context tokens (sharing one sample's tokens across a batch would
score every sample against a condition it was not drawn under), and its starting noise comes from its own seed, so a sample depends on
its condition and seed only, not on the batch it was drawn in.
"""

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from utils.errors import ConfigError

SAMPLERS = ("ddpm", "ddim", "dpm_solver")


def make_sampler(name: str, noise_scheduler_config):
    """A sampling scheduler built from the training scheduler's config (same betas, prediction type)."""
    if name == "ddpm":
        return DDPMScheduler.from_config(noise_scheduler_config)
    if name == "ddim":
        return DDIMScheduler.from_config(noise_scheduler_config, set_alpha_to_one=True)
    if name == "dpm_solver":
        return DPMSolverMultistepScheduler.from_config(
            noise_scheduler_config, algorithm_type="dpmsolver++", solver_order=2
        )
    raise ConfigError(f"The sampler is {name!r}; use one of {', '.join(SAMPLERS)}.")


def initial_noise(shape, seeds: list[int], device, dtype=torch.float32) -> torch.Tensor:
    """Starting noise of shape (len(seeds), *shape), sample i drawn from a generator seeded with seeds[i]."""
    return torch.stack(
        [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    ).to(device=device, dtype=dtype)


def guided_prediction(unet, latents, timesteps, context, null_context, guidance_scale: float):
    """The UNet's prediction under classifier-free guidance: uncond + scale * (cond - uncond).

    With `guidance_scale` 1 (or no null context) this is the conditional prediction itself, computed alone.
    """
    if null_context is None or guidance_scale == 1.0:
        return unet(latents, timesteps, context)
    both = unet(
        torch.cat([latents, latents]), torch.cat([timesteps, timesteps]), torch.cat([null_context, context])
    )
    unconditional, conditional = both.chunk(2)
    return unconditional + guidance_scale * (conditional - unconditional)


@torch.no_grad()
def sample_latents(
    unet,
    scheduler,
    shape,
    seeds: list[int],
    context: torch.Tensor | None = None,
    null_context: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    num_inference_steps: int = 50,
    device="cpu",
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample len(seeds) latents of `shape` (C, *spatial); `context[i]` conditions sample i.

    Sample i draws its starting noise, then the noise of DDPM's stochastic steps, from a generator seeded
    with seeds[i]. `noise` replaces the starting noise (the generators still draw it first, so that
    DDPM's step noise stays independent of it).
    """
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    start = torch.stack([torch.randn(tuple(shape), generator=g) for g in generators]).to(device)
    noise = start if noise is None else noise.to(device)
    scheduler.set_timesteps(int(num_inference_steps), device=device)
    generator = generators if len(generators) > 1 else generators[0]
    latents = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        timesteps = torch.full((len(latents),), int(t), device=latents.device, dtype=torch.long)
        prediction = guided_prediction(unet, model_input, timesteps, context, null_context, guidance_scale)
        latents = scheduler.step(prediction.float(), t, latents, generator=generator).prev_sample
    return latents
