"""Validate a loaded config against `utils.config.schema` and fill in the defaults.

Every problem is one sentence that names the key (with its full dotted path), the value and what is
allowed; an unknown key that is close to a known one gets "did you mean". Keys a model reads from the
trainer's blocks (a VAE's `kl_weight` in `train`) and the top-level blocks it owns (an LDM's `vae`) are
declared by the model class in `config_keys`, as `Key`s like the trainer's own: they are then checked,
defaulted and documented exactly like the trainer's keys. An unknown key in a trainer block that
resembles nothing is left to the model, since seed-style templates put their own keys there.
"""

from collections.abc import Mapping

from utils.config.load import Opt
from utils.config.schema import BLOCKS, DATASET, DATASET_NAMES, Key
from utils.config.secrets import check_secrets
from utils.config.values import check_values
from utils.errors import ConfigError, did_you_mean, nearest

_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "block": (dict,)}


def check_value(where: str, value, key: Key):
    """Return the value (normalised) or raise a ConfigError naming `where`."""
    if value is None:
        if key.nullable or key.kind == "block" or not key.required:
            return None
        raise ConfigError(f"The key '{where}' is required ({key.help})")
    if key.kind == "str|list":
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str) or (key.choices and v not in key.choices):
                raise ConfigError(
                    f"'{where}' is {value!r}; allowed: {', '.join(key.choices)}, or a list of them"
                    f"{did_you_mean(str(v), key.choices)}."
                )
        return value
    if key.kind == "bool" and value in ("true", "false"):
        value = value == "true"
    if key.kind == "str" and key.choices and value is False and "no" in key.choices:
        value = "no"  # YAML 1.1 reads a bare `no` as false; seed 003 writes `!!str no` to avoid it.
    if key.kind == "any":
        return value
    expected = _TYPES[key.kind]
    if not isinstance(value, expected) or (key.kind in ("int", "float") and isinstance(value, bool)):
        article = "an" if key.kind[0] in "aeiou" else "a"
        kind = "mapping of keys" if key.kind == "block" else key.kind
        raise ConfigError(f"'{where}' must be {article} {kind}, got {value!r} ({type(value).__name__}).")
    if key.kind == "float":
        value = float(value)
    if key.choices and value not in key.choices:
        raise ConfigError(
            f"'{where}' is {value!r}; allowed: {', '.join(key.choices)}{did_you_mean(str(value), key.choices)}."
        )
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"'{where}' is {value!r}; it must be at least {key.minimum}.")
    if key.maximum is not None and value > key.maximum:
        raise ConfigError(f"'{where}' is {value!r}; it must be at most {key.maximum}.")
    return value


def _check_block(path: str, block: dict, schema: dict, extra: set[str], strict_unknown: bool) -> None:
    """Check the keys of one block in place: unknown keys, types, ranges, defaults."""
    for name in list(block):
        if name in schema or name in extra:
            continue
        where = f"{path}.{name}" if path else name
        # Where unknown keys may belong to a plugin, only a near-certain typo is an error.
        close = nearest(name, list(schema) + list(extra), n=1, cutoff=0.5 if strict_unknown else 0.8)
        if strict_unknown or close:
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(sorted(list(schema) + list(extra)))
            raise ConfigError(f"Unknown key '{where}'{hint}; known keys here: {known}.")
    for name, key in schema.items():
        where = f"{path}.{name}" if path else name
        if name not in block:
            if key.required:
                raise ConfigError(f"The key '{where}' is missing; it is required: {key.help}")
            if key.kind == "block" or not key.fill_default:
                continue
            block[name] = key.default
            continue
        block[name] = check_value(where, block[name], key)


