"""The files a config names, checked before anything is built: `path.root` a writable folder,
`path.logging_dir` inside the run folder, `path.resume_from_path` an existing folder, `path.pretrained` a
complete folder, and weights named anywhere (a VAE's `pretrained`, a `.safetensors` or `.pth` file)
readable, with the JSON files beside them, each failure one ConfigError sentence naming the key."""

import os
from collections.abc import Mapping

from engine.checkpoints.store import COMPLETE_MARKER
from utils.config.secrets import walk as _walk
from utils.errors import ConfigError


def check_files(data: Mapping) -> None:
    _check_paths(data.get("path") or {})
    _check_weight_files(data)


def _check_paths(path: Mapping) -> None:
    root = path.get("root")
    if isinstance(root, str) and root:
        _check_writable_root(root)
    resume_path = path.get("resume_from_path")
    if resume_path and not os.path.isdir(resume_path):
        what = "a file" if os.path.exists(resume_path) else "missing"
        raise ConfigError(
            f"'path.resume_from_path' is '{resume_path}', which is {what}; it must be the run folder that "
            "holds the checkpoint-N folders."
        )
    logging_dir = path.get("logging_dir")
    if isinstance(logging_dir, str) and (os.path.isabs(logging_dir) or ".." in logging_dir.split("/")):
        raise ConfigError(
            f"'path.logging_dir' is '{logging_dir}'; it must be a folder inside the run folder (e.g. logs), so "
            "that nothing is written outside 'path.root'."
        )
    pretrained = path.get("pretrained")
    if pretrained and os.path.isdir(pretrained):
        name = os.path.basename(os.path.normpath(pretrained))
        if name.endswith((".tmp", ".trash")) or (
            name.startswith("checkpoint-") and not os.path.isfile(os.path.join(pretrained, COMPLETE_MARKER))
        ):
            raise ConfigError(
                f"'path.pretrained' is '{pretrained}', a checkpoint whose write was interrupted (no "
                f"'{COMPLETE_MARKER}' file); use a complete checkpoint-N folder or a run's final/ folder."
            )
        _check_safetensors_under(pretrained)


def _check_weight_files(data: Mapping) -> None:
    """Weights named anywhere in the config (a VAE's `pretrained` folder, a `.safetensors` or `.pth` file)
    are checked at start, so a truncated file is named before hours of set-up, not deep in a loader."""
    for where, value in _walk(data):
        if where == "path.pretrained" or not isinstance(value, str) or not value:
            continue
        last = where.rsplit(".", 1)[-1]
        if "pretrained" in last and os.path.isdir(value):
            _check_safetensors_under(value, where)
        elif value.endswith(".safetensors") and os.path.isfile(value):
            _check_safetensors_file(value, where)
        elif value.endswith((".pth", ".pt", ".bin", ".ckpt")) and os.path.isfile(value):
            if os.path.getsize(value) == 0:
                raise ConfigError(f"'{where}' is '{value}', which is empty (0 bytes); it holds no weights.")


def _check_writable_root(root: str) -> None:
    probe = os.path.abspath(root)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return
        probe = parent
    if not os.path.isdir(probe):
        raise ConfigError(
            f"'path.root' is '{root}', but '{probe}' is a file, not a folder; choose a folder for the runs."
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"'path.root' is '{root}', but '{probe}' cannot be written (read-only or no permission); choose a "
            "folder you can write to."
        )


def _check_safetensors_under(folder: str, where: str = "path.pretrained") -> None:
    """Open the header of every safetensors file (it fails on a truncated or garbage file) and parse every
    JSON file beside them (`config.json`, an LDM's `ldm.json`), naming the key and the file that fails."""
    for dirpath, _, files in os.walk(folder):
        if dirpath.count(os.sep) - folder.rstrip(os.sep).count(os.sep) > 1:
            continue
        for name in sorted(f for f in files if f.endswith(".safetensors")):
            _check_safetensors_file(os.path.join(dirpath, name), where)
        for name in sorted(f for f in files if f.endswith(".json")):
            _check_json_file(os.path.join(dirpath, name), where)


def _check_json_file(path: str, where: str) -> None:
    from utils.errors.files import FileError, read_json

    try:
        read_json(path)
    except FileError as error:
        raise ConfigError(f"'{where}': {error}") from None


def _check_safetensors_file(path: str, where: str) -> None:
    from safetensors import safe_open

    from utils.errors.files import as_user_error

    try:
        with safe_open(path, "pt") as handle:
            handle.keys()
    except Exception as error:
        translated = as_user_error(error, path)
        if translated is None:
            raise
        raise ConfigError(f"'{where}': {translated}") from None
