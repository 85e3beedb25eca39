"""Checks of values that the per-key schema cannot express, run at start before anything is built.

- every number finite (`.nan` / `.inf` in YAML are floats that pass a `minimum` check);
- `seed` within what `numpy` and `torch` accept (0 .. 2**32-1);
- counts (`num_*`, `*_steps`, `datasets.*.size`) whole numbers, and sizes (`*_size`) at least 1;
- each arch block (`network`, a GAN's `network_d`, ...) against its config class's `__init__` signature:
  types from the annotations or defaults, and channel/layer counts at least 1, before any network is built;
- the paths: `path.root` a writable folder, `path.logging_dir` inside the run folder,
  `path.resume_from_path` an existing folder, `path.pretrained` a complete folder; weights named
  anywhere (a VAE's `pretrained`, a `.safetensors` or `.pth` file) readable.

Each failure is one ConfigError sentence naming the key. Secrets are checked by `utils/secret_values.py`,
first, so that no message here can echo one.
"""

import inspect
import math
import os
import re
import types
import typing
from collections.abc import Mapping

from utils.errors import ConfigError, PluginError
from utils.secret_values import walk as _walk


def check_values(data: Mapping) -> None:
    """Every check of this module, on a config the schema has validated."""
    _check_finite(data)
    _check_seed(data.get("seed"))
    _check_counts(data)
    _check_arch_blocks(data)
    _check_paths(data.get("path") or {})
    _check_weight_files(data)


def _check_finite(data: Mapping) -> None:
    for where, value in _walk(data):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"'{where}' is {value}; every number in the config must be finite.")


def _check_seed(seed) -> None:
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= 2**32 - 1:
        raise ConfigError(f"'seed' is {seed}; it must be between 0 and 2**32-1 = {2**32 - 1}.")


def _is_count_key(name: str) -> bool:
    return name.startswith("num_") or name.endswith("_steps")


def _check_counts(data: Mapping) -> None:
    for where, value in _walk(data):
        name = where.rsplit(".", 1)[-1]
        if "[" in name or value is None or isinstance(value, Mapping):
            continue
        if _is_count_key(name) and not isinstance(value, list):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"'{where}' is {value!r}; it must be a whole number >= 0.")
        if name.endswith("_size") and not _is_positive_ints(value):
            # image_size, patch_size, batch_size, sample_size: a 0 or negative size builds nothing. Floats
            # (a lens's pixel_size in metres) and text are left to their readers.
            raise ConfigError(f"'{where}' is {value!r}; a size must be at least 1.")
    for name, block in (data.get("datasets") or {}).items():
        size = block.get("size") if isinstance(block, Mapping) else None
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise ConfigError(
                f"'datasets.{name}.size' is {size!r}; it must be a whole number of samples >= 1."
            )


def _is_positive_ints(value) -> bool:
    """False only for an int (or a list holding an int) below 1."""
    values = value if isinstance(value, list) else [value]
    return not any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values)


# ----------------------------------------------------------------------------- arch blocks

_POSITIVE = re.compile(r"(channels|layers|blocks|heads|groups|depth|width|features|_dim|^dim|num_)")


def _arch_blocks(data: Mapping):
    """(where, block) for every block that names an arch: `network`, `network_d`, `vae.network`, ..."""
    for where, value in _walk(data):
        last = where.rsplit(".", 1)[-1]
        if isinstance(value, Mapping) and last.startswith("network") and isinstance(value.get("type"), str):
            yield where, value


def _signature(config_cls) -> dict[str, inspect.Parameter]:
    from transformers import PretrainedConfig

    params: dict[str, inspect.Parameter] = {}
    for cls in config_cls.__mro__:
        if cls is PretrainedConfig or cls is object:
            break
        if "__init__" in vars(cls):
            for p in inspect.signature(cls.__init__).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    params.setdefault(p.name, p)
    return params


def _expected_types(param: inspect.Parameter) -> tuple[set[type], bool] | None:
    """(allowed base types, None allowed) from the annotation, else from the default; None: unknown."""
    annotation = param.annotation
    if annotation is not inspect.Parameter.empty and not isinstance(annotation, str):
        args = (
            typing.get_args(annotation)
            if typing.get_origin(annotation) in (typing.Union, types.UnionType)
            else (annotation,)
        )
        allowed, nullable = set(), False
        for arg in args:
            if arg is type(None):
                nullable = True
                continue
            origin = typing.get_origin(arg) or arg
            if origin in (int, float, bool, str, list, tuple, dict):
                allowed.add(origin)
            else:
                return None  # a type we do not model: leave it to the config class
        return allowed, nullable or param.default is None
    default = param.default
    if default is inspect.Parameter.empty or default is None:
        return None
    if type(default) in (int, float, bool, str, list, tuple, dict):
        return {type(default)}, False
    return None


def _fits(value, allowed: set[type]) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return bool(allowed & {int, float})
    if isinstance(value, float):
        return float in allowed
    if isinstance(value, (list, tuple)):
        return bool(allowed & {list, tuple})
    return type(value) in allowed


def _check_arch_blocks(data: Mapping) -> None:
    from models.archs import find_arch

    for where, block in _arch_blocks(data):
        try:
            config_cls, _ = find_arch(block["type"])
        except PluginError:
            continue  # the model reports an unknown or broken arch when it builds the network
        params = _signature(config_cls)
        for key, value in block.items():
            param = params.get(key)
            if key == "type" or param is None:
                continue
            expected = _expected_types(param)
            if expected is None:
                continue
            allowed, nullable = expected
            if value is None:
                if not nullable:
                    raise ConfigError(f"'{where}.{key}' is null; {config_cls.__name__} needs a value here.")
                continue
            if not _fits(value, allowed):
                names = " or ".join(sorted("list" if t is tuple else t.__name__ for t in allowed))
                raise ConfigError(
                    f"'{where}.{key}' must be {names} for {config_cls.__name__}, got {value!r} ({type(value).__name__})."
                )
            if _POSITIVE.search(key):
                # A count is never negative; it must be at least 1 where the config's own default is
                # (0 can mean "none" for some, e.g. diffusers' num_head_channels).
                least = (
                    1
                    if isinstance(param.default, int)
                    and not isinstance(param.default, bool)
                    and param.default >= 1
                    else 0
                )
                numbers = value if isinstance(value, (list, tuple)) else [value]
                bad = [
                    v
                    for v in numbers
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and v < least
                ]
                if bad:
                    raise ConfigError(
                        f"'{where}.{key}' is {value!r}; {config_cls.__name__} needs counts of at least {least} here."
                    )


# ----------------------------------------------------------------------------- paths


def _check_paths(path: Mapping) -> None:
    from utils.checkpoint import COMPLETE_MARKER

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
    """Open the header of every safetensors file (it fails on a truncated or garbage file) and name it."""
    for dirpath, _, files in os.walk(folder):
        if dirpath.count(os.sep) - folder.rstrip(os.sep).count(os.sep) > 1:
            continue
        for name in sorted(f for f in files if f.endswith(".safetensors")):
            _check_safetensors_file(os.path.join(dirpath, name), where)


def _check_safetensors_file(path: str, where: str) -> None:
    from safetensors import safe_open

    from utils.io_errors import as_user_error

    try:
        with safe_open(path, "pt") as handle:
            handle.keys()
    except Exception as error:
        translated = as_user_error(error, path)
        if translated is None:
            raise
        raise ConfigError(f"'{where}': {translated}") from None
