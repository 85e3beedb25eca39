"""`train.best_metric` against the validation metrics a model declares, before the run folder is written.

A model says which names its validation reports (`BaseModel.validation_metric_names`, from its config:
`val.metrics`, its heads, its losses); a name it does not report is refused at start with the nearest
one. A model that cannot say (None, e.g. a seed-style plugin) has its name checked at the first
validation instead (engine/checkpoints/best_weights.py).
"""

from utils.errors import ConfigError, did_you_mean


def declared_names(model) -> set[str] | None:
    names = model.validation_metric_names()
    return None if names is None else set(names)


def check_best_metric(model) -> None:
    """Refuse a `train.best_metric` that the model declares it never reports."""
    name = model.opt["train"].get("best_metric")
    if not name:
        return
    declared = declared_names(model)
    if declared is None:
        model.logger.info(
            f"{type(model).__name__} does not declare its validation metrics, so 'train.best_metric' "
            f"('{name}') is checked at the first validation."
        )
        return
    if name not in declared:
        raise ConfigError(
            f"'train.best_metric' is '{name}'{did_you_mean(name, declared)}, which {type(model).__name__} does "
            f"not report at validation with this config; it reports: {', '.join(sorted(declared))}."
        )


def compare_with_declared(model, metrics: dict[str, float]) -> None:
    """At the run's first validation: one warning when the model reports a name it did not declare (it
    cannot be a `train.best_metric`, refused at start) or declares one it does not report."""
    declared = declared_names(model)
    if declared is None or not metrics or getattr(model, "_declared_names_compared", False):
        return
    model._declared_names_compared = True
    extra = sorted(set(metrics) - declared)
    missing = sorted(declared - set(metrics) - model.run_log.non_finite)
    if (extra or missing) and model.accelerator.is_main_process:
        model.logger.warning(
            f"{type(model).__name__}.validation_metric_names() differs from what its validation reports: "
            f"undeclared {extra or 'none'}, not reported {missing or 'none'}."
        )
