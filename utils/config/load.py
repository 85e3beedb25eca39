"""The `opt` object every model reads, and how it is loaded from YAML.

`load_options` reads the YAML with OmegaConf (so `${...}` interpolation works), merges command-line
overrides given as a dotlist (`train.batch_size=8`), resolves everything to plain Python values and
wraps the result in `Opt`.

`Opt` is what plugin code expects of its config object (attribute and item access, `.get`,
`hasattr`, `dict(opt)`), and a missing key raises an error that names the key and the nearest
existing ones, never a silent `None`.
"""

import copy
import os
import re
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from utils.errors import ConfigError, nearest


class MissingKeyError(ConfigError, AttributeError):
    """A key that is not in the config. An AttributeError too, so that `hasattr(opt, key)` is False."""


class Opt(MutableMapping):
    """A view of a nested dict with attribute access; nested dicts come back as `Opt` views.

    Views share the underlying dict, so `opt.train.batch_size = 8` changes `opt` itself.
    """

    __slots__ = ("_data", "_where")

    def __init__(self, data: Mapping | None = None, where: str = ""):
        object.__setattr__(self, "_data", {} if data is None else data)
        object.__setattr__(self, "_where", where)

    def _wrap(self, key: str, value: Any) -> Any:
        where = f"{self._where}.{key}" if self._where else key
        if isinstance(value, dict):
            return Opt(value, where)
        if isinstance(value, list):
            return [Opt(v, f"{where}[{i}]") if isinstance(v, dict) else v for i, v in enumerate(value)]
        return value

    def __getitem__(self, key: str) -> Any:
        try:
            return self._wrap(key, self._data[key])
        except KeyError:
            raise self._missing(key) from None

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):  # copy/pickle probe dunders; they must see a plain AttributeError.
            raise AttributeError(key)
        return self[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value.to_dict() if isinstance(value, Opt) else value

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __delattr__(self, key: str) -> None:
        del self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._wrap(key, self._data[key]) if key in self._data else default

    def to_dict(self) -> dict:
        """A deep copy as plain dicts and lists."""
        return copy.deepcopy(self._data)

    def __repr__(self) -> str:
        return f"Opt({self._data!r})"

    def __deepcopy__(self, memo) -> "Opt":
        return Opt(copy.deepcopy(self._data, memo), self._where)

    def __getstate__(self):
        return {"data": self._data, "where": self._where}

    def __setstate__(self, state):
        object.__setattr__(self, "_data", state["data"])
        object.__setattr__(self, "_where", state["where"])

    def _missing(self, key: str) -> MissingKeyError:
        full = f"{self._where}.{key}" if self._where else key
        close = nearest(str(key), [str(k) for k in self._data])
        hint = f"; the nearest existing keys are {', '.join(repr(c) for c in close)}" if close else ""
        existing = ", ".join(sorted(map(str, self._data))) or "none"
        return MissingKeyError(f"The config has no key '{full}'{hint} (keys here: {existing}).")


def load_options(path: str, overrides: list[str] | None = None) -> Opt:
    """Load a YAML experiment, apply `key=value` overrides, resolve `${...}`, return an `Opt`."""
    if os.path.isdir(path):
        raise ConfigError(
            f"The config file '{path}' is a folder; give the YAML file itself (e.g. {path}/exp.yml)."
        )
    if not os.path.isfile(path):
        raise ConfigError(f"The config file '{path}' does not exist.")
    try:
        conf = OmegaConf.load(path)
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"The config file '{path}' is not UTF-8 text (byte 0x{error.object[error.start]:02x} at position "
            f"{error.start}); save it as UTF-8."
        ) from None
    except OSError as error:
        raise ConfigError(f"The config file '{path}' cannot be read: {error.strerror or error}.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"The config file '{path}' is not valid YAML{where}: {problem}.") from None
    if not isinstance(conf, Mapping):
        raise ConfigError(
            f"The config file '{path}' must hold a mapping of keys, not a {type(conf).__name__}."
        )
    if overrides:
        for override in overrides:
            try:
                conf = OmegaConf.merge(conf, _parse_override(override))
            except OmegaConfBaseException as error:
                raise ConfigError(
                    f"The command-line override '{override}' cannot be applied: {error.msg}."
                ) from None
    try:
        data = OmegaConf.to_container(conf, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        raise ConfigError(f"In '{path}', the value of '{key}' cannot be resolved: {error.msg}.") from None
    return Opt(data)


_OVERRIDE_KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z0-9_][\w-]*)*$")


def _parse_override(override: str):
    """One `key=value` override as an OmegaConf tree; a malformed one is never applied silently."""
    key, sep, value = override.partition("=")
    example = "(e.g. train.batch_size=8)"
    if not sep or not key:
        raise ConfigError(f"The command-line override '{override}' must have the form key=value {example}.")
    if not _OVERRIDE_KEY.match(key):
        raise ConfigError(
            f"The command-line override '{override}' has the key '{key}', which is not a dotted key name "
            f"{example}: each part must be a name, with no empty part or leading dot."
        )
    if not value.strip():
        raise ConfigError(
            f"The command-line override '{override}' gives '{key}' no value; write {key}=<value>, or {key}=null "
            "to clear it."
        )
    try:
        return OmegaConf.from_dotlist([override])
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        problem = getattr(error, "problem", None) or getattr(error, "msg", None) or str(error).splitlines()[0]
        raise ConfigError(
            f"The command-line override '{override}' has a value that cannot be parsed ({problem}); quote it "
            f"or fix its brackets, e.g. {key}=[1,2]."
        ) from None


def save_options(opt: Opt | Mapping, path: str) -> None:
    """Write the resolved config as YAML, with anything that looks like a secret left out."""
    data = opt.to_dict() if isinstance(opt, Opt) else copy.deepcopy(dict(opt))
    with open(path, "w") as f:
        yaml.safe_dump(redact_secrets(data), f, sort_keys=False)


SECRET_WORDS = ("token", "api_key", "apikey", "secret", "password")


def redact_secrets(value: Any) -> Any:
    """A copy with the values of secret-looking keys replaced, so no token reaches a log or a saved file."""
    if isinstance(value, Mapping):
        return {
            k: "<redacted>" if any(w in str(k).lower() for w in SECRET_WORDS) else redact_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


def flatten(data: Mapping, prefix: str = "") -> dict[str, Any]:
    """`{'train': {'optim': {'learning_rate': 1e-4}}}` -> `{'train.optim.learning_rate': 1e-4}`."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
