"""Libraries a run imports only when it uses them.

diffusers imports bitsandbytes, when it is installed, as soon as any diffusers model class loads (its
quantizers keep `bnb` at hand for quantised loading, which no run here asks for); bitsandbytes then
loads its kernels and backends and registers its operators with torch: a tiny run's start to its first
optimizer step takes 11.6 CPU seconds with it and 8.7 without (bench/startup.py, 2-core CPU). `defer_unused_imports` puts a `DeferredModule` in its place in `sys.modules`: `import
bitsandbytes` returns it at once, and the library is imported when code reads one of its names (the
8-bit AdamW of `train.optim.use_8bit_adam`). Call it before diffusers loads.

The standard library's `importlib.util.LazyLoader` does not serve here: `inspect.getmodule`, which
torch calls while it registers its custom operators, reads `__file__` of every module in
`sys.modules`; that read starts the deferred import in the middle of torch's own, and the half-run
bitsandbytes it leaves behind lacks `optim`.
"""

import importlib
import importlib.util
import sys
import types

DEFERRED = ("bitsandbytes",)


class DeferredModule(types.ModuleType):
    """Stands in `sys.modules` for a library until code reads one of its names, then imports it and hands
    every read on to it. The names a scan of `sys.modules` reads (`__file__`, `__spec__`, `__loader__`)
    are its own, so a scan loads nothing; `__path__` is not, so importing a submodule loads the library
    first, as a plain import would."""

    def __init__(self, spec):
        super().__init__(spec.name)
        self.__spec__, self.__loader__, self.__file__ = spec, spec.loader, spec.origin
        self.__package__ = spec.name if spec.submodule_search_locations is not None else spec.parent

    def __getattr__(self, name):  # only for the names this placeholder does not hold
        real = vars(self).get("_deferred_module")
        if real is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            try:
                real = importlib.import_module(self.__name__)
            except BaseException:
                sys.modules.setdefault(self.__name__, self)  # still deferred: the next read tries again
                raise
            self._deferred_module = real
        return getattr(real, name)


def is_deferred(module) -> bool:
    """Whether `module` is a placeholder whose library has not been imported."""
    return isinstance(module, DeferredModule) and "_deferred_module" not in vars(module)


def defer_unused_imports(names=DEFERRED) -> None:
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is not None:  # when it is not installed, the code that needs it says so
            sys.modules[name] = DeferredModule(spec)
