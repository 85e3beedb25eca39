"""The one check of a run's config: every key a run is given is declared by a part of the run, or refused.

The parts of a run are the trainer's blocks (`utils/config/schema.py`), the model class's `config_keys`,
each dataset class's `config_keys`, and each arch block's config signature. `validate_options` checks and
defaults every declared key once, before anything is built; later code reads the values without checking
them again. Top-level keys starting with `_` hold YAML anchors: they are dropped unread.
"""

from collections.abc import Callable, Mapping

from utils.config.cadence import resolve_cadences
from utils.config.key_value import check_value
from utils.config.load import Opt
from utils.config.scheduler import check_schedule
from utils.config.schema import BLOCKS, DATASET, DATASET_NAMES, Key
from utils.config.secrets import check_secrets
from utils.config.values import check_values
from utils.errors import ConfigError, PluginError, did_you_mean, nearest

ANCHOR_PREFIX = "_"
OPEN_BLOCKS_OF_SEED_STYLE_MODELS = ("train", "val")
_ALWAYS_CREATED = ("path", "train", "train.optim", "train.scheduler", "val")


def validate_options(
    opt: Opt,
    model_config_keys: Mapping | None = None,
    dataset_classes: Mapping | None = None,
    find_arch=None,
    *,
    model_name: str | None = None,
    declares_every_key: bool = True,
    who_declares: Callable[[str], list[str]] | None = None,
) -> Opt:
    """Validate `opt` in place against the declarations of its run, fill in the defaults, return it.

    Each declared key is checked against its `Key` (`utils/config/key_value.py`); model keys are declared
    by block (`''` for the top-level blocks the model owns), arch keys by signature
    (`utils/config/values.py`). A key no part of the run declares is a ConfigError naming it, the model or
    dataset that would read it (`who_declares`, a search of every registered plugin) and the nearest
    valid name.

    model_config_keys: `{'train': {'kl_weight': Key(...)}, 'vae': {...}, '': {'vae': Key(...)}}`.
    dataset_classes: `{'train': TIFFolderDataset, ...}`; each class's `config_keys` are its block's keys.
    find_arch: the arch registry's lookup, so that each arch block is checked against its config class.
    model_name: how messages name the model. declares_every_key: False for a seed-style model, one that
    does not declare `config_keys` in its own body (a subclass of `PSF_model` that reads
    `opt.train.get('kl_weight')`): it may read keys of `train` and `val` that it never declared, so those
    two blocks accept its undeclared keys; every other block stays closed.
    who_declares: `'train.kl_weight' -> ['VAE_model']`, the registered plugins that declare a dotted key.
    """
    data = opt._data
    model_config_keys = model_config_keys or {}
    _check_declarations(model_name or "the model", model_config_keys)
    for cls in (dataset_classes or {}).values():
        if getattr(cls, "config_keys", None) is not None:
            _check_declarations(cls.__name__, {"": cls.config_keys}, by_block=False)
    unknown = _UnknownKeys(model_name, who_declares or (lambda where: []))
    check_secrets(data)  # first: no later message may echo a token
    for name in [k for k in data if str(k).startswith(ANCHOR_PREFIX)]:
        del data[name]  # YAML anchors: never read
    for path, schema in BLOCKS.items():
        block = _lookup(data, path)
        if block is None:
            if path not in _ALWAYS_CREATED:
                continue
            _create(data, path)
            block = _lookup(data, path)
        if not isinstance(block, dict):
            raise ConfigError(f"'{path}' must be a mapping of keys ({', '.join(schema)}), got {block!r}.")
        model_keys = dict(model_config_keys.get(path) or {})
        closed = declares_every_key or path not in OPEN_BLOCKS_OF_SEED_STYLE_MODELS
        _check_block(path, block, {**schema, **model_keys}, unknown if closed else None)
    _check_scheduler_reads_its_keys(data["train"]["scheduler"])
    _check_model_blocks(data, model_config_keys, unknown)
    _check_datasets(data, dataset_classes or {}, unknown)
    _check_report_to(data)
    _check_loss_and_metrics(data)
    train = data["train"]
    resolve_cadences(train)
    if train.get("max_train_steps") is None and train.get("num_train_epochs") is None:
        raise ConfigError("Set 'train.max_train_steps' or 'train.num_train_epochs'; both are empty.")
    if data.get("push_to_hub") and not data.get("hub_model_id"):
        raise ConfigError("'push_to_hub' is true but 'hub_model_id' is empty; set it to 'user/repo-name'.")
    if data.get("hub_model_id"):
        _check_hub_model_id(data["hub_model_id"])
    check_values(data, find_arch)
    check_schedule(data["train"])  # after check_values: the rate is a finite number
    return opt


