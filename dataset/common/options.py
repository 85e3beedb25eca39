"""Reading a dataset's YAML block: each mistake is a ConfigError naming the key, value and what is allowed.

A dataset declares its keys once, as `utils.config.schema.Key`s in its `config_keys` (default, type,
range, help): the trainer's config check validates and defaults them from that declaration, the README's
tables are printed from it (`python -m scripts.key_reference`), and `read_key` below reads a key with
the same declaration. The datasets check again here because tests, notebooks and scripts build them
from plain dicts without the trainer.
"""

from collections.abc import Iterable, Mapping, Sequence

from utils.config.schema import DATASET, SEED_MAX, Key
from utils.errors import ConfigError, did_you_mean

# The seed of a generated set's items, declared once for every dataset that draws its items.
ITEM_SEED = Key(
    None,
    "int",
    "Seed of the items (default: 0 for train, 1 otherwise).",
    minimum=0,
    maximum=SEED_MAX,
    nullable=True,
)

# Handled by the trainer (DataLoader settings, the block's name); a dataset ignores all but `phase`
# and `split_file`.
COMMON_KEYS = frozenset(DATASET)
PHASES = ("train", "val", "test")


def plain(value):
    """Plain dicts and lists of a mapping, an OmegaConf node or the trainer's `Opt` view."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency of the trainer
        pass
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def where_of(opt: Mapping, class_name: str) -> str:
    """How messages name the block: `datasets.train (TIFPairDataset)`."""
    return f"datasets.{opt.get('phase') or '?'} ({class_name})"


def check_keys(opt: Mapping, accepted: Iterable[str], where: str) -> None:
    accepted = set(accepted)
    for key in opt:
        if key not in accepted and key not in COMMON_KEYS:
            raise ConfigError(
                f"Unknown key '{key}' in {where}{did_you_mean(key, accepted)}; "
                f"it accepts: {', '.join(sorted(accepted))}."
            )


def read_key(opt: Mapping, name: str, keys: Mapping[str, Key], where: str):
    """The value of the declared key `name` (its declared default when absent), checked against its
    declaration: a number against its type and range, a word against its choices (case-insensitive), a
    flag as a bool. A key of kind `any` is returned as given; its reader checks it."""
    key = keys[name]
    if key.kind in ("int", "float"):
        return read_number(
            opt, name, key.default, where, low=key.minimum, high=key.maximum, integer=key.kind == "int"
        )
    if key.kind == "str" and key.choices:
        return read_choice(opt, name, key.choices, key.default, where)
    if key.kind == "bool":
        value = opt.get(name, key.default)
        return key.default if value is None else bool(value)
    return opt.get(name, key.default)


def read_phase(opt: Mapping, where: str) -> str:
    phase = opt.get("phase") or "train"
    if phase not in PHASES:
        raise ConfigError(f"'phase' in {where} is {phase!r}; allowed: {', '.join(PHASES)}.")
    return phase


def read_choice(opt: Mapping, key: str, allowed: Sequence[str], default: str, where: str) -> str:
    value = opt.get(key, default)
    value = default if value is None else str(value).lower()
    if value not in allowed:
        raise ConfigError(
            f"'{key}' in {where} is {value!r}{did_you_mean(value, allowed)}; allowed: {', '.join(allowed)}."
        )
    return value


def read_number(opt: Mapping, key: str, default, where: str, low=None, high=None, integer=False):
    """A number within [low, high] (either bound optional); None stays None when the default is None."""
    value = opt.get(key, default)
    if value is None:
        return None
    kind = "a whole number" if integer else "a number"
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"'{key}' in {where} is {value!r}; it must be {kind}.") from None
    if isinstance(value, bool) or (integer and number != value):
        raise ConfigError(f"'{key}' in {where} is {value!r}; it must be {kind}.")
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = (
            f"between {low} and {high}"
            if low is not None and high is not None
            else (f">= {low}" if low is not None else f"<= {high}")
        )
        raise ConfigError(f"'{key}' in {where} is {value!r}; it must be {bounds}.")
    return number


def read_pair(opt: Mapping, key: str, default, where: str, increasing: bool = True):
    """Two numbers `[low, high]` (low < high when `increasing`), or None."""
    value = opt.get(key, default)
    if value is None:
        return None
    value = plain(value)
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"'{key}' in {where} is {value!r}; it must be two numbers [low, high].") from None
    if increasing and not low < high:
        raise ConfigError(f"'{key}' in {where} is {value!r}; the first number must be below the second.")
    return low, high


def read_size(opt: Mapping, key: str, spatial_dims: int, where: str) -> tuple[int, ...] | None:
    """An int (the same on every spatial axis) or one int per spatial axis, each > 0; None if absent."""
    value = plain(opt.get(key))
    if value is None:
        return None
    sizes = [value] * spatial_dims if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(sizes, list)
        or len(sizes) != spatial_dims
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
    ):
        raise ConfigError(
            f"'{key}' in {where} is {value!r}; it must be a positive whole number or a list of "
            f"{spatial_dims} of them (spatial_dims is {spatial_dims})."
        )
    return tuple(sizes)


def read_key_name(opt: Mapping, key: str, default: str, where: str, reserved: Iterable[str]) -> str:
    """An item key chosen by the user (`gt_key`, `lq_key`) that must not clash with the dataset's own."""
    value = opt.get(key, default)
    if not isinstance(value, str) or not value or value in set(reserved):
        raise ConfigError(
            f"'{key}' in {where} is {value!r}; it must be a non-empty name other than "
            f"{', '.join(sorted(reserved))}."
        )
    return value
