"""Stop a run that keeps skipping steps under `train.nan_policy: skip`.

Skipping a step with a non-finite loss keeps the weights intact, but a run whose loss has diverged
skips nearly every step and would still end with exit 0 and a "final" model that learnt nothing. After
`train.max_consecutive_skipped_steps` skipped steps in a row (default 20) the run stops with one
sentence; the last checkpoint holds the weights from before the divergence.
"""

import math

from utils.errors import NumericalError

DEFAULT_LIMIT = 20


class SkippedSteps:
    """The non-finite losses in a row, counted by the loop for one run of this process."""

    def __init__(self, limit: int | None = DEFAULT_LIMIT):
        self.limit = DEFAULT_LIMIT if limit is None else limit
        self.in_a_row = 0

    def check(self, loss, step: int) -> None:
        """Call after each micro-batch's loss check with its total loss and the step it trains."""
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        self.in_a_row = 0 if math.isfinite(value) else self.in_a_row + 1
        if self.limit and self.in_a_row >= self.limit:
            raise NumericalError(
                f"Stopped at step {step}: the loss was not finite for {self.in_a_row} steps in a row "
                f"(train.max_consecutive_skipped_steps: {self.limit}), so training has diverged; lower the "
                "learning rate, and resume from the last checkpoint with 'path.resume_from_checkpoint'."
            )
