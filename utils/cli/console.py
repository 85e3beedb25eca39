"""What a run prints: quiet libraries, and a training progress that never garbles the log.

- `quiet_libraries()`: the trainer and the inference scripts share it, so neither prints the
  bitsandbytes kernel warning, Accelerate's per-file checkpoint lines or transformers' "Loading
  weights" bars. Call it before importing diffusers or transformers (bitsandbytes warns on import).
- `TrainingProgress`: on a terminal, a tqdm bar with log lines routed through it (tqdm's logging
  redirection), so "Saved .../checkpoint-1000" gets a line of its own instead of being glued to the
  bar's `samples_s=20.3]`; when the output goes to a file (a cluster job's log), no bar at all (a bar
  there is thousands of carriage-return updates on one line) but a plain progress line every N steps.
"""

import logging
import os
import sys
import time
from datetime import timedelta

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

NOISY_LOGGERS = ("accelerate", "transformers", "huggingface_hub", "diffusers", "tensorboard")
PREPARATION_LOG_SECONDS = 30  # a preparation bar written to a file updates this rarely, not 10 times a second
PLAIN_LINES_PER_RUN = 20  # plain progress lines in a file log: enough to follow, few enough to read


def quiet_libraries() -> None:
    """Silence what the libraries print that says nothing to a user of this project."""
    logging.basicConfig(format="%(message)s", level=logging.INFO)
    # Accelerate narrates every file of a checkpoint at INFO; our own lines say what matters.
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # bitsandbytes warns on import about an optional CPU kernel package that nothing here needs.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one "Loading weights" bar per from_pretrained is noise


def is_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream  # where tqdm and the log handler write
    return bool(getattr(stream, "isatty", lambda: False)())


def preparation_bar(iterable, total: int, description: str):
    """A bar for one-off preparation before training (ray-tracing a PSF cache, encoding latents).

    The description also goes to the "trainer" log (so train.log says what the wait was); the bar shows
    on the first process of each machine only, and in a file rarely instead of ten times a second.
    """
    local_main = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if local_main:
        logging.getLogger("trainer").info(f"Preparing: {description}")
    return tqdm(
        iterable,
        total=total,
        desc=description.split(" (")[0],
        disable=not local_main,
        mininterval=0.1 if is_terminal() else PREPARATION_LOG_SECONDS,
        dynamic_ncols=True,
    )


def plain_line_interval(total_steps: int) -> int:
    return max(1, round(total_steps / PLAIN_LINES_PER_RUN))


class TrainingProgress:
    """Progress of the optimizer steps: a bar on a terminal, plain lines every `every` steps otherwise.

    total, initial: the step count to reach and the step the run starts (or resumes) at.
    enabled: False on every process but the local main one (one voice per machine).
    """

    def __init__(
        self, total: int, initial: int, enabled: bool, logger, every: int | None = None, stream=None
    ):
        self.total, self.logger, self.enabled = total, logger, enabled
        self.interactive = is_terminal(stream)
        self.every = every or plain_line_interval(total)
        self._started, self._start_step = time.perf_counter(), initial
        self._bar = None
        self._redirect = None
        if enabled and self.interactive:
            self._bar = tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True, file=stream)
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()

    def update(self, step: int, loss: float, lr: float, samples_per_second: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.2e}", samples_s=f"{samples_per_second:.1f}")
        elif step % self.every == 0 or step == self.total:
            self.logger.info(self.plain_line(step, loss, lr, samples_per_second))

    def plain_line(self, step: int, loss: float, lr: float, samples_per_second: float) -> str:
        elapsed = time.perf_counter() - self._started
        done = step - self._start_step
        eta = elapsed / done * (self.total - step) if done > 0 else 0.0
        return (
            f"step {step}/{self.total} ({100.0 * step / max(self.total, 1):.0f}%)  loss {loss:.4g}  lr {lr:.2e}  "
            f"{samples_per_second:.1f} samples/s  elapsed {_clock(elapsed)}  eta {_clock(eta)}"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the bar (so that what follows starts on a line of its own); safe to call twice."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