def validate_options(
    opt: Opt,
    model_config_keys: Mapping | None = None,
    dataset_classes: Mapping | None = None,
    find_arch=None,
) -> Opt:
    """Validate the trainer's blocks of `opt` in place and return it.

    model_config_keys: `{'train': {'kl_weight': Key(...)}, 'vae': {...}, ...}`, the keys the model reads,
        by block ('' for top-level keys); a set of names instead of a mapping of `Key`s declares names only.
    dataset_classes: `{'train': TIFFolderDataset, ...}`; a class's `config_keys` lists the keys it reads.
    find_arch: the arch registry's lookup, so that each arch block is checked against its config class.
    """
    data = opt._data
    model_config_keys = model_config_keys or {}
    check_secrets(data)  # first: no later message may echo a token
    for path, schema in BLOCKS.items():
        block = data
        for part in [p for p in path.split(".") if p]:
            block = block.get(part) if isinstance(block, dict) else None
        if block is None:
            if path in ("path", "train", "train.optim", "train.scheduler", "val"):
                _create(data, path)
                block = _lookup(data, path)
            else:
                continue
        declared = model_config_keys.get(path, ())
        model_keys = dict(declared) if isinstance(declared, Mapping) else {}
        extra = set(declared) - set(model_keys)
        schema = {**schema, **model_keys}
        if path == "":
            # Top-level blocks a plugin reads (a GAN's `network_d`, an LDM's `vae`) are allowed when
            # they resemble no trainer key; a top-level scalar must be the trainer's or the model's.
            extra |= {
                k for k, v in block.items() if isinstance(v, dict) and not nearest(k, schema, n=1, cutoff=0.8)
            }
        _check_block(path, block, schema, extra, strict_unknown=path == "")
    _check_model_blocks(data, model_config_keys)
    _check_report_to(data)
    _check_datasets(data, dataset_classes or {})
    _check_loss_and_metrics(data)
    train = data["train"]
    if train.get("max_train_steps") is None and train.get("num_train_epochs") is None:
        raise ConfigError("Set 'train.max_train_steps' or 'train.num_train_epochs'; both are empty.")
    if data.get("push_to_hub") and not data.get("hub_model_id"):
        raise ConfigError("'push_to_hub' is true but 'hub_model_id' is empty; set it to 'user/repo-name'.")
    check_values(data, find_arch)
    return opt


def _check_model_blocks(data: dict, model_config_keys: Mapping) -> None:
    """Top-level blocks a model owns (`vae:`, `condition:`), declared as mappings of `Key`s."""
    for path, keys in model_config_keys.items():
        if path in BLOCKS or not isinstance(keys, Mapping):
            continue
        if data.get(path) is None:
            _create(data, path)
        block = _lookup(data, path)
        if not isinstance(block, dict):
            raise ConfigError(f"'{path}' must be a mapping of keys ({', '.join(keys)}), got {block!r}.")
        _check_block(path, block, keys, set(), strict_unknown=True)


def _lookup(data: dict, path: str) -> dict:
    for part in path.split("."):
        data = data[part]
    return data


def _create(data: dict, path: str) -> None:
    for part in path.split("."):
        if data.get(part) is None:
            data[part] = {}
        data = data[part]


def _check_report_to(data: dict) -> None:
    report_to = data["report_to"]
    if isinstance(report_to, list) and len(report_to) != len(set(report_to)):
        raise ConfigError(f"'report_to' lists a tracker twice: {report_to}.")


def _check_datasets(data: dict, dataset_classes: Mapping) -> None:
    datasets = data.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError("'datasets' must be a mapping with at least a 'train' or 'val' block.")
    for name, block in datasets.items():
        if name not in DATASET_NAMES:
            raise ConfigError(
                f"Unknown dataset block 'datasets.{name}'{did_you_mean(name, DATASET_NAMES)}; "
                f"allowed: {', '.join(DATASET_NAMES)}."
            )
        if not isinstance(block, dict):
            raise ConfigError(f"'datasets.{name}' must be a mapping with at least 'type', got {block!r}.")
        cls = dataset_classes.get(name)
        declared = getattr(cls, "config_keys", None)
        # Keys declared as `Key`s are checked and defaulted like the trainer's; a set declares names only.
        keys = dict(declared) if isinstance(declared, Mapping) else {}
        # A dataset that does not declare its keys may read any; only the common ones are checked.
        extra = set(declared) - set(keys) if declared is not None else {k for k in block if k not in DATASET}
        _check_block(
            f"datasets.{name}", block, {**DATASET, **keys}, extra, strict_unknown=declared is not None
        )


def _check_loss_and_metrics(data: dict) -> None:
    from utils.losses import Loss
    from utils.metrics import check_metric_options

    Loss.parse(data["train"]["loss"], where="train.loss")
    check_metric_options(data["val"].get("metrics"), where="val.metrics")
