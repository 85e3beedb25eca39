"""What `self.log` and `self.log_images` write to: the trackers at the run's step, or a validation pass.

During a pass (`validation_pass()`, opened by engine/evaluation.py) everything a model logs is added to
that pass's `ValidationPass`: scalars weighted by the batch's sample count, metrics by the number of
predictions, images once per name (the first batch's). The pass reports the means as `val_<name>`.
Outside a pass, scalars go to every tracker at once under their own names.
"""

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

from utils.images.grid import to_numpy
from utils.metrics import compute_metrics
from utils.misc import MetricSummary, log_image, log_metric, scalar


class ValidationPass:
    """One validation pass: the running means, the samples seen so far, the image names logged."""

    def __init__(self):
        self.summary = MetricSummary()
        self.samples_seen = 0  # samples of the pass's earlier batches
        self.batch_samples = 0  # samples of the batch being validated
        self.images_logged: set[str] = set()

    @contextmanager
    def batch(self, batch):
        self.batch_samples = samples_in(batch)
        yield
        self.samples_seen += self.batch_samples

    def add(self, values: dict, n: int | None = None) -> None:
        self.summary.add({f"val_{k}": scalar(v) for k, v in values.items()}, n=n or self.batch_samples)


def samples_in(batch) -> int:
    """The number of samples in a collated batch: the length of its first tensor or list."""
    if isinstance(batch, Mapping):
        batch = next((v for v in batch.values() if hasattr(v, "shape") or isinstance(v, list)), [])
    elif isinstance(batch, Sequence) and batch and not isinstance(batch, str):
        batch = batch[0]
    return len(batch) if hasattr(batch, "__len__") else 1


class ModelLog:
    """Logging for one model: `opt`, the accelerator and the step come from the run, never the author."""

    def __init__(self, opt, accelerator, state):
        self.opt, self.accelerator, self.state = opt, accelerator, state
        self.validation: ValidationPass | None = None  # the pass in progress
        self.non_finite: set[str] = set()  # names the last pass had no finite value of

    @contextmanager
    def validation_pass(self):
        self.validation = ValidationPass()
        try:
            yield self.validation
        finally:
            self.validation = None

    def log(self, values: dict | None = None, *, pred=None, target=None, prefix: str = "") -> dict:
        """See `BaseModel.log`. Returns the values logged, under the names given (without `val_`)."""
        logged = {f"{prefix}{k}": v for k, v in (values or {}).items()}
        metrics = {}
        if pred is not None:
            pred, target = to_numpy(pred), to_numpy(target)
            metric_opt = (self.opt.get("val") or {}).get("metrics") or {}
            metrics = {f"{prefix}{k}": v for k, v in compute_metrics(pred, target, metric_opt).items()}
        if self.validation is not None:
            if logged:
                self.validation.add(logged)
            if metrics:
                self.validation.add(metrics, n=len(pred))
        elif logged or metrics:
            log_metric(self.accelerator, {**logged, **metrics}, self.state.global_step)
        return {**logged, **metrics}

    def log_images(self, name: str, images) -> str | None:
        """See `BaseModel.log_images`. Returns the PNG's path (main process, when written)."""
        if self.validation is not None:
            if name in self.validation.images_logged:
                return None
            self.validation.images_logged.add(name)
        return log_image(self.opt, self.accelerator, images, name, self.state.global_step)
