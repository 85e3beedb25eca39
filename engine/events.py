"""The engine's hook points, in the order a run meets them: one function per moment.

The loop, the checkpointing and `-test` call these and nothing else at these moments, so a feature
that must act at one of them (a best-weights keeper, a console summary, a watchdog) adds one call
line here, marked `# hook: <what>`, instead of threading itself through the loop. Each receives the
model (which holds `accelerator`, `state`, `opt`, `run_dir`, `logger`); the run folder exists and
is locked by this process whenever any of them runs. They are empty until a feature needs them.
"""

from engine.checkpoints.best_weights import update_best_weights


def on_resumed(model, checkpoint: str) -> None:
    """After a checkpoint was loaded and the run folder committed, before the first step."""


def before_training(model) -> None:
    """Once, after set-up and resume, just before the first optimizer step of this process."""


def after_optimizer_step(model, logs: dict) -> None:
    """After each optimizer update (after LR schedules and EMA advanced), with the logged scalars."""


def after_validation(model, metrics: dict) -> None:
    """After each validation pass (in training, at the end, and in `-test`), with its reduced metrics."""
    update_best_weights(model, metrics)  # `train.best_metric`: <run>/best/


def on_checkpoint_saved(model, checkpoint: str) -> None:
    """After `checkpoint-N` was published and rotation ran (every process)."""


def at_end(model, stopped_by: int = 0) -> None:
    """Once, when the run ends normally (after the final save) or by a stop signal (after its
    checkpoint; `stopped_by` is the signal number), before the trackers close."""
