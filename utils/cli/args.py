"""The types of the scripts' arguments, each checked where it is parsed (`utils/cli/script.py`).

    parser.add_argument("--steps", type=count(1, MAX_STEPS))
    parser.add_argument("--guidance", type=finite(0.0))
    parser.add_argument("--device", type=device, default=default_device())

Each type refuses a bad value with the reason.
"""

import argparse
import math
import re
from pathlib import Path

from utils.config.schema import SEED_MAX

# Upper bounds of the scripts' counts: far above any real use, and below the sizes at which a typo
# (an extra digit, 2**70) would allocate until the machine runs out of memory instead of failing at once.
MAX_BATCH = 4096
MAX_SAMPLES = 100_000
MAX_IMAGE_SIZE = 4096
MAX_STEPS = 100_000


# argparse's own `type=int` lets `--steps 0`, `--batch-size 0` or `--guidance nan` through, and they fail
# later as `range() arg 3 must not be zero` or as silent garbage; `--device cuda` on a CPU-only machine
# fails inside torch with an AssertionError. The types below refuse such values with the reason.
def count(minimum: int = 0, maximum: int | None = None):
    """A whole number of at least `minimum` (and at most `maximum` when given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {maximum}")
        return value

    parse.__name__ = "whole number"
    parse.minimum, parse.maximum = minimum, maximum  # read by the tests that try wrong values
    return parse


def finite(minimum: float | None = None):
    """A finite number, at least `minimum` when given."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum:g}")
        return value

    parse.__name__ = "number"
    parse.minimum = minimum
    return parse


seed = count(0, SEED_MAX)  # a random seed


def _existing(kind: str, wrong: str):
    def parse(text: str) -> Path:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"'{text}' does not exist")
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            raise argparse.ArgumentTypeError(f"'{text}' is a {wrong}; give a {kind}")
        return path

    parse.__name__ = kind
    parse.__doc__ = f"A {kind} that exists."
    return parse


existing_folder = _existing("folder", "file")
existing_file = _existing("file", "folder")


def run_or_pth(text: str) -> Path:
    """A run's weights folder, or a PTI-LDM-VAE `.pth` / `.pt` file (read with the `--config` network keys)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"'{text}' does not exist")
    if path.is_file() and path.suffix not in (".pth", ".pt"):
        raise argparse.ArgumentTypeError(
            f"'{text}' is a file but not a .pth or .pt; give a run's folder or a PTI-LDM-VAE .pth file"
        )
    return path


run_or_pth.__name__ = "folder"  # wrong values as for a folder: a missing path, a file that is no .pth


def output_folder(text: str) -> Path:
    """Where a script writes: a folder, or a path that does not exist yet (never an existing file)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a folder")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a file; give a folder to write into")
    return path


output_folder.__name__ = "folder"


def named_folder(text: str) -> str:
    """`NAME=FOLDER`, the folder existing (kept as the text)."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"{text!r} should be NAME=FOLDER, e.g. edente=data/edente")
    existing_folder(folder)
    return text


named_folder.__name__ = "NAME=FOLDER"


def regex(text: str) -> str:
    """A regular expression that compiles (kept as the text)."""
    try:
        re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid regular expression ({error})") from None
    return text


regex.__name__ = "regular expression"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device(text: str) -> str:
    """A torch device this machine has: `cpu`, `cuda`, `cuda:1`, `mps`."""
    import torch

    try:
        parsed = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA GPU; use cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text!r}: this machine has {torch.cuda.device_count()} CUDA GPUs (cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1})"
        )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no MPS device; use cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device the scripts run on; use cpu or cuda")
    return text
