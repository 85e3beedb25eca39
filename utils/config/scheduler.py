"""The `train.scheduler` arguments against the learning rate and the run's length.

diffusers' `get_scheduler` builds the schedule only when the run starts; what would fail there (a
`polynomial` decay towards an end rate at or above the learning rate) is refused with the config, and
what would do nothing (a decay with `lr_power: 0`) too. A warm-up as long as the run is allowed (a short
trial of a long experiment), with one warning, since the rate then never reaches the one set.
"""

import inspect

from utils.errors import ConfigError


def polynomial_lr_end() -> float:
    """The rate diffusers' `polynomial` schedule decays to (its `lr_end`, which `get_scheduler` keeps)."""
    from diffusers.optimization import get_polynomial_decay_schedule_with_warmup

    return float(inspect.signature(get_polynomial_decay_schedule_with_warmup).parameters["lr_end"].default)


def check_schedule(train: dict) -> None:
    """`train.scheduler` against `train.optim.learning_rate`, at config time."""
    scheduler = train["scheduler"]
    if scheduler["type"] != "polynomial":
        return
    if scheduler["lr_power"] == 0:
        raise ConfigError(
            "'train.scheduler.lr_power' is 0, which makes 'train.scheduler.type: polynomial' a constant rate; "
            "give a power above 0, or use type: constant_with_warmup."
        )
    check_polynomial_rate(train["optim"]["learning_rate"], "'train.optim.learning_rate'")
    for name, value in train.items():  # a model's own rates, such as a GAN's train.disc_learning_rate
        if name.endswith("learning_rate") and isinstance(value, (int, float)) and not isinstance(value, bool):
            check_polynomial_rate(value, f"'train.{name}'")


def check_polynomial_rate(lr: float, what: str) -> None:
    """A `polynomial` decay needs a starting rate above the rate it decays to."""
    end = polynomial_lr_end()
    if not lr > end:
        raise ConfigError(
            f"{what} is {lr}, but 'train.scheduler.type: polynomial' decays to {end:g}, which must be below "
            f"it; raise the learning rate above {end:g} or choose another 'train.scheduler.type'."
        )


def warmup_note(scheduler: dict, total_steps: int) -> str | None:
    """A warning when the warm-up lasts the whole run: the set rate is never reached."""
    warmup = scheduler["lr_warmup_steps"]
    if warmup and warmup >= total_steps:
        return (
            f"'train.scheduler.lr_warmup_steps' is {warmup}, not fewer than the run's {total_steps} steps: the "
            "learning rate rises for the whole run and never reaches 'train.optim.learning_rate'."
        )
    return None
