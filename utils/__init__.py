"""Utilities the models call; `log_image` and `log_metrics` are re-exported as seed 003 imports them."""

from utils.misc import log_image, log_metric, log_metrics

__all__ = ["log_image", "log_metric", "log_metrics"]
