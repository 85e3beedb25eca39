"""`condition.concat: true`: an image condition's latent also enters the UNet as extra input channels.

Cross-attention tokens tell the UNet what the condition holds but make it learn where; for a condition
aligned pixel for pixel with its target (image translation: blurred -> sharp, dente -> edente), stacking
the condition latent on the noisy latent gives every position its own condition directly, as SR3,
Palette and latent-diffusion super-resolution do. Measured on checkpoints/LDM/tif.yml (README, Stage 2):
with cross-attention alone the samples score the same with shuffled conditions (the condition is
ignored) for hundreds of steps. The UNet then takes `network.in_channels` = 2 x the latent channels.
For classifier-free guidance a dropped condition is a zero latent (and the null token).
"""

import torch


def stacked(noisy: torch.Tensor, condition: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
    if drop is not None:
        condition = torch.where(
            drop.reshape(-1, *[1] * (condition.ndim - 1)), torch.zeros_like(condition), condition
        )
    return torch.cat([noisy, condition.to(noisy.dtype)], dim=1)


class ConcatConditionUNet:
    """The UNet with `condition` stacked on its input, as `sample_latents` calls it. A doubled batch is
    classifier-free guidance's [unconditional, conditional] pair: its first half gets zero latents."""

    def __init__(self, unet, condition: torch.Tensor):
        self.unet, self.condition = unet, condition

    def __call__(self, latents, timesteps, context=None):
        condition = self.condition
        if len(latents) == 2 * len(condition):
            condition = torch.cat([torch.zeros_like(condition), condition])
        return self.unet(stacked(latents, condition), timesteps, context)
