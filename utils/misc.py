"""Logging functions taking the run's accelerator and step: `log_image`, `log_metric` and `log_metrics`.

Plugins written with `engine.BaseModel` call `self.log` / `self.log_images`, which end here; code that
passes the accelerator and step itself (the seed's style, `from utils import log_metrics`) calls these
directly. All of them write to every active tracker, whichever it is.
"""

import math
import os
from collections import defaultdict

import numpy as np

from utils.errors.files import file_errors
from utils.images.grid import make_grid, save_png, to_numpy
from utils.metrics import compute_metrics


def scalar(value) -> float:
    """A float, or a tensor's mean as a float."""
    if hasattr(value, "detach"):
        value = value.detach().float().mean().item()
    return float(value)


def log_metric(accelerator, data: dict, step: int) -> None:
    """Log a dict of scalars (floats or tensors) to every active tracker."""
    accelerator.log({k: scalar(v) for k, v in data.items()}, step=step)


class MetricSummary:
    """Running, sample-weighted means of metrics over one validation pass."""

    def __init__(self):
        self.sums = defaultdict(float)
        self.counts = defaultdict(float)
        self.non_finite: set[str] = set()  # names with a batch left out of the mean

    def add(self, values: dict, n: int) -> None:
        for k, v in values.items():
            # A NaN or infinite batch value would poison the mean, and metrics.json must stay valid
            # JSON (it has no NaN or Infinity): such batches are left out of that metric's mean.
            if not math.isfinite(float(v)):
                self.non_finite.add(k)
                continue
            self.sums[k] += float(v) * n
            self.counts[k] += n

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}


def log_metrics(pred, target, metrics_opt, accelerator, step: int, comment: str = "") -> dict[str, float]:
    """Compute `metrics_opt` (e.g. `{'psnr': {'crop': 0}}`) of numpy NCHW arrays, log them at `step` as
    `comment + name`, and return them. Inside a validation pass the engine averages them over the pass
    (engine/seed_style.py)."""
    pred, target = to_numpy(pred), to_numpy(target)
    values = {f"{comment}{k}": v for k, v in compute_metrics(pred, target, metrics_opt).items()}
    if values:
        log_metric(accelerator, values, step)
    return values


_image_names: dict[tuple, int] = defaultdict(int)


def log_image(opt, accelerator, images, name: str, step: int) -> str | None:
    """Log a batch (numpy or tensor, NCHW or NCDHW) as one grid to every tracker and as a PNG.

    The PNG goes to `<run>/images/<name>_<step>.png`; a second call with the same name at the same step
    (the next validation batch) gets `_1`, `_2`, ... Only the main process writes. Returns the PNG path.
    """
    if not accelerator.is_main_process:
        return None
    grid = make_grid(images)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image(name, grid, global_step=step, dataformats="HWC")
        elif tracker.name == "comet_ml":
            # A PIL image: comet_ml turns a bare array into an image only through matplotlib, and without
            # it the offline archive silently holds no images.
            from PIL import Image

            pil = Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8))
            tracker.writer.log_image(pil, name=f"{name}_{step}", step=step)
        elif hasattr(tracker, "log_images"):
            tracker.log_images({name: [grid]}, step=step)
    val = opt.get("val") or {}
    if not val.get("save_images", True):
        return None
    folder = os.path.join(accelerator.project_dir, "images")  # the run folder the engine gave Accelerate
    os.makedirs(folder, exist_ok=True)
    key = (folder, name, step)
    index = _image_names[key]
    _image_names[key] += 1
    suffix = f"_{index}" if index else ""
    path = os.path.join(folder, f"{name}_{step:07d}{suffix}.png")
    with file_errors(path, needed_bytes=grid.size, cleanup=None):  # a full disk names the image
        save_png(grid, path)
    return path
