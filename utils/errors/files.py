"""Turn file-system and file-format failures into one sentence that names the path.

An `OSError` deep in `save_pretrained`, a `SafetensorError` ("header too small"), a `JSONDecodeError` or
a `UnicodeDecodeError` says what broke but rarely which file, and reaches the user as a traceback.
`as_user_error(error)` rewrites such an error as a `FileError` (a `UserError`, so `trainer.py` prints it
as one line and exits 2); `file_errors(path, ...)` does it around a block that reads or writes `path`.

    with file_errors(staging, writing=True, needed_bytes=estimate):
        save_file(tensors, path)
"""

import errno
import json
import os
import re
import shutil
from contextlib import contextmanager

from utils.errors import UserError


class FileError(UserError, OSError):
    """A file or folder that cannot be read or written, explained in one sentence."""

    def __str__(self):  # OSError would print "[Errno None] ..." around the message.
        return str(self.args[0]) if self.args else ""


def _safetensors_error_types() -> tuple:
    try:
        from safetensors import SafetensorError

        return (SafetensorError,)
    except ImportError:  # older safetensors keep it in the Rust module only
        return ()


def _yaml_error_types() -> tuple:
    import yaml

    return (yaml.YAMLError,)


def human_size(num_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(num_bytes) < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "bytes" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TB"


def free_space(path: str) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def folder_size(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


def describe_os_error(error: OSError, path: str | None = None, needed_bytes: int | None = None) -> str:
    """One sentence for an OSError: the path, what the system said, and what to do about it."""
    where = error.filename if getattr(error, "filename", None) else path
    where_text = f"'{where}'" if where else "a file"
    code = error.errno
    if code == errno.ENOSPC or code == errno.EDQUOT or code == errno.EFBIG:
        free = free_space(where or path or ".")
        need = f" about {human_size(needed_bytes)} is needed" if needed_bytes else ""
        have = f"{human_size(free)} is free" if free is not None else ""
        amounts = "; ".join(s.strip() for s in (need, have) if s)
        return (
            f"The disk is full while writing {where_text}"
            + (f" ({amounts})" if amounts else "")
            + "; free some space or set 'path.root' to a larger disk, then resume with "
            "'path.resume_from_checkpoint: latest'."
        )
    if code in (errno.EACCES, errno.EPERM):
        return f"Permission denied for {where_text}; choose a 'path.root' you can write to, or fix its permissions."
    if code == errno.EROFS:
        return f"{where_text} is on a read-only file system; set 'path.root' to a writable folder."
    if code == errno.ENOTDIR:
        return f"A part of the path {where_text} is a file, not a folder; 'path.root' and the paths in the config must be folders."
    if code == errno.EEXIST and where and os.path.exists(where) and not os.path.isdir(where):
        return f"{where_text} is a file where a folder is needed; move it away or choose another 'path.root'."
    if code == errno.EISDIR:
        return f"{where_text} is a folder where a file was expected."
    if code == errno.ENOENT:
        if where and os.path.islink(where):
            return f"{where_text} is a symbolic link to '{os.readlink(where)}', which does not exist."
        return f"{where_text} does not exist, or cannot be created there; check 'path.root' and the paths in the config."
    reason = error.strerror or str(error)
    return f"Cannot use {where_text}: {reason}."


def as_user_error(
    error: BaseException, path: str | None = None, needed_bytes: int | None = None
) -> UserError | None:
    """The one-sentence UserError for a file-level failure, or None when `error` is not one."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, OSError):
        return FileError(describe_os_error(error, path, needed_bytes))
    if _DISK_FULL.search(str(error)):
        # torch.save and safetensors report a full disk as RuntimeError / SafetensorError text.
        return FileError(
            describe_os_error(OSError(errno.ENOSPC, "No space left on device"), path, needed_bytes)
        )
    where = f"'{path}'" if path else "a file"
    if isinstance(error, UnicodeDecodeError):
        return FileError(
            f"{where} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at position {error.start}); "
            "save it as UTF-8."
        )
    if isinstance(error, json.JSONDecodeError):
        return FileError(
            f"{where} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); it may be "
            "truncated or corrupt."
        )
    if isinstance(error, _safetensors_error_types()):
        return FileError(
            f"{where} is not a readable safetensors file ({_first_line(error)}); it may be truncated or corrupt."
        )
    if isinstance(error, _yaml_error_types()):
        return FileError(f"{where} is not valid YAML ({_first_line(error)}).")
    return None


def read_json(path: str):
    """The JSON in `path`; a missing, unreadable, truncated or non-UTF-8 file is a FileError naming it."""
    with file_errors(path), open(path, encoding="utf-8") as f:
        return json.load(f)


@contextmanager
def file_errors(path: str, needed_bytes=None, cleanup: str | None = None):
    """Inside, a file-level failure about `path` becomes a FileError naming it.

    needed_bytes: an int, or a function returning one (only called on failure), for a full disk.
    cleanup: a partly written folder to remove on failure, so that a full disk gets its space back and
    nothing half-written is left under a name that could be picked up later.
    """
    try:
        yield
    except Exception as error:
        if callable(needed_bytes):
            try:
                needed_bytes = needed_bytes()
            except Exception:
                needed_bytes = None
        translated = as_user_error(error, path, needed_bytes)
        if translated is None or translated is error:
            raise
        if cleanup and os.path.isdir(cleanup):
            shutil.rmtree(cleanup, ignore_errors=True)
        raise translated from error


_DISK_FULL = re.compile(
    r"No space left on device|os error 28|file write failed|failed writing file", re.IGNORECASE
)
_WORKER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")


def one_sentence(error: BaseException) -> str:
    """The message a user sees: for an error re-raised from a DataLoader worker, the worker's own sentence."""
    text = str(error)
    if _WORKER.match(text):
        # torch re-raises a worker's exception with the worker's whole traceback as its message; its
        # last line is "module.ErrorType: <the sentence>". A UserError's sentence stands alone; any
        # other keeps its type ("ValueError: ...").
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        kind, sep, message = last.partition(": ")
        if sep and isinstance(error, UserError):
            text = message
        else:
            text = f"{kind.rsplit('.', 1)[-1]}: {message}" if sep else last
    return text.strip()


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0].strip().rstrip(".") if lines else type(error).__name__


def describe_failure(error: BaseException) -> str:
    """The one line `trainer.py` prints for any error that ends a run (no traceback without --debug)."""
    if _WORKER.match(str(error)):
        return _one_line(one_sentence(error))
    translated = as_user_error(error)
    if translated is not None and translated is not error:
        return _one_line(one_sentence(translated))
    if isinstance(error, UserError):
        return _one_line(one_sentence(error))
    first = _one_line(one_sentence(error))
    return f"{type(error).__name__}: {first} (unexpected; rerun with --debug for the traceback)."


def _one_line(text: str) -> str:
    """A message that a library made several lines long (torch's, Accelerate's) cut to its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text
