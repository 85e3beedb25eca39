"""Where a command may write: never over what it reads, never into weights or another run's files.

Every command that writes (the trainer's run folder, a `-test` folder, each script's `--out`) resolves
its output location first and calls `check_output` before it writes anything:

    check_output("--out", args.out, {"--input": args.input, "--run": args.run})

An output that is, contains or lies inside one of the inputs would overwrite or mix with them (the next
run of a dataset that scans its folder would read the outputs as data); one inside or around a weights
folder or a run folder would overwrite networks, `config.yml` or `train.log`. Each is refused in one
sentence naming both paths. Symbolic links are followed, so a link cannot smuggle an input in.
"""

import os
from collections.abc import Iterable, Mapping

from utils.errors import UserError

# Files that mark a folder as someone's results: a run folder has its log, a weights folder the
# networks `save_pretrained` wrote (directly, or one folder per network in a run's final/).
RUN_MARKERS = ("train.log",)
WEIGHT_MARKERS = ("model.safetensors", "diffusion_pytorch_model.safetensors")
# What the trainer writes into a run folder (engine/run, engine/checkpoints): a results folder of a
# script may sit beside them inside the run (`<run>/latent_maps`), never in one of them.
RUN_ENTRIES = (
    "final",
    "best",
    "images",
    "logs",
    "test",
    "abandoned",
    "comet_ml",
    "train.log",
    "config.yml",
    "training_summary.png",
    "test_metrics.json",
)
RUN_ENTRY_PREFIXES = ("checkpoint-", "best.", "final.", "split_", "latent_cache", "events.out.tfevents")
_SCAN_DEPTH = 3  # how deep an existing output folder is searched for runs and weights
_SCAN_ENTRIES = 20_000  # a folder this large is searched no further (a data set, not a results folder)


class OutputError(UserError, ValueError):
    """An output location that would overwrite an input, weights or a run's files."""


def check_output(
    name: str,
    output: str | os.PathLike,
    inputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]],
    *,
    own_results: bool = False,
    inside_a_run: bool = False,
    beside_a_run: bool = True,
    advice: str = "",
) -> None:
    """Refuse `output` (given as `name`, e.g. `--out` or `the run folder`) that is, contains or lies
    inside one of `inputs` (their names to paths; missing paths are skipped), or that is, contains or lies
    inside a run folder or a weights folder.

    own_results: the output is a run folder, so the run and weights files in and below it are its own
    (a resumed run); it is still refused inside another run or weights folder. inside_a_run: the output
    is a new folder that a run keeps for results about it (`<run>/test/<stamp>`). beside_a_run: a new
    results folder inside a run folder, beside what the trainer writes there (`<run>/latent_maps`),
    is allowed (never a run's own entry such as `final/` or `checkpoint-N/`)."""
    suggest = not advice
    advice = advice or "choose a new folder outside it"
    out = _real(output)
    pairs = inputs.items() if isinstance(inputs, Mapping) else inputs
    for input_name, path in pairs:
        if path is None or str(path) == "" or not os.path.exists(path):
            continue
        source = _real(path)
        relation = _relation(out, source)
        if relation is not None:
            # A new sibling of whichever folder holds the other: of the output when it contains the input.
            hint = _suggestion(out if relation == "contains" else source) if suggest else ""
            raise OutputError(
                f"{name} '{output}' {relation} {input_name} '{path}', so writing there would overwrite or mix "
                f"with what it reads; {advice}{hint}."
            )
    if inside_a_run:
        return
    for folder in _self_and_ancestors(out):
        if own_results and folder == out:
            continue
        kind = results_kind(folder)
        if kind == "a run folder" and folder != out and beside_a_run and not _run_entry(out, folder):
            continue
        if kind is not None:
            where = "is" if folder == out else "is inside"
            raise OutputError(
                f"{name} '{output}' {where} {kind} '{folder}', whose files it could overwrite; {advice}"
                f"{_suggestion(folder) if suggest else ''}."
            )
    found = None if own_results else _results_below(out)
    if found is not None:
        folder, kind = found
        raise OutputError(
            f"{name} '{output}' contains {kind} '{folder}', whose files it could overwrite; {advice}."
        )


def results_kind(folder: str) -> str | None:
    """'a run folder' or 'a weights folder' when `folder` holds one's marker files, else None."""
    if not os.path.isdir(folder):
        return None
    if any(os.path.isfile(os.path.join(folder, marker)) for marker in RUN_MARKERS):
        return "a run folder"
    if any(os.path.isfile(os.path.join(folder, marker)) for marker in WEIGHT_MARKERS):
        return "a weights folder"
    return None


def _run_entry(path: str, run: str) -> bool:
    """Whether `path` lies in what the trainer writes into the run folder `run`."""
    first = os.path.relpath(path, run).split(os.sep)[0]
    return first in RUN_ENTRIES or first.startswith(RUN_ENTRY_PREFIXES)


def _relation(out: str, source: str) -> str | None:
    if out == source:
        return "is"
    if _inside(out, source):
        return "is inside"
    if _inside(source, out):
        return "contains"
    return None


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder and path != folder


def _real(path) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _self_and_ancestors(path: str):
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _results_below(out: str) -> tuple[str, str] | None:
    """The first run or weights folder under an existing `out`, searched a few levels deep."""
    if not os.path.isdir(out):
        return None
    seen = 0
    for dirpath, dirnames, filenames in os.walk(out):
        seen += len(dirnames) + len(filenames)
        kind = results_kind(dirpath) if dirpath != out else None
        if kind is not None:
            return dirpath, kind
        if seen > _SCAN_ENTRIES or dirpath.count(os.sep) - out.count(os.sep) >= _SCAN_DEPTH:
            dirnames[:] = []
    return None


def _suggestion(folder: str) -> str:
    """`, e.g. '<folder>-out'`: a new sibling of the folder that must not be written into."""
    beside = f"{folder}-out"
    if not os.path.isdir(folder) or os.path.exists(beside):
        return ""
    shown = os.path.relpath(beside)
    return f", e.g. '{beside if shown.startswith('..') else shown}'"


OWNER_FILE = ".written-by"  # in a script's output folder: which script writes there


def claim_output_folder(name: str, folder: str | os.PathLike, owner: str) -> bool:
    """Make `folder` the output folder of the script `owner`, or refuse it: a folder that holds files
    no earlier run of `owner` wrote (a data folder, another script's results) could lose them to a file
    of the same name. Returns whether the folder was created here (see `release_output_folder`)."""
    folder = os.fspath(folder)
    marker = os.path.join(folder, OWNER_FILE)
    created = not os.path.exists(folder)
    if not created:
        entries = sorted(e for e in os.listdir(folder) if e != OWNER_FILE)
        writer = _read_owner(marker)
        if entries and writer != owner:
            by = f"written by {writer}" if writer else f"that no earlier run of {owner} wrote"
            raise OutputError(
                f"{name} '{folder}' holds files {by} (e.g. '{entries[0]}'), which a file of the same name "
                f"would replace; choose a new or empty folder."
            )
    os.makedirs(folder, exist_ok=True)
    with open(marker, "w") as f:
        f.write(owner + "\n")
    return created


def release_output_folder(folder: str | os.PathLike) -> None:
    """Remove an output folder that a failed script created and left empty (but for its marker)."""
    folder = os.fspath(folder)
    if os.path.isdir(folder) and os.listdir(folder) == [OWNER_FILE]:
        os.remove(os.path.join(folder, OWNER_FILE))
        os.rmdir(folder)


def _read_owner(marker: str) -> str | None:
    try:
        with open(marker) as f:
            return f.read().strip() or None
    except OSError:
        return None
