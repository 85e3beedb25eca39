"""One trainer per run folder: an exclusive lock file that names the process holding it.

Two trainers resuming the same folder would write the same checkpoint files at once (one dies in a
safetensors write, and rotation of one deletes what the other is reading). The lock is the file
`run.lock`, created with O_EXCL (atomic on POSIX file systems) and holding `pid host`. A lock whose
process is gone (a SIGKILL, a node that rebooted the job) is stale and taken over; a lock written
on another host is trusted, since its process cannot be checked from here.
"""

import os
import socket

from utils.errors import ConfigError

LOCK_FILE = "run.lock"


def _holder(path: str) -> tuple[int, str] | None:
    try:
        with open(path) as f:
            pid, host = f.read().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None  # vanished, or half-written by a process killed while writing it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def live_holder(folder: str) -> tuple[int, str] | None:
    """(pid, host) of the live process that holds `folder`'s lock, or None when it is free or stale."""
    holder = _holder(os.path.join(folder, LOCK_FILE))
    if holder is None:
        return None
    pid, host = holder
    if host == socket.gethostname() and (pid == os.getpid() or not _alive(pid)):
        return None
    return holder


def refuse_if_locked(folder: str) -> None:
    holder = live_holder(folder)
    if holder is not None:
        pid, host = holder
        raise ConfigError(
            f"The run folder '{folder}' is in use by another trainer (process {pid} on {host}); wait for it "
            f"to end, or stop it, before starting a second one on the same run."
        )


def acquire(folder: str) -> str:
    """Take the lock of `folder` (which must exist), taking over a stale one; returns the lock's path."""
    path = os.path.join(folder, LOCK_FILE)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            refuse_if_locked(folder)
            # Stale: move it aside under a name of our own, so two takers cannot both remove it.
            try:
                os.replace(path, f"{path}.stale-{os.getpid()}")
                os.remove(f"{path}.stale-{os.getpid()}")
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        return path
    refuse_if_locked(folder)
    raise ConfigError(f"Could not take the lock '{path}'; another trainer keeps starting on this run folder.")


def release(path: str | None) -> None:
    if path and _holder(path) == (os.getpid(), socket.gethostname()):
        os.remove(path)
