"""Errors that reach the user as one sentence.

`trainer.py` prints a `UserError` as a single line (no traceback unless `--debug`) and exits non-zero.
Everything a user can get wrong (a config key, a plugin name, a data file, a lens file) raises a
subclass, so the message itself must name the culprit and say what would be right.
"""

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input, explained in one sentence."""


class ConfigError(UserError, KeyError, ValueError):
    """A bad or missing key or value in the YAML configuration.

    It is a KeyError too so that `hasattr` and `getattr(opt, key, default)` treat a missing key as
    absent (they catch AttributeError, which `Opt.__getattr__` raises from this).
    """

    def __str__(self):  # KeyError would print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


class PluginError(UserError, LookupError):
    """A model, arch or dataset plugin that cannot be found or loaded."""


class NumericalError(UserError, FloatingPointError):
    """A loss that is not finite, under `train.nan_policy: raise`."""


class DataError(UserError, ValueError):
    """A data file or folder that cannot be used as it is."""


def nearest(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
    """The candidates closest to `name`, best first (case-insensitive)."""
    candidates = list(candidates)
    by_lower = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=cutoff)
    return [by_lower[m] for m in matches]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the nearest candidate, or '' when nothing is close."""
    close = nearest(name, candidates, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
