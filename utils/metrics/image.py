"""Image metrics on numpy arrays of shape (N, C, H, W) or (N, C, D, H, W): the mean over samples.

`crop` removes that many pixels from every border of every spatial axis (0: none), as super-resolution
papers do. `data_range` is the span of valid values; when null it is each target's own max - min, so
PSFs (tiny values) and [0, 1] images are both scored sensibly.
"""

import numpy as np
from skimage.metrics import structural_similarity

from utils.errors import ConfigError


def _crop(x: np.ndarray, crop: int) -> np.ndarray:
    if not crop:
        return x
    spatial = tuple(slice(crop, -crop) for _ in range(x.ndim - 2))
    return x[(slice(None), slice(None), *spatial)]


def _prepare(pred, target, crop):
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    if pred.ndim < 3:
        raise ValueError(f"metrics expect (N, C, ...) arrays, got shape {pred.shape}")
    if crop and min(pred.shape[2:]) <= 2 * crop:
        raise ConfigError(
            f"A metric's 'crop' of {crop} pixels per border leaves nothing of images of size "
            f"{'x'.join(map(str, pred.shape[2:]))}; set 'val.metrics.<metric>.crop' below {(min(pred.shape[2:]) + 1) // 2}."
        )
    return _crop(pred, crop), _crop(target, crop)


def _ranges(target: np.ndarray, data_range: float | None) -> np.ndarray:
    if data_range is not None:
        return np.full(len(target), float(data_range))
    flat = target.reshape(len(target), -1)
    span = flat.max(axis=1) - flat.min(axis=1)
    return np.where(span > 0, span, 1.0)


def mse(pred, target, crop: int = 0) -> float:
    pred, target = _prepare(pred, target, crop)
    return float(((pred - target) ** 2).mean())


def mae(pred, target, crop: int = 0) -> float:
    pred, target = _prepare(pred, target, crop)
    return float(np.abs(pred - target).mean())


def psnr(pred, target, crop: int = 0, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, per sample, then averaged; capped at 100 dB for exact matches."""
    pred, target = _prepare(pred, target, crop)
    per_sample_mse = ((pred - target) ** 2).reshape(len(pred), -1).mean(axis=1)
    ranges = _ranges(target, data_range)
    with np.errstate(divide="ignore"):
        values = 10 * np.log10(ranges**2 / per_sample_mse)
    return float(np.minimum(values, 100.0).mean())


def ssim(pred, target, crop: int = 0, data_range: float | None = None) -> float:
    """Structural similarity (Gaussian-free 7x7 window of scikit-image), per sample and channel."""
    pred, target = _prepare(pred, target, crop)
    ranges = _ranges(target, data_range)
    win = min(7, *pred.shape[2:])
    win = win if win % 2 else win - 1
    scores = [
        structural_similarity(p[c], t[c], data_range=r, win_size=max(win, 3))
        for p, t, r in zip(pred, target, ranges)
        for c in range(p.shape[0])
    ]
    return float(np.mean(scores))
