"""Checks of values that the per-key schema cannot express, run at start before anything is built.

Every number finite and within 64 bits, counts and sizes whole and positive (never quoted text), and each
arch block against its config class's signature (`check_values` lists them). Each failure is one
ConfigError sentence naming the key. The files a config names are checked by engine/preflight.py.
"""

import inspect
import math
import re
import types
import typing
from collections.abc import Mapping

from utils.config.arch_signature import check_arch_keys, config_parameters
from utils.config.secrets import walk as _walk
from utils.errors import ConfigError, PluginError


def check_values(data: Mapping, find_arch=None) -> None:
    """Every check of this module, on a config the schema has validated. `find_arch` (the arch registry's
    lookup, handed down by the caller) resolves each arch block's config class for its signature check.

    - every number finite (`.nan` / `.inf` in YAML are floats that pass a `minimum` check), and every
      integer within 64 bits (numpy and torch overflow past it);
    - counts (`num_*`, `*_steps`, `datasets.*.size`) whole numbers, and sizes (`*_size`) at least 1;
      neither quoted text, which a reader would split into characters;
    - each arch block (`network`, a GAN's `network_d`, ...) against its config class's `__init__`
      signature (`utils/config/arch_signature.py`): no key it does not take, types from the annotations
      or defaults, and channel/layer counts at least 1, before any network is built.

    Secrets are checked by `utils/config/secrets.py` first, so that no message here can echo one."""
    _check_numbers(data)
    _check_counts(data)
    if find_arch is not None:
        _check_arch_blocks(data, find_arch)


_INT64 = 2**63 - 1


def _check_numbers(data: Mapping) -> None:
    for where, value in _walk(data):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"'{where}' is {value}; every number in the config must be finite.")
        if isinstance(value, int) and not -_INT64 - 1 <= value <= _INT64:
            raise ConfigError(
                f"'{where}' is {value}; every whole number in the config must fit in 64 bits "
                f"(between -2**63 and 2**63-1)."
            )


def _is_count_key(name: str) -> bool:
    return name.startswith("num_") or name.endswith("_steps")


def _check_counts(data: Mapping) -> None:
    for where, value in _walk(data):
        name = where.rsplit(".", 1)[-1]
        if "[" in name or value is None or isinstance(value, Mapping):
            continue
        if (_is_count_key(name) or _is_size_key(name)) and _holds_text(value):
            # A quoted number is text, which a reader would split into characters ('64' -> '6', '4').
            raise ConfigError(f"'{where}' is {value!r} (str); write the number without quotes.")
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


def _is_size_key(name: str) -> bool:
    return name == "size" or name.endswith("_size")


def _holds_text(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) for v in values)


def _is_positive_ints(value) -> bool:
    """False only for an int (or a list holding an int) below 1."""
    values = value if isinstance(value, list) else [value]
    return not any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values)


# ----------------------------------------------------------------------------- arch blocks

_EPSILON = re.compile(r"(^|_)eps$")
_PROBABILITY = re.compile(r"(^|_)(dropout|prob|probability)$")
_POSITIVE = re.compile(r"(channels|layers|blocks|heads|groups|depth|width|features|_dim|^dim|num_)")


def _arch_blocks(data: Mapping):
    """(where, block) for every block that names an arch: `network`, `network_d`, `vae.network`, ..."""
    for where, value in _walk(data):
        last = where.rsplit(".", 1)[-1]
        if isinstance(value, Mapping) and last.startswith("network") and isinstance(value.get("type"), str):
            yield where, value


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


def _check_arch_blocks(data: Mapping, find_arch) -> None:
    for where, block in _arch_blocks(data):
        try:
            config_cls, _ = find_arch(block["type"])
        except PluginError:
            continue  # the model reports an unknown or broken arch when it builds the network
        check_arch_keys(where, config_cls, block)
        params = config_parameters(config_cls)
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
                unquote = (
                    "; write it without quotes" if isinstance(value, str) and allowed & {int, float} else ""
                )
                raise ConfigError(
                    f"'{where}.{key}' must be {names} for {config_cls.__name__}, got {value!r} "
                    f"({type(value).__name__}){unquote}."
                )
            _check_arch_value(f"{where}.{key}", value, param.default, config_cls.__name__)
            if _PROBABILITY.search(key) and _is_number(value) and not 0 <= value <= 1:
                raise ConfigError(
                    f"'{where}.{key}' is {value!r}; {config_cls.__name__} reads it as a probability, from 0 to 1."
                )
            if _EPSILON.search(key) and _is_number(value) and value <= 0:
                raise ConfigError(
                    f"'{where}.{key}' is {value!r}; {config_cls.__name__} adds it to a variance under a square "
                    "root, so it must be above 0."
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


def _check_arch_value(where: str, value, default, owner: str) -> None:
    """Empty text, and a list unlike its default (empty, or holding another type), build nothing useful:
    a network with no blocks, or a library error about a name or a channel count far from the config."""
    if isinstance(value, str) and not value.strip():
        raise ConfigError(
            f"'{where}' is empty text; {owner} needs a value here (its default is {default!r})."
        )
    if not isinstance(value, (list, tuple)) or not isinstance(default, (list, tuple)) or not default:
        return
    if not value:
        raise ConfigError(
            f"'{where}' is an empty list; {owner} needs a list like its default {list(default)}."
        )
    kinds = {type(v) for v in default}
    if kinds <= {int, float} and kinds:
        bad = [v for v in value if isinstance(v, bool) or not isinstance(v, tuple(kinds | {int}))]
        if bad:
            number = "whole numbers" if kinds == {int} else "numbers"
            raise ConfigError(
                f"'{where}' is {list(value)!r}; {owner} needs a list of {number} here, like {list(default)}."
            )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
