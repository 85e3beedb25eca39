"""One signature is the whole arch config: `@keys_from_signature` on a `PretrainedConfig.__init__`.
It is the arch's key declaration (models and datasets declare `Key`s), read by the config check:

    class TinyDenoiser_config(PretrainedConfig):
        model_type = "TinyDenoiser"

        @keys_from_signature
        def __init__(self, in_channels=1, hidden_channels=32, num_layers=4, **kwargs):
            super().__init__(**kwargs)
"""

import functools
import inspect

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def keys_from_signature(init):
    """Like diffusers' `register_to_config`: stores each named parameter as an attribute of the same name
    once the body has run, unless the body set it itself (to normalise it, e.g. a default that depends on
    another key); tuples are stored as lists so that the JSON round trip gives back the same config.

    Without it every key is written three times (the parameter, `self.k = k`, and any list of the keys
    passed on to a library network), and a key added to one place but not another is silently dropped
    from `config.json`."""
    signature = inspect.signature(init)
    names = [n for n, p in signature.parameters.items() if n != "self" and p.kind in _NAMED]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        for name in names:
            if name not in vars(self):
                value = bound.arguments[name]
                setattr(self, name, list(value) if isinstance(value, tuple) else value)

    __init__.signature_keys = tuple(names)
    return __init__


def signature_keys(config_cls) -> tuple[str, ...]:
    """The keys a config class declares in its `@keys_from_signature` signature."""
    return getattr(config_cls.__init__, "signature_keys", ())
