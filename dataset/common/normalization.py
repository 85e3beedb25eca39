"""Per-image intensity normalisation, with its inverse so results can be written in the original range.

Every mode is an affine map `y = (x - shift) / scale`, so each image's `stats = [shift, scale]` (float64)
is all `denormalize` needs; the datasets return these stats with each item under `'norm'`. The modes
(`none`, `minmax`, `percentile`, `zscore`, `zscore_foreground`) are listed on `Normalization`.
"""

from dataclasses import dataclass

import numpy as np
import torch

MODES = ("none", "minmax", "percentile", "zscore", "zscore_foreground")


@dataclass(frozen=True)
class Normalization:
    """The modes (percentile clips first; foreground z-score maps only the foreground):

        none               y = x
        minmax             [min, max] of the image (or the fixed `value_range`, clipped) -> `norm_range`
        percentile         clip to the image's `percentiles` [low, high], then -> `norm_range`
        zscore             (x - mean) / std over the image
        zscore_foreground  (x - mean) / std over pixels != `background`; background pixels -> 0

    A constant image (max == min, std == 0) and an all-background image give a constant output, never
    NaN: the scale falls back to 1.
    """

    mode: str = "none"
    percentiles: tuple[float, float] = (1.0, 99.0)
    value_range: tuple[float, float] | None = None
    norm_range: tuple[float, float] = (0.0, 1.0)
    background: float = 0.0

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(normalised float32 image, stats [shift, scale] as float64)."""
        image = np.asarray(image, dtype=np.float32)
        if self.mode == "none":
            return image, np.array([0.0, 1.0])
        if self.mode == "minmax":
            if self.value_range is not None:
                low, high = self.value_range
                image = np.clip(image, low, high)
            else:
                low, high = float(image.min()), float(image.max())
            return self._to_range(image, low, high)
        if self.mode == "percentile":
            low, high = (float(v) for v in np.percentile(image, self.percentiles))
            return self._to_range(np.clip(image, low, high), low, high)
        if self.mode == "zscore":
            shift, scale = float(image.mean(dtype=np.float64)), float(image.std(dtype=np.float64))
            return self._apply(image, shift, _safe(scale))
        foreground = image != self.background
        if not foreground.any():
            # Nothing to standardise: all background, which always maps to 0.
            return np.zeros_like(image), np.array([float(self.background), 1.0])
        values = image[foreground].astype(np.float64)
        shift, scale = float(values.mean()), _safe(float(values.std()))
        normalised = np.where(foreground, (image - np.float32(shift)) / np.float32(scale), np.float32(0))
        return normalised.astype(np.float32, copy=False), np.array([shift, scale])

    def _to_range(self, image, low, high):
        out_low, out_high = self.norm_range
        scale = (high - low) / (out_high - out_low) if high > low else 1.0
        # A constant image lands on out_low: shift chosen so that (low - shift) / scale == out_low.
        normalised, stats = self._apply(image, low - out_low * scale, scale)
        # Rounding may overshoot by an ulp; a model with a tanh output relies on the exact bounds.
        return np.clip(normalised, out_low, out_high, out=normalised), stats

    @staticmethod
    def _apply(image, shift, scale):
        normalised = (image - np.float32(shift)) * np.float32(1.0 / scale)
        return normalised.astype(np.float32, copy=False), np.array([shift, scale])


def _safe(scale: float) -> float:
    return scale if scale > 1e-12 else 1.0


def denormalize(image, stats, foreground=None, background: float = 0.0):
    """The inverse of `Normalization` for one item or a batch: `image * scale + shift`.

    image: a tensor or array (C, ...) with stats of shape (2,), or (N, C, ...) with stats (N, 2), as a
    DataLoader collates them. Values that percentile or `value_range` clipped come back at the clip
    bound. For `zscore_foreground`, pass a boolean `foreground` mask (same shape as `image`) to put the
    background value back where the mask is False; without it those pixels come back as the mean.
    """
    is_tensor = torch.is_tensor(image)
    stats = torch.as_tensor(stats, dtype=torch.float64) if is_tensor else np.asarray(stats, dtype=np.float64)
    if stats.ndim == 2:
        # One (shift, scale) per sample: broadcast over every axis after the batch axis.
        stats = stats.reshape(stats.shape[0], 2, *([1] * (image.ndim - 1)))
        shift, scale = stats[:, 0], stats[:, 1]
    else:
        shift, scale = stats[0], stats[1]
    if is_tensor:
        restored = (image.double() * scale.to(image.device) + shift.to(image.device)).to(image.dtype)
        if foreground is not None:
            restored = torch.where(foreground, restored, torch.full_like(restored, background))
        return restored
    restored = (np.asarray(image, dtype=np.float64) * scale + shift).astype(np.asarray(image).dtype)
    if foreground is not None:
        restored = np.where(foreground, restored, np.asarray(background, dtype=restored.dtype))
    return restored
