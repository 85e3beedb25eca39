"""`train.patched` for stage 2: the UNet trains on random latent windows and samples whole latents window
by window (utils/images/patches.py has the why).

Training crops the same random window from the target latent and, for an image condition, from the
condition latent, so the condition tokens a window sees are those of its own area (with position
embeddings relative to the window). Sampling runs every denoising step through MONAI's
`sliding_window_inference` on [latent, condition latent] stacked along the channels, each window with
its own condition tokens; vector and class tokens are the sample's own for every window. Overlaps are
blended with Gaussian weights, so the windows meet without seams.
"""

import torch

from models.ldm.concat import ConcatConditionUNet
from models.ldm.sampling import guided_prediction
from utils.images.patches import sliding_window


def latent_size_of_window(model, size) -> tuple[int, ...]:
    """The latent size of an image window of `size` under the model's frozen VAE."""
    probe = torch.zeros(1, model.vae.config.in_channels, *size, device=model.accelerator.device)
    return tuple(model.encode(probe).shape[2:])


class SlidingWindowDenoiser:
    """Stands in for the UNet in `sample_latents`: called with (latents, timesteps, conditions), where
    `conditions` are the projector's inputs (not tokens), it predicts whole latents window by window,
    with classifier-free guidance applied inside each window. `kind` is the condition type, or `concat`
    for an image condition also stacked on the UNet's input."""

    def __init__(self, unet, projector, kind: str, window, overlap: float, guidance_scale: float = 1.0):
        self.unet, self.projector, self.kind = unet, projector, kind
        self.window, self.overlap, self.guidance_scale = tuple(window), overlap, guidance_scale

    def _tokens(self, condition):
        context = self.projector(condition)
        null = self.projector.null_tokens(condition) if self.guidance_scale != 1.0 else None
        return context, null

    def __call__(self, latents, timesteps, conditions):
        channels = latents.shape[1]
        out = []
        for i in range(len(latents)):
            t = timesteps[i]
            x = latents[i : i + 1]
            fixed = None
            if conditions is not None and self.kind in ("image", "concat"):
                x = torch.cat([x, conditions[i : i + 1].to(x.dtype)], dim=1)
            elif conditions is not None:
                fixed = self._tokens(conditions[i : i + 1])

            def predict(windows, fixed=fixed, t=t):
                n = len(windows)
                z = windows[:, :channels]
                unet = self.unet
                if self.kind in ("image", "concat") and conditions is not None:
                    context, null = self._tokens(windows[:, channels:])
                    if self.kind == "concat":
                        unet = ConcatConditionUNet(self.unet, windows[:, channels:])
                elif fixed is not None:
                    context, null = (None if f is None else f.expand(n, *f.shape[1:]) for f in fixed)
                else:
                    context = null = None
                return guided_prediction(unet, z, t.expand(n), context, null, self.guidance_scale)

            out.append(sliding_window(predict, x, self.window, self.overlap))
        return torch.cat(out)
