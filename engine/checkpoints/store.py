"""Checkpoint folders that a crash can never leave half-written under a name resume would pick.

A checkpoint is written into `checkpoint-N.tmp`, marked complete, and only then renamed to
`checkpoint-N` (a rename is atomic on POSIX file systems). Rotation renames a folder out of the way
before deleting it, so a kill during the deletion cannot leave a half-deleted `checkpoint-N` either.
"""

import os
import re
import shutil

from utils.errors import ConfigError
from utils.errors.files import folder_size

COMPLETE_MARKER = "checkpoint_complete"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(folder: str) -> list[tuple[int, str]]:
    """Complete checkpoints in `folder` as (step, path), oldest first."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _NAME.match(name)
        path = os.path.join(folder, name)
        if match and os.path.isfile(os.path.join(path, COMPLETE_MARKER)):
            found.append((int(match[1]), path))
    return sorted(found)


def resolve_checkpoint(setting: str, search_folder: str) -> str | None:
    """`latest`, `checkpoint-N` or a folder -> the checkpoint folder to load (None: `latest` found nothing)."""
    if setting == "latest":
        found = list_checkpoints(search_folder)
        return found[-1][1] if found else None
    path = setting if os.path.isdir(setting) else os.path.join(search_folder, setting)
    if not os.path.isdir(path):
        have = [os.path.basename(p) for _, p in list_checkpoints(search_folder)]
        raise ConfigError(
            f"'path.resume_from_checkpoint' is '{setting}', which is neither a folder nor a checkpoint in "
            f"'{search_folder}' (checkpoints there: {', '.join(have) or 'none'}; or use 'latest')."
        )
    if not os.path.isfile(os.path.join(path, COMPLETE_MARKER)):
        raise ConfigError(
            f"The checkpoint '{path}' is incomplete (no '{COMPLETE_MARKER}' file: its write was interrupted); "
            "choose an earlier one or 'latest'."
        )
    return path


def staging_path(folder: str, step: int) -> str:
    return os.path.join(folder, f"checkpoint-{step}.tmp")


def publish(staging: str) -> str:
    """Mark a fully written staging folder complete and give it its final name."""
    with open(os.path.join(staging, COMPLETE_MARKER), "w") as f:
        f.write("ok\n")
    final = staging[: -len(".tmp")]
    if os.path.exists(final):  # an older run's checkpoint of the same step, e.g. after a resume
        _remove(final)
    os.replace(staging, final)
    return final


def rotate(folder: str, keep: int | None, keep_path: str | None = None) -> list[str]:
    """Remove the oldest complete checkpoints so that at most `keep` remain; also drop stale `.tmp` folders.

    `keep_path`, the checkpoint just written, is never removed, even when older-looking steps sort
    after it (a rotation that deleted it would lose the only copy of the newest weights)."""
    removed = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.startswith("checkpoint-") and (name.endswith(".tmp") or name.endswith(".trash")):
            _remove(os.path.join(folder, name))
    if keep is None:
        return removed
    found = list_checkpoints(folder)
    for _, path in found[: max(0, len(found) - keep)]:
        if keep_path and os.path.abspath(path) == os.path.abspath(keep_path):
            continue
        _remove(path)
        removed.append(path)
    return removed


def _remove(path: str) -> None:
    trash = path + ".trash" if not path.endswith(".trash") else path
    if trash != path:
        os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def checkpoint_bytes(run_dir: str, archs=()) -> int:
    """About how much a checkpoint of this run takes: the newest complete one, else weights + AdamW moments."""
    found = list_checkpoints(run_dir)
    if found:
        return folder_size(found[-1][1])
    params = sum(p.numel() * p.element_size() for arch in archs for p in arch.parameters())
    return 4 * params  # weights in the arch folder and the optimizer's model copy, and two moments
