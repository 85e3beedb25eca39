"""The latent scale factor (1 / std of the latents) that stage 2 multiplies latents by.

Measured on the validation set at every validation and at the end of training, and stored in the
arch's config with the step it was measured at (`scaling_factor_measured_at`), so that every saved
`checkpoint-N/net_g`, not only `final/`, carries the value measured so far. A VAE saved before its
first measurement keeps its arch's placeholder and no step; stage 2 then measures the factor itself
(see `is_placeholder_scale`) instead of silently diffusing latents scaled by the placeholder (19x off
in one run).
"""

import torch

MEASURED_AT = "scaling_factor_measured_at"


def measure_latent_std(model) -> float:
    """Std of the latents (posterior mean, or VQ code, minus shift) of `model.net_g` over the validation
    set, with the EMA weights, reduced over every process."""
    arch = model.net_g.arch
    stats = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad(), model.ema_weights():
        for batch in model.val_loader:
            model.feed_data(batch, is_train=False)
            encoded = model.net_g.encode(model.sample["gt"])
            z = (encoded.quantized if model.is_vq else encoded.latent_dist.mean).float()
            if getattr(arch.config, "shift_factor", None):
                z = z - arch.config.shift_factor
            stats += torch.tensor([z.sum().item(), (z**2).sum().item(), z.numel()], dtype=torch.float64)
    stats = model.accelerator.reduce(stats.to(model.accelerator.device), "sum").cpu()
    mean = stats[0].item() / stats[2].item()
    return max((stats[1].item() / stats[2].item() - mean**2) ** 0.5, 1e-8)


def store_scale_factor(arch, std: float, step: int) -> float:
    arch.config.scaling_factor = 1.0 / std
    setattr(arch.config, MEASURED_AT, int(step))
    return arch.config.scaling_factor


def is_placeholder_scale(vae) -> bool:
    """True when the VAE's scaling_factor was never measured: no measurement step in its config and the
    value is its arch's default (0.18215 for AutoencoderKL, 1.0 for the others)."""
    if getattr(vae.config, MEASURED_AT, None) is not None:
        return False
    default = type(vae.config)().scaling_factor
    return float(vae.config.scaling_factor) == float(default)
