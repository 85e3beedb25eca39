import math

import numpy as np
import pytest
import torch

from utils.errors import ConfigError
from utils.losses import Loss
from utils.metrics import check_metric_options, compute_metrics
from utils.metrics.image import mae, mse, psnr, ssim


def test_loss_weighted_sum_matches_hand_computation():
    pred = torch.tensor([[0.0, 1.0, 2.0]])
    target = torch.tensor([[1.0, 1.0, 0.0]])
    out = Loss("1*MSE+0.1*L1")(pred, target)
    assert out["MSE"].item() == pytest.approx((1 + 0 + 4) / 3)
    assert out["L1"].item() == pytest.approx((1 + 0 + 2) / 3)
    assert out["all"].item() == pytest.approx(5 / 3 + 0.1 * 1.0)


def test_seed_separator_and_default_weight():
    assert Loss.parse("MSE|0.5*Charbonnier") == [("MSE", 1.0), ("Charbonnier", 0.5)]
    assert Loss.parse("2e-1*huber") == [("Huber", 0.2)]


def test_charbonnier_bce_ssim_terms():
    x = torch.rand(2, 1, 16, 16)
    out = Loss("Charbonnier+SSIM+BCE")(x, x)
    assert out["Charbonnier"].item() == pytest.approx(1e-3, rel=1e-3)
    assert out["SSIM"].item() == pytest.approx(0.0, abs=1e-4)
    assert out["BCE"].item() > 0  # entropy of a soft target with itself is not 0


def test_psnr_mse_mae_known_values():
    target = np.zeros((2, 1, 4, 4))
    pred = np.full((2, 1, 4, 4), 0.1)
    assert mse(pred, target) == pytest.approx(0.01)
    assert mae(pred, target) == pytest.approx(0.1)
    assert psnr(pred, target, data_range=1.0) == pytest.approx(20.0)
    assert psnr(target, target, data_range=1.0) == 100.0


def test_crop_removes_the_border():
    target = np.zeros((1, 1, 8, 8))
    pred = target.copy()
    pred[..., 0, :] = 1.0  # error only on the first row
    assert mse(pred, target, crop=1) == 0.0
    assert mse(pred, target, crop=0) == pytest.approx(8 / 64)


def test_ssim_identical_is_one_and_noise_lower():
    rng = np.random.default_rng(0)
    target = rng.random((2, 1, 32, 32))
    assert ssim(target, target) == pytest.approx(1.0)
    assert ssim(target + 0.2 * rng.standard_normal(target.shape), target) < 0.9


def test_metric_options_are_checked_and_computed():
    with pytest.raises(ConfigError, match=r"'val.metrics.psnr.crop' is -1"):
        check_metric_options({"psnr": {"crop": -1}})
    values = compute_metrics(
        np.zeros((1, 1, 4, 4)), np.full((1, 1, 4, 4), 0.5), {"mse": {}, "psnr": {"data_range": 1}}
    )
    assert values["mse"] == 0.25 and values["psnr"] == pytest.approx(10 * math.log10(4))
