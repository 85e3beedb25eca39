"""Losses: `Loss('1*MSE+0.1*L1')` expressions, keyed multi-task losses, the VAE's losses, perceptual."""

from utils.losses.expression import Loss

__all__ = ["Loss"]