def _check_declarations(owner: str, declared: Mapping, by_block: bool = True) -> None:
    """A plugin's `config_keys` must map names to `Key`s (by block for a model): a bare set of names
    says nothing of type, default or range, so it is refused rather than half-checked."""
    if not isinstance(declared, Mapping):
        raise PluginError(f"{owner}.config_keys must be a mapping, not a {type(declared).__name__}.")
    for block, keys in declared.items():
        where = f"{owner}.config_keys[{block!r}]" if by_block else f"{owner}.config_keys"
        entries = keys.items() if isinstance(keys, Mapping) else None
        if entries is None or not all(isinstance(k, Key) for _, k in entries):
            raise PluginError(
                f"{where} must map each key name to a utils.config.schema.Key (default, type, help), "
                f"got {keys!r}."
            )
        if not by_block:
            return


class _UnknownKeys:
    """The error for a key that no part of this run declares."""

    def __init__(self, model_name: str | None, who_declares: Callable[[str], list[str]]):
        self.model_name = model_name
        self.who_declares = who_declares

    def error(self, where: str, known: list[str], reader: str | None = None) -> ConfigError:
        name = where.rsplit(".", 1)[-1]
        close = nearest(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        owners = [o for o in self.who_declares(where) if o not in (self.model_name, reader)]
        run = reader or self.model_name or "this run"
        if owners:
            why = f"it is read by {', '.join(owners)}, not by {run}"
        elif "." not in where and not close:
            why = (
                "no part of this run reads a top-level block of that name (a block that only holds YAML "
                f"anchors must start with '{ANCHOR_PREFIX}', e.g. '{ANCHOR_PREFIX}{name}')"
            )
        else:
            why = f"nothing in this run ({run}) reads it"
        return ConfigError(
            f"Unknown key '{where}'{hint}: {why}; known keys here: {', '.join(sorted(known))}."
        )


def _check_block(
    path: str, block: dict, schema: Mapping[str, Key], unknown: _UnknownKeys | None, reader=None
):
    """Check one block in place: keys nothing declares (when `unknown` is given), values, defaults."""
    if unknown is not None:
        for name in list(block):
            if name not in schema:
                where = f"{path}.{name}" if path else str(name)
                raise unknown.error(where, list(schema), reader)
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


def _check_model_blocks(data: dict, model_config_keys: Mapping, unknown: _UnknownKeys) -> None:
    """Top-level blocks a model owns (`vae:`, `condition:`), declared as mappings of `Key`s."""
    for path, keys in model_config_keys.items():
        if path in BLOCKS:
            continue
        if data.get(path) is None:
            owner = model_config_keys.get("", {}).get(path)
            if owner is not None and not owner.fill_default:
                continue  # a block the model requires itself, with its own message when absent
            _create(data, path)
        block = _lookup(data, path)
        if not isinstance(block, dict):
            raise ConfigError(f"'{path}' must be a mapping of keys ({', '.join(keys)}), got {block!r}.")
        _check_block(path, block, keys, unknown)


def _lookup(data: dict, path: str):
    for part in [p for p in path.split(".") if p]:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _create(data: dict, path: str) -> None:
    for part in path.split("."):
        if data.get(part) is None:
            data[part] = {}
        data = data[part]


# The `train.scheduler` keys that only some schedule types read (diffusers' `get_scheduler`).
_SCHEDULER_KEY_READERS = {
    "lr_warmup_steps": ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup"),
    "lr_num_cycles": ("cosine_with_restarts",),
    "lr_power": ("polynomial",),
}


def _check_scheduler_reads_its_keys(scheduler: dict) -> None:
    """A schedule key set to other than its default under a type that ignores it is refused."""
    kind = scheduler["type"]
    for name, readers in _SCHEDULER_KEY_READERS.items():
        if kind not in readers and scheduler[name] != BLOCKS["train.scheduler"][name].default:
            raise ConfigError(
                f"'train.scheduler.{name}' is {scheduler[name]!r}, but 'type: {kind}' does not read it; "
                f"it is read by {', '.join(readers)}."
            )


def _check_hub_model_id(repo_id: str) -> None:
    """The push at the end of training would fail on a malformed id, after hours of training."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ConfigError(
            f"'hub_model_id' is {repo_id!r}, which is not a Hub repository id; write it as user/name with "
            "letters, digits, '-', '_' and '.' (no '--' or '..', at most 96 characters)."
        ) from None


def _check_report_to(data: dict) -> None:
    report_to = data["report_to"]
    if isinstance(report_to, list) and len(report_to) != len(set(report_to)):
        raise ConfigError(f"'report_to' lists a tracker twice: {report_to}.")


def _check_datasets(data: dict, dataset_classes: Mapping, unknown: _UnknownKeys) -> None:
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
        # A dataset plugin that declares no keys may read any; only the common ones are checked then.
        keys = {**DATASET, **(declared or {})}
        if declared is None:
            keys.update({k: Key(None, "any", "", nullable=True) for k in block if k not in DATASET})
        _check_block(f"datasets.{name}", block, keys, unknown, reader=getattr(cls, "__name__", None))


def _check_loss_and_metrics(data: dict) -> None:
    from utils.losses import Loss
    from utils.metrics import check_metric_options

    if "loss" in data["train"]:
        Loss.parse(data["train"]["loss"], where="train.loss")
    check_metric_options(data["val"].get("metrics"), where="val.metrics")
