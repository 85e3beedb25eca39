"""One value against its `Key`: type, choices and range, in one sentence naming the key."""

from utils.config.schema import Key
from utils.errors import ConfigError, did_you_mean

_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "block": (dict,)}
_NUMERIC = ("int", "float", "int|list", "float|list")


def check_value(where: str, value, key: Key):
    """Return the value (normalised) or raise a ConfigError naming `where`."""
    if value is None:
        if key.required and not key.nullable:
            raise ConfigError(f"The key '{where}' is required ({key.help})")
        if key.nullable or key.kind == "block" or key.default is None:
            return None
        # Null would reach code that reads a number or a name; leaving the key out gives its default.
        raise ConfigError(
            f"'{where}' is null; it must be {_describe_kind(key)} (leave it out for its default, "
            f"{key.default!r})."
        )
    if key.kind in _NUMERIC and isinstance(value, str):
        # A quoted number is text: read as a size it would be split into characters, so it is refused.
        unquote = "; write it without quotes" if _looks_numeric(value) else ""
        raise ConfigError(f"'{where}' must be {_describe(key)}, got {value!r} (str){unquote}.")
    if key.kind == "str|list":
        return _check_str_list(where, value, key)
    if key.kind in ("int|list", "float|list"):
        return _check_number_list(where, value, key)
    if key.kind == "bool" and value in ("true", "false"):
        value = value == "true"
    if key.kind == "str" and key.choices and value is False and "no" in key.choices:
        value = "no"  # YAML 1.1 reads a bare `no` as false; the shipped YAMLs write `!!str no` to avoid it.
    if key.kind == "any":
        return value
    expected = _TYPES[key.kind]
    if not isinstance(value, expected) or (key.kind in ("int", "float") and isinstance(value, bool)):
        article = "an" if key.kind[0] in "aeiou" else "a"
        kind = "mapping of keys" if key.kind == "block" else key.kind
        # `experiment_key: 2e5` or `name: 1234` is read by YAML as a number, not as the text it looks like.
        quote = (
            "; YAML reads it as a number, so write it in quotes"
            if key.kind == "str" and isinstance(value, (int, float))
            else ""
        )
        raise ConfigError(
            f"'{where}' must be {article} {kind}, got {value!r} ({type(value).__name__}){quote}."
        )
    if key.kind == "float":
        value = float(value)  # finiteness: utils/config/values.py checks every number of the config
    if key.kind == "str" and not value.strip():
        # No key reads empty text as a name or a path; null (where allowed) or no key says "none" or "default".
        instead = "null or leave it out" if key.nullable else "leave it out for its default"
        raise ConfigError(f"'{where}' is empty text; give {_describe_kind(key)}, or {instead}.")
    if key.choices and value not in key.choices:
        raise ConfigError(
            f"'{where}' is {value!r}; allowed: {', '.join(key.choices)}{did_you_mean(str(value), key.choices)}."
        )
    _check_range(where, value, value, key)
    return value


def _describe_kind(key: Key) -> str:
    if key.kind in _NUMERIC:
        return _describe(key)
    if key.choices:
        return f"one of {', '.join(map(str, key.choices))}"
    return {"str": "text", "bool": "true or false", "str|list": "text or a list of it"}.get(
        key.kind, "a value"
    )


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _describe(key: Key) -> str:
    if key.kind == "int|list":
        return "an int or a list of ints"
    if key.kind == "float|list":
        return "a number or a list of numbers"
    return "an int" if key.kind == "int" else "a float"


def _check_range(where: str, shown, value, key: Key) -> None:
    if key.minimum is not None and key.above_minimum and value <= key.minimum:
        raise ConfigError(f"'{where}' is {shown!r}; it must be above {key.minimum}.")
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"'{where}' is {shown!r}; it must be at least {key.minimum}.")
    if key.maximum is not None and key.below_maximum and value >= key.maximum:
        raise ConfigError(f"'{where}' is {shown!r}; it must be below {key.maximum}.")
    if key.maximum is not None and value > key.maximum:
        raise ConfigError(f"'{where}' is {shown!r}; it must be at most {key.maximum}.")


def _check_str_list(where: str, value, key: Key):
    values = value if isinstance(value, list) else [value]
    allowed = f"one of {', '.join(key.choices)}" if key.choices else "a name"
    if not values:
        raise ConfigError(f"'{where}' is an empty list; give {allowed}, or a list of them.")
    for v in values:
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"'{where}' is {value!r}; give {allowed}, or a list of them.")
        if key.choices and v not in key.choices:
            raise ConfigError(
                f"'{where}' is {value!r}; allowed: {', '.join(key.choices)}, or a list of them"
                f"{did_you_mean(str(v), key.choices)}."
            )
    return value


def _check_number_list(where: str, value, key: Key):
    integer = key.kind == "int|list"
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"'{where}' is an empty list; it must be {_describe(key)}.")
    for v in values:
        if isinstance(v, str):
            raise ConfigError(f"'{where}' is {value!r}; write its numbers without quotes.")
        if not isinstance(v, int if integer else (int, float)) or isinstance(v, bool):
            raise ConfigError(f"'{where}' is {value!r}; it must be {_describe(key)}.")
        _check_range(where, value, v, key)
    return value
