"""Train/validation splits by group, written to the run folder and reread on resume.

Whole groups are split (`split_by`, a regular expression on each item's name, e.g. `'^(p\\d+)_'` for
patients), so no group sits on both sides; the split is stored in `split_file` so every block, process
and resumed run reads the same one (`load_or_draw_split`).
"""

import json
import os
import re
import tempfile

import numpy as np

from utils.errors import ConfigError, DataError


def compile_split_by(pattern: str | None, where: str) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        return re.compile(str(pattern))
    except re.error as error:
        raise ConfigError(
            f"'split_by' in {where} is {pattern!r}, not a valid regular expression ({error})."
        ) from None


def group_of(name: str, split_by: re.Pattern | None, source: str) -> str:
    """The group of the item `name` (its path below the folder, without suffix): the first group of
    `split_by` (or the whole match), e.g. `p01` for `p01_slice003`; without `split_by`, the item itself."""
    if split_by is None:
        return name
    match = split_by.search(name)
    if match is None:
        raise DataError(
            f"'{source}' has the name '{name}', in which split_by {split_by.pattern!r} finds no group; "
            "fix the pattern or rename the file."
        )
    return match.group(1) if split_by.groups else match.group(0)


def draw_split(names: list[str], groups: list[str], train_split: float, seed: int) -> dict[str, list[str]]:
    """{'train': names, 'val': names} with every group wholly on one side. `train_split` is the fraction
    of *groups* that train; the rest (at least one group) validate. The draw depends only on the sorted
    group names and `seed`. Splitting slices at random (as PTI-LDM-VAE does) puts one patient's slices on
    both sides and makes validation scores optimistic."""
    unique = sorted(set(groups))
    if len(unique) < 2:
        raise DataError(
            f"All {len(names)} items fall in one split group ('{unique[0]}'), so train_split cannot hold "
            "one out; check split_by or add data."
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    n_val = min(len(unique) - 1, max(1, round(len(unique) * (1 - train_split))))
    val_groups = {unique[i] for i in order[:n_val]}
    split = {"train": [], "val": []}
    for name, group in zip(names, groups):
        split["val" if group in val_groups else "train"].append(name)
    return split


def load_or_draw_split(
    names: list[str],
    groups: list[str],
    *,
    train_split: float,
    seed: int,
    split_by: str | None,
    split_file: str | None,
    sources: list[str],
) -> dict[str, list[str]]:
    """The split in `split_file` if it exists (checked against these settings and names), else a new one.

    sources: the folders (or manifest) the names come from, recorded for `check_no_leak`.

    The split is written as JSON atomically, so the train and val blocks, every DDP process and a
    resumed run all read the same split. A split file whose settings or names no longer match the data
    is an error rather than a silent reshuffle, which would leak validation items into training.
    """
    settings = {"train_split": train_split, "seed": seed, "split_by": split_by}
    if split_file and os.path.exists(split_file):
        return _read_split(split_file, settings, names)
    split = draw_split(names, groups, train_split, seed)
    if split_file:
        group_of_name = dict(zip(names, groups))
        record = dict(settings, sources=[os.path.abspath(s) for s in sources])
        record["groups"] = {side: sorted({group_of_name[n] for n in split[side]}) for side in split}
        record.update(split)
        _write_atomically(split_file, record)
    return split


def check_no_leak(split_file: str | None, sources: list[str], where: str) -> None:
    """A val block that reads all of the folder the train block split would validate on training data."""
    if not split_file or not os.path.exists(split_file):
        return
    try:
        with open(split_file) as f:
            recorded = json.load(f).get("sources")
    except (OSError, ValueError, AttributeError):
        return
    if recorded and sorted(recorded) == sorted(os.path.abspath(s) for s in sources):
        raise ConfigError(
            f"{where} reads the same data that the split file '{split_file}' divides into train and val, "
            "but sets no train_split, so it would validate on training items; give it the train block's "
            "train_split, seed and split_by."
        )


def _read_split(split_file: str, settings: dict, names: list[str]) -> dict[str, list[str]]:
    try:
        with open(split_file) as f:
            record = json.load(f)
        stored = {"train": list(record["train"]), "val": list(record["val"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"The split file '{split_file}' is unreadable ({type(error).__name__}: {error}); delete it only "
            "if this run has not trained yet."
        ) from None
    for key, value in settings.items():
        if record.get(key) != value:
            raise ConfigError(
                f"The split file '{split_file}' was written with {key}={record.get(key)!r} but the dataset "
                f"now has {key}={value!r}; the train and val blocks (and a resumed run) must use the same "
                "split settings."
            )
    known, current = set(stored["train"]) | set(stored["val"]), set(names)
    if known != current:
        missing, new = sorted(known - current), sorted(current - known)
        detail = "; ".join(
            f"{label} {len(items)} (e.g. '{items[0]}')"
            for label, items in (("missing", missing), ("new", new))
            if items
        )
        raise DataError(
            f"The split file '{split_file}' does not match the data any more ({detail}); restore the data, "
            "or start a new run so that it gets a new split."
        )
    return stored


def _write_atomically(path: str, record: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # A unique temporary name per writer: DDP processes may all write the same split at once.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".split-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
