"""Logging helpers the models call: images, scalars and metrics, to every active tracker and to disk.

These are seed 003's `log_image`, `log_metric` and `log_metrics`, made tracker-agnostic: the original
`log_metric` only worked with comet_ml, so any other tracker crashed training.
"""

import math
import os
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

from utils.errors.files import file_errors
from utils.images.grid import make_grid, save_png, to_numpy
from utils.metrics import compute_metrics


def _scalar(value) -> float:
    if hasattr(value, "detach"):
        value = value.detach().float().mean().item()
    return float(value)


def log_metric(accelerator, data: dict, step: int) -> None:
    """Log a dict of scalars (floats or tensors) to every active tracker."""
    accelerator.log({k: _scalar(v) for k, v in data.items()}, step=step)


class MetricSummary:
    """Running, sample-weighted means of metrics over one validation pass."""

    def __init__(self):
        self.sums = defaultdict(float)
        self.counts = defaultdict(float)

    def add(self, values: dict, n: int) -> None:
        for k, v in values.items():
            # A NaN or infinite batch value would poison the mean, and metrics.json must stay valid
            # JSON (it has no NaN or Infinity): such batches are left out of that metric's mean.
            if not math.isfinite(float(v)):
                continue
            self.sums[k] += float(v) * n
            self.counts[k] += n

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}


_summary: MetricSummary | None = None


@contextmanager
def collect_metrics():
    """While active, `log_metrics` adds to one summary instead of logging batch by batch.

    BaseModel opens it around a validation pass and logs the means once, at the validation's step.
    """
    global _summary
    previous, _summary = _summary, MetricSummary()
    try:
        yield _summary
    finally:
        _summary = previous


def log_metrics(pred, target, metrics_opt, accelerator, step: int, comment: str = "") -> dict[str, float]:
    """Compute `metrics_opt` (e.g. `{'psnr': {'crop': 0}}`) on numpy NCHW arrays and log them.

    Returns `{comment + name: value}`. Inside a validation pass the values are averaged over the whole
    pass and logged once by BaseModel.
    """
    pred, target = to_numpy(pred), to_numpy(target)
    values = {f"{comment}{k}": v for k, v in compute_metrics(pred, target, metrics_opt).items()}
    if _summary is not None:
        _summary.add(values, n=len(pred))
    elif values:
        log_metric(accelerator, values, step)
    return values


def log_validation_scalars(accelerator, values: dict, step: int, n: int = 1) -> None:
    """Scalars such as a validation loss: averaged over the validation pass (weighted by `n` samples)
    when called inside one, logged at once otherwise."""
    values = {k: _scalar(v) for k, v in values.items()}
    if _summary is not None:
        _summary.add(values, n=n)
    else:
        log_metric(accelerator, values, step)


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
