"""Metrics by name, as `val.metrics` in the YAML names them: `psnr: {crop: 0}`.

Each metric is `fn(pred, target, crop=0, **options) -> float` over numpy arrays (N, C, ...).
"""

import importlib
import inspect

from utils.errors import ConfigError, did_you_mean

# name -> "module:function"; imported on use so that one metric's dependency never breaks another.
METRICS = {
    "psnr": "utils.metrics.image:psnr",
    "ssim": "utils.metrics.image:ssim",
    "mse": "utils.metrics.image:mse",
    "mae": "utils.metrics.image:mae",
    "dice": "utils.metrics.mask:dice",
    "iou": "utils.metrics.mask:iou",
}
# Which direction is better, for "best" summaries and for readers of the table.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "mse": False, "mae": False, "dice": True, "iou": True}


def get_metric(name: str):
    if name not in METRICS:
        raise ConfigError(
            f"Unknown metric '{name}'{did_you_mean(name, METRICS)}; known: {', '.join(METRICS)}."
        )
    module, fn = METRICS[name].split(":")
    return getattr(importlib.import_module(module), fn)


def check_metric_options(metrics_opt, where: str = "val.metrics") -> None:
    """Every metric name known and every option one its function accepts."""
    if metrics_opt is None:
        return
    if not hasattr(metrics_opt, "items"):
        raise ConfigError(
            f"'{where}' must map metric names to their options (e.g. psnr: {{crop: 0}}), got {metrics_opt!r}."
        )
    for name, options in metrics_opt.items():
        if name not in METRICS:
            raise ConfigError(
                f"Unknown metric '{where}.{name}'{did_you_mean(name, METRICS)}; known: {', '.join(METRICS)}."
            )
        accepted = [p for p in inspect.signature(get_metric(name)).parameters if p not in ("pred", "target")]
        for option, value in (options or {}).items():
            if option not in accepted:
                raise ConfigError(
                    f"Unknown option '{where}.{name}.{option}'{did_you_mean(option, accepted)}; "
                    f"'{name}' takes: {', '.join(accepted)}."
                )
            if option == "crop" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(
                    f"'{where}.{name}.crop' is {value!r}; it must be a whole number of pixels >= 0."
                )
            if (
                option == "data_range"
                and value is not None
                and (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not 0 < value < float("inf")
                )
            ):
                raise ConfigError(
                    f"'{where}.{name}.data_range' is {value!r}; it must be a positive finite number (the span of "
                    "valid values, e.g. 1.0), or null to use each target's own range."
                )


def compute_metrics(pred, target, metrics_opt) -> dict[str, float]:
    """`{name: value}` for every metric of `metrics_opt` (`{'psnr': {'crop': 0}, ...}`)."""
    values = {}
    for name, options in (metrics_opt or {}).items():
        try:
            values[name] = get_metric(name)(pred, target, **dict(options or {}))
        except ConfigError:
            raise
        except ValueError as error:  # e.g. scikit-image's SSIM window larger than the images
            shape = "x".join(map(str, getattr(target, "shape", ())[2:])) or "?"
            first = str(error).split(". ")[0].rstrip(".")
            raise ConfigError(
                f"The metric 'val.metrics.{name}' cannot be computed on the {shape} validation images ({first}); "
                "remove it or change its options."
            ) from None
    return values
