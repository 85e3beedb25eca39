"""Training state a model brings from another trainer's checkpoint (`BaseModel.restored_training_state`),
applied at start, before the first step.

A model that continues a file of another trainer (a PTI-LDM-VAE `checkpoint_epochN.pth`) loads its
weights itself and hands the rest over here, where the engine's own state lives: each optimizer's Adam
moments (by parameter), the step reached (the LR schedules are moved to it, and `max_train_steps`
counts on from it), the epoch to run next, and the best validation score, which `<run>/best/` must then
beat (engine/checkpoints/best_weights.py). A resume from the run's own checkpoint is applied after this
and replaces the optimizers and the step with its own; the best score stays.
"""

import warnings

import torch

from utils.errors import ConfigError


def apply_restored_state(model) -> None:
    """Apply what `model.restored_training_state()` returns, and say in one log line what it was."""
    restored = model.restored_training_state()
    if not restored:
        return
    source = restored["source"]
    parts = list(restored.get("loaded") or [])
    for number, (optimizer, moments) in enumerate(zip(model.optimizers, restored.get("optimizers") or []), 1):
        if moments:
            count = _load_moments(optimizer, moments, source)
            parts.append(f"optimizer {number} of {len(model.optimizers)} ({count} parameters' moments)")
    step = restored.get("global_step")
    if step:
        if step >= model.max_train_steps:
            raise ConfigError(
                f"'train.max_train_steps' is {model.max_train_steps} but '{source}' ends at step {step}, and the "
                f"run continues its step count; set max_train_steps above {step} to train on."
            )
        model.state.global_step = step
        _move_schedules(model.schedulers, step)
        parts.append(f"step {step}")
    if restored.get("epoch") is not None:
        model.state.epoch, model.state.batches_in_epoch = int(restored["epoch"]), 0
        parts.append(f"epoch {model.state.epoch} next")
    parts.append(_restore_best(model, restored.get("best")))
    model.logger.info(f"Restored from '{source}': {', '.join(p for p in parts if p)}.")


def _load_moments(optimizer, moments: dict, source: str) -> int:
    """Load {parameter: Adam state} into `optimizer` (Accelerate's wrapper or a torch optimizer); its own
    hyperparameters (the YAML's learning rate) stay. Returns the number of parameters given state."""
    inner = getattr(optimizer, "optimizer", optimizer)
    if not isinstance(inner, torch.optim.Adam):
        raise ConfigError(
            f"'{source}' holds Adam moments, which {type(inner).__name__} cannot take; set "
            "'train.optim.use_8bit_adam: false' to continue it."
        )
    index = {id(p): i for i, p in enumerate(p for group in inner.param_groups for p in group["params"])}
    full = inner.state_dict()
    full["state"] = {index[id(p)]: dict(state) for p, state in moments.items() if id(p) in index}
    inner.load_state_dict(full)
    return len(full["state"])


def _move_schedules(schedulers: list, step: int) -> None:
    """Each LR schedule (a LambdaLR: its rate is a function of the step) at `step`, as if it had stepped
    that often."""
    for scheduler in schedulers:
        scheduler.last_epoch = step - 1
        with warnings.catch_warnings():  # "step() before optimizer.step()": no update is skipped here
            warnings.simplefilter("ignore")
            scheduler.step()


def _restore_best(model, best: dict | None) -> str:
    if not best:
        return ""
    train = model.opt["train"]
    name, mode, value = best["metric"], best["mode"], float(best["value"])
    if train.get("best_metric") == name and train.get("best_mode", "max") == mode:
        model.restored_best = best
        return f"best {name} {value:.6g} (best/ is written only by a better validation)"
    return f"best {name} {value:.6g} not used ('train.best_metric' is not {name} with best_mode {mode})"
