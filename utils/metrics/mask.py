"""Overlap metrics for masks on numpy arrays (N, C, H, W) or (N, C, D, H, W): the mean over samples.

Prediction and target are binarised with `value > threshold` (so soft predictions and 0/1 or 0/255
targets alike work, with threshold 0.5 or 127), and each sample's score counts every channel and pixel.
A sample where both masks are empty scores 1.0: the prediction is exactly right, and any other value
would punish a model for correctly finding nothing. `crop` removes that many pixels from every border
of every spatial axis (0: none), as for psnr and ssim.
"""

import numpy as np


def _masks(pred, target, crop: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    if pred.ndim not in (4, 5):
        raise ValueError(
            f"mask metrics expect (N, C, H, W) or (N, C, D, H, W) arrays, got shape {pred.shape}"
        )
    if crop:
        spatial = tuple(slice(crop, -crop) for _ in range(pred.ndim - 2))
        pred, target = (
            pred[(slice(None), slice(None), *spatial)],
            target[(slice(None), slice(None), *spatial)],
        )
    flat = (len(pred), -1)
    return (pred > threshold).reshape(flat), (target > threshold).reshape(flat)


def _overlaps(pred, target, crop, threshold):
    pred, target = _masks(pred, target, crop, threshold)
    both = np.logical_and(pred, target).sum(axis=1).astype(np.float64)
    return both, pred.sum(axis=1).astype(np.float64), target.sum(axis=1).astype(np.float64)


def dice(pred, target, crop: int = 0, threshold: float = 0.5) -> float:
    """2 |P and T| / (|P| + |T|) per sample, averaged; 1.0 for a sample where both masks are empty."""
    both, in_pred, in_target = _overlaps(pred, target, crop, threshold)
    total = in_pred + in_target
    scores = np.where(total > 0, 2 * both / np.maximum(total, 1), 1.0)
    return float(scores.mean())


def iou(pred, target, crop: int = 0, threshold: float = 0.5) -> float:
    """|P and T| / |P or T| per sample, averaged; 1.0 for a sample where both masks are empty."""
    both, in_pred, in_target = _overlaps(pred, target, crop, threshold)
    union = in_pred + in_target - both
    scores = np.where(union > 0, both / np.maximum(union, 1), 1.0)
    return float(scores.mean())
