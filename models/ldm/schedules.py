"""Noise schedules, training targets and min-SNR weights of stage 2, on diffusers' `DDPMScheduler`.

`beta_schedule` names:

| name | betas | default beta_start, beta_end |
| --- | --- | --- |
| `linear` | linear in beta (DDPM) | 1e-4, 0.02 |
| `scaled_linear` | linear in sqrt(beta) (Stable Diffusion) | 0.00085, 0.012 |
| `quadratic` | linear in sqrt(beta), squared, over DDPM's range | 1e-4, 0.02 |
| `cosine` | Nichol & Dhariwal's cosine alpha-bar (diffusers' `squaredcos_cap_v2`) | - |
"""

import torch
from diffusers import DDPMScheduler

from utils.errors import ConfigError

# name -> (diffusers beta_schedule, default beta_start, default beta_end)
BETA_SCHEDULES = {
    "linear": ("linear", 1e-4, 0.02),
    "scaled_linear": ("scaled_linear", 0.00085, 0.012),
    # The quadratic curve is the one diffusers calls `scaled_linear`; stored under that name, the saved
    # scheduler config is a plain diffusers one that any diffusers scheduler loads.
    "quadratic": ("scaled_linear", 1e-4, 0.02),
    "cosine": ("squaredcos_cap_v2", 1e-4, 0.02),
}
PREDICTION_TYPES = {
    "epsilon": "epsilon",
    "v": "v_prediction",
    "v_prediction": "v_prediction",
    "sample": "sample",
}


def make_noise_scheduler(
    num_train_timesteps: int = 1000,
    beta_schedule: str = "scaled_linear",
    beta_start: float | None = None,
    beta_end: float | None = None,
    prediction_type: str = "epsilon",
) -> DDPMScheduler:
    if beta_schedule not in BETA_SCHEDULES:
        raise ConfigError(
            f"'diffusion.beta_schedule' is {beta_schedule!r}; use one of {', '.join(BETA_SCHEDULES)}."
        )
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(
            f"'diffusion.prediction_type' is {prediction_type!r}; use one of {', '.join(PREDICTION_TYPES)}."
        )
    name, start, end = BETA_SCHEDULES[beta_schedule]
    start, end = (
        float(start if beta_start is None else beta_start),
        float(end if beta_end is None else beta_end),
    )
    if name == "squaredcos_cap_v2" and (beta_start, beta_end) != (None, None):
        # diffusers' cosine schedule ignores them: a run would silently train on another schedule.
        raise ConfigError(
            "'diffusion.beta_start' / 'diffusion.beta_end' are set but 'diffusion.beta_schedule: cosine' has no beta "
            "range; remove them, or choose linear, scaled_linear or quadratic."
        )
    if name != "squaredcos_cap_v2" and not 0.0 < start < end < 1.0:
        # A beta of 1 or more leaves no signal (the loss turns NaN), a falling schedule adds less noise at
        # the end than at the start, and the sampler's last step then starts from a half-clean latent.
        raise ConfigError(
            f"'diffusion.beta_start' / 'diffusion.beta_end' are {start:g} / {end:g}; they must satisfy "
            f"0 < beta_start < beta_end < 1 (the {beta_schedule} defaults: {BETA_SCHEDULES[beta_schedule][1]:g}, "
            f"{BETA_SCHEDULES[beta_schedule][2]:g})."
        )
    return DDPMScheduler(
        num_train_timesteps=int(num_train_timesteps),
        beta_schedule=name,
        beta_start=start,
        beta_end=end,
        prediction_type=PREDICTION_TYPES[prediction_type],
        # Scaled latents have unit std, not a [-1, 1] range: clipping x0 to it would distort samples.
        clip_sample=False,
        # Few-step samplers then start at the last training timestep (pure noise), not below it.
        timestep_spacing="trailing",
    )


def check_sampling_steps(
    steps: int,
    timesteps: int,
    where: str = "val.num_inference_steps",
    timesteps_key: str = "'diffusion.num_train_timesteps'",
) -> None:
    """A sampler cannot take more steps than the schedule has timesteps (diffusers refuses at sampling)."""
    if steps > timesteps:
        raise ConfigError(
            f"'{where}' is {steps}, more than the {timesteps} of {timesteps_key}; sample with "
            f"at most {timesteps} steps, or train with more timesteps."
        )


def signal_to_noise(scheduler: DDPMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """SNR(t) = alpha_bar / (1 - alpha_bar), per timestep, in float32 on the timesteps' device."""
    alpha_bar = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alpha_bar / (1.0 - alpha_bar)


def training_target(
    scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    return latents


def min_snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights of min-SNR-gamma (Hang et al. 2023) for the scheduler's prediction type.

    The weight min(SNR, gamma) applies to the x0 error; an epsilon error is SNR times an x0 error and a v
    error SNR + 1 times one, hence the divisions.
    """
    snr = signal_to_noise(scheduler, timesteps)
    clipped = torch.clamp(snr, max=gamma)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "v_prediction":
        return clipped / (snr + 1.0)
    return clipped
