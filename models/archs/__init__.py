"""Arch plugins: `network.type: X` pairs `X_config` (a `PretrainedConfig`) with `X_arch` (a `PreTrainedModel`).

Both live in some `models/archs/**/*_arch.py`. Every other key of the `network` block becomes a keyword
argument of `X_config`, so a trained arch saves, reloads and pushes like any transformers model.
"""

import functools
from collections.abc import Mapping

from transformers import PretrainedConfig, PreTrainedModel
from transformers.initialization import no_init_weights

from utils.config.arch_signature import check_arch_keys
from utils.errors import ConfigError, PluginError
from utils.errors.in_use import block_in_use
from utils.registry import Registry

ARCH_REGISTRY = Registry("models/archs", "_arch.py", kind="arch")


def available_arch_types() -> list[str]:
    return sorted(n[: -len("_arch")] for n in ARCH_REGISTRY.names(lambda n: n.endswith("_arch")))


def find_arch(arch_type: str) -> tuple[type[PretrainedConfig], type[PreTrainedModel]]:
    """The (`X_config`, `X_arch`) pair of `network.type: X`, checked to belong together."""
    types = available_arch_types()
    arch_cls = ARCH_REGISTRY.get(f"{arch_type}_arch", what="arch", candidates=[f"{t}_arch" for t in types])
    config_cls = ARCH_REGISTRY.get(f"{arch_type}_config", what="arch config")
    where = ARCH_REGISTRY._rel(ARCH_REGISTRY.index[f"{arch_type}_arch"])
    if not (isinstance(arch_cls, type) and issubclass(arch_cls, PreTrainedModel)):
        raise PluginError(f"'{arch_type}_arch' in '{where}' must subclass transformers.PreTrainedModel.")
    if not (isinstance(config_cls, type) and issubclass(config_cls, PretrainedConfig)):
        raise PluginError(f"'{arch_type}_config' in '{where}' must subclass transformers.PretrainedConfig.")
    declared = arch_cls.__dict__.get("config_class") or getattr(arch_cls, "config_class", None)
    if declared is not config_cls:
        got = getattr(declared, "__name__", declared)
        raise PluginError(
            f"'{arch_type}_arch' in '{where}' must set `config_class = {arch_type}_config` (it is {got})."
        )
    ensure_post_init(arch_cls)
    return config_cls, arch_cls


def define_network(opt_network: Mapping) -> PreTrainedModel:
    """Build the arch a `network` block describes. The block itself is left unchanged."""
    if opt_network is None or "type" not in opt_network:
        raise ConfigError("The 'network' block needs a 'type' naming an arch (the X of X_config / X_arch).")
    # An `Opt` view knows its dotted path (`network_d`, `vae.network`); a plain dict is the `network` block.
    where = getattr(opt_network, "_where", "") or "network"
    kwargs = {k: _plain(v) for k, v in dict(opt_network).items() if k != "type"}
    config_cls, arch_cls = find_arch(opt_network["type"])
    check_arch_keys(where, config_cls, kwargs)
    try:
        config = config_cls(**kwargs)
        with block_in_use(where, f"{opt_network['type']}_arch"):
            return arch_cls(config)
    except TypeError as error:
        raise ConfigError(f"The '{where}' block does not fit {config_cls.__name__}: {error}.") from error
    except ConfigError as error:
        if where == "network" or "'network." not in str(error):
            raise
        # An arch names its keys 'network.*'; built from another block (network_d), the keys are that block's.
        raise type(error)(str(error).replace("'network.", f"'{where}.")) from error


def _plain(value):
    """Opt views and OmegaConf containers as plain dicts and lists, which configs can serialise."""
    if hasattr(value, "to_dict") and not isinstance(value, PretrainedConfig):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def ensure_post_init(arch_cls: type[PreTrainedModel]) -> None:
    """Make an arch that forgets `self.post_init()` work with transformers 5.

    A seed-style arch (the README's template) never calls `post_init()`; transformers 5 sets `all_tied_weights_keys`
    there, and `from_pretrained` fails without it. We finish such instances ourselves, under
    `no_init_weights` so that the weights the arch's own `__init__` made are kept.
    """
    if arch_cls.__dict__.get("_trainer_post_init_wrapped", False):
        return
    original_init = arch_cls.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if not hasattr(self, "all_tied_weights_keys"):
            with no_init_weights():
                self.post_init()

    arch_cls.__init__ = __init__
    arch_cls._trainer_post_init_wrapped = True
