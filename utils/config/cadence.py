"""When validation and checkpoints happen: every N optimizer steps, or at the end of every N-th epoch.

`train.validation_steps` / `train.validation_epochs` (and `checkpointing_steps` / `checkpointing_epochs`)
are alternatives: a config gives at most one of each pair, and with neither the steps key takes its
default. The loop asks `due` at every optimizer step; an epoch count is read from the run's state, which
a checkpoint saves, so a run resumed mid-epoch still fires at the same epoch ends.
"""

from utils.errors import ConfigError

# The steps a cadence falls back to when a config gives neither of its keys.
DEFAULT_STEPS = {"validation": 500, "checkpointing": 1000}


def resolve_cadences(train: dict) -> None:
    """Refuse a steps key given beside its epochs key; fill the steps default when neither is given."""
    for what, default in DEFAULT_STEPS.items():
        steps, epochs = train.get(f"{what}_steps"), train.get(f"{what}_epochs")
        if steps is not None and epochs is not None:
            raise ConfigError(
                f"'train.{what}_steps' ({steps}) and 'train.{what}_epochs' ({epochs}) are both set; "
                f"give only one of them, or set the other to null."
            )
        if epochs is None and steps is None:
            train[f"{what}_steps"] = default


def due(train: dict, what: str, step: int, epoch: int, epoch_ends: bool) -> bool:
    """Whether `what` ('validation' or 'checkpointing') happens after optimizer step `step`, taken in
    epoch `epoch` (counted from 0); `epoch_ends`: that step took the epoch's last batch."""
    steps, epochs = train.get(f"{what}_steps"), train.get(f"{what}_epochs")
    if epochs is not None:
        return epoch_ends and (epoch + 1) % epochs == 0
    return step % steps == 0
