"""Dice and IoU on 2D and 3D masks, with thresholds, crops and empty masks."""

import numpy as np
import pytest

from utils.metrics import compute_metrics
from utils.metrics.mask import dice, iou


def test_known_overlap_2d():
    pred = np.zeros((1, 1, 4, 4))
    target = np.zeros((1, 1, 4, 4))
    pred[..., :2, :] = 1  # 8 pixels
    target[..., 1:3, :] = 1  # 8 pixels, 4 shared
    assert dice(pred, target) == pytest.approx(0.5)
    assert iou(pred, target) == pytest.approx(4 / 12)


def test_threshold_and_3d():
    pred = np.full((2, 1, 3, 4, 4), 0.4)
    target = np.ones((2, 1, 3, 4, 4))
    assert dice(pred, target) == 0.0
    assert dice(pred, target, threshold=0.3) == 1.0 and iou(pred, target, threshold=0.3) == 1.0


def test_both_empty_scores_one_and_averages_per_sample():
    pred = np.zeros((2, 1, 4, 4))
    target = np.zeros((2, 1, 4, 4))
    target[1, 0, 0, 0] = 1  # sample 1: target has one pixel, prediction none -> 0
    assert dice(pred, target) == pytest.approx(0.5)  # (1.0 + 0.0) / 2
    assert iou(pred, target) == pytest.approx(0.5)
    assert np.isfinite(dice(pred, pred))


def test_crop_removes_the_border():
    pred = np.zeros((1, 1, 6, 6))
    target = np.zeros((1, 1, 6, 6))
    target[..., 0, :] = 1  # disagreement only on the border
    pred[..., 2:4, 2:4] = target[..., 2:4, 2:4] = 1
    assert dice(pred, target) < 1 and dice(pred, target, crop=1) == 1.0


def test_registered_beside_psnr():
    masks = (np.random.default_rng(0).random((2, 1, 8, 8)) > 0.5).astype(np.float32)
    scores = compute_metrics(
        masks, masks, {"dice": {"threshold": 0.5}, "iou": {"crop": 1}, "psnr": {"crop": 0}}
    )
    assert scores["dice"] == 1.0 and scores["iou"] == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        dice(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5)))


def test_generated_samples_scored_against_class_map_masks(tmp_path):
    """`generate.py --targets` on masks: Dice of the foregrounds, 1 for samples on their own masks, lower
    with the masks shuffled; the samples of `--num-samples` pair with their condition's mask."""
    import json

    import tifffile

    from models.ldm.sample_scores import score_samples

    rng = np.random.default_rng(0)
    masks, out = tmp_path / "masks", tmp_path / "gen"
    masks.mkdir(), out.mkdir()
    written = []
    for i in range(4):
        mask = np.zeros((16, 16), np.float32)
        top, left = rng.integers(0, 8, 2)
        mask[top : top + 8, left : left + 8] = 1 + i % 3  # a class map: 0 background, 1..3 kinds
        tifffile.imwrite(masks / f"shape{i}.tif", mask)
        for k in range(2):
            written.append(out / f"shape{i}_s{k:02d}.tif")
            tifffile.imwrite(written[-1], np.where(mask > 0, 0.9, 0.05).astype(np.float32))
    report = score_samples(written, out, masks)
    assert report["mean"]["dice"] == 1.0 and len(report["samples"]) == 8
    assert report["shuffled_condition_baseline"]["dice"] < 0.7
    assert json.load(open(out / "metrics.json")) == report
