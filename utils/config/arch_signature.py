"""An arch block's declaration is its config class's `__init__` signature; this reads it for the checks.

Arch configs declare their keys by their signature (`models/archs/config_signature.py`,
`@keys_from_signature`), not by `Key`s: a transformers config must take its keys as arguments. This is
the one adapter that reads that declaration: the parameters named through the class's bases (types from
annotations or defaults), plus the keys every `PretrainedConfig` accepts. `utils/config/values.py` checks
a run's arch blocks against it before anything is built, and `models.archs.define_network` checks a block
given directly (scripts, notebooks) against the same.
"""

import functools
import inspect

from utils.errors import ConfigError, did_you_mean


def config_parameters(config_cls) -> dict[str, inspect.Parameter]:
    """The named `__init__` parameters of `config_cls` and its bases below `PretrainedConfig`."""
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


@functools.cache
def pretrained_config_keys() -> frozenset[str]:
    """Keys every `PretrainedConfig` accepts (`torch_dtype`, `id2label`, ...)."""
    from transformers import PretrainedConfig

    return frozenset(PretrainedConfig().to_dict())


def check_arch_keys(where: str, config_cls, keys) -> None:
    """Refuse a key of the arch block `where` that `config_cls` does not take. PretrainedConfig swallows
    unknown keyword arguments as attributes, so a misspelled key would silently keep its default."""
    explicit = sorted(config_parameters(config_cls))
    for key in keys:
        if key == "type" or key in explicit or key in pretrained_config_keys():
            continue
        raise ConfigError(
            f"Unknown key '{where}.{key}' for {config_cls.__name__}{did_you_mean(key, explicit)}; "
            f"it takes: {', '.join(explicit)}."
        )
