"""Stop a run that keeps skipping steps under `train.nan_policy: skip`.

Skipping a step with a non-finite loss keeps the weights intact, but a run whose loss has diverged
skips nearly every step and would still end with exit 0 and a "final" model that learnt nothing. After
`train.max_consecutive_skipped_steps` skipped steps in a row (default 20) the run stops with one
sentence; the last checkpoint holds the weights from before the divergence.
"""

import math

from utils.errors import NumericalError

DEFAULT_LIMIT = 20


def check_skipped_steps(model, losses: dict) -> None:
    """Call after each step's loss check with its losses; counts the non-finite ones in a row."""
    value = losses["all"]
    value = float(value.detach()) if hasattr(value, "detach") else float(value)
    model._skips_in_a_row = 0 if math.isfinite(value) else getattr(model, "_skips_in_a_row", 0) + 1
    limit = model.opt["train"].get("max_consecutive_skipped_steps", DEFAULT_LIMIT)
    if limit and model._skips_in_a_row >= limit:
        raise NumericalError(
            f"Stopped at step {model.state.global_step + 1}: the loss was not finite for {model._skips_in_a_row} "
            f"steps in a row (train.max_consecutive_skipped_steps: {limit}), so training has diverged; lower the "
            "learning rate, and resume from the last checkpoint with 'path.resume_from_checkpoint'."
        )
