"""Scores of a segmentation head (per class) and a classification head, from logits and class indices.

Dice and IoU per class reuse `utils.metrics.mask` on the one-hot masks of that class, so a sample where
a class is absent from both prediction and target scores 1.0 there, as for any mask.
"""

import numpy as np
import torch

from utils.metrics.mask import dice, iou


def class_map(target: torch.Tensor) -> torch.Tensor:
    """A (N, H, W) class map from (N, H, W) or (N, 1, H, W)."""
    return target[:, 0] if target.ndim == 4 else target


def segmentation_scores(logits: torch.Tensor, target: torch.Tensor, prefix: str = "") -> dict[str, float]:
    """`{prefix}dice_c{k}` and `{prefix}iou_c{k}` for every class k >= 1 (the background excluded), and
    their means `{prefix}dice` / `{prefix}iou` over those classes."""
    predicted = logits.argmax(1).cpu().numpy()
    truth = class_map(target).long().cpu().numpy()
    scores = {}
    for k in range(1, logits.shape[1]):
        p, t = (predicted == k)[:, None].astype(np.float32), (truth == k)[:, None].astype(np.float32)
        scores[f"{prefix}dice_c{k}"] = dice(p, t)
        scores[f"{prefix}iou_c{k}"] = iou(p, t)
    classes = range(1, logits.shape[1])
    scores[f"{prefix}dice"] = float(np.mean([scores[f"{prefix}dice_c{k}"] for k in classes]))
    scores[f"{prefix}iou"] = float(np.mean([scores[f"{prefix}iou_c{k}"] for k in classes]))
    return scores


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1).cpu() == labels.long().reshape(-1).cpu()).float().mean())
