"""The latent scale factor of stage 2: the frozen VAE's stored one, a given number, or one measured on
the training latents (`vae.scale_factor`), so that the scaled latents have about unit variance."""

import torch

from models.vae.latent_scale import is_placeholder_scale
from utils.errors import ConfigError


def set_scale_factor(model, loader) -> None:
    """Use the VAE's stored scale factor; measure 1 / std of the training latents only when asked, or
    when the VAE has none (a MONAI checkpoint, or a VAE saved before it was measured). Sets
    `model.vae.config.scaling_factor` and `model.scale_factor`."""
    setting = model.vae_opt["scale_factor"]
    if isinstance(setting, (int, float)) and not isinstance(setting, bool):
        if not setting > 0:  # latents multiplied by 0 or a negative number carry nothing / come out flipped
            raise ConfigError(
                f"'vae.scale_factor' is {setting!r}; a number must be above 0 (about 1 / the latents' std), "
                "or use auto, stored or compute."
            )
        model.vae.config.scaling_factor = float(setting)
    elif setting == "compute" or (
        setting == "auto" and (model.vae_opt["monai_checkpoint"] or is_placeholder_scale(model.vae))
    ):
        if setting == "auto" and not model.vae_opt["monai_checkpoint"]:
            model.logger.info(
                f"The VAE in '{model.vae_opt['pretrained']}' holds its placeholder scaling_factor "
                f"{model.vae.config.scaling_factor:g} (saved before its first validation, or with "
                "compute_scale_factor: false), so stage 2 measures the factor on the training latents."
            )
        model.vae.config.scaling_factor = 1.0
        total, total_sq, count = 0.0, 0.0, 0
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i >= model.vae_opt["scale_batches"]:
                    break
                z = model.encode(batch[model.gt_key]).double()
                total, total_sq, count = (
                    total + z.sum().item(),
                    total_sq + (z**2).sum().item(),
                    count + z.numel(),
                )
        mean = total / count
        model.vae.config.scaling_factor = 1.0 / max((total_sq / count - mean**2) ** 0.5, 1e-8)
        model.logger.info(f"Measured the latent scale factor: {model.vae.config.scaling_factor:.5g}.")
    elif setting not in ("auto", "stored"):
        raise ConfigError(f"'vae.scale_factor' is {setting!r}; use auto, stored, compute or a number.")
    model.scale_factor = float(model.vae.config.scaling_factor)
