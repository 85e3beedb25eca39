"""Utilities the models call; `log_image`, `log_metric` and `log_metrics` for code that passes the run's
accelerator and step itself (`BaseModel.log` / `log_images` need neither)."""

from utils.misc import log_image, log_metric, log_metrics

__all__ = ["log_image", "log_metric", "log_metrics"]
