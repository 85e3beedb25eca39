"""How a model's own calls to its networks stay inside DDP and autocast.

Seed 003's models call their networks directly (`self.net_vae.encode(x)`). Under DDP that bypasses
the wrapper, so gradients are never synchronised (PSF_Densify's bug), and under mixed precision it
bypasses Accelerate's autocast. BaseModel therefore prepares a small `MethodDispatch` module around
each arch and rebinds the model's attributes to a `PreparedNetwork` proxy: calling it, or calling any
method the arch defines itself (`encode`, `decode`, ...), runs through the prepared module's
forward; everything else (`parameters()`, `config`, `save_pretrained`, `train()`) goes straight to
the arch.

Calls into an arch's submodules (`self.net.decoder(z)`) are not routed; call methods of the arch.
"""

from functools import cache

from torch import nn
from transformers import PreTrainedModel


class MethodDispatch(nn.Module):
    """`dispatch("encode", x)` calls `arch.encode(x)`: one forward for every method of the arch."""

    def __init__(self, arch: nn.Module):
        super().__init__()
        self.arch = arch

    def forward(self, method: str, *args, **kwargs):
        return getattr(self.arch, method)(*args, **kwargs)


@cache
def _library_names() -> frozenset:
    """Attribute names defined by PreTrainedModel and its bases (nn.Module, the Hub mixins...)."""
    names = set()
    for cls in PreTrainedModel.__mro__:
        names.update(vars(cls))
    return frozenset(names)


class PreparedNetwork:
    """Stands in for an arch on the model; see the module docstring."""

    __slots__ = ("prepared", "arch")

    def __init__(self, prepared: nn.Module, arch: nn.Module):
        object.__setattr__(self, "prepared", prepared)
        object.__setattr__(self, "arch", arch)

    def __call__(self, *args, **kwargs):
        return self.prepared("__call__", *args, **kwargs)

    def __getattr__(self, name: str):
        value = getattr(self.arch, name)
        if callable(value) and not isinstance(value, nn.Module) and self._routes(name):
            prepared = self.prepared

            def routed(*args, **kwargs):
                return prepared(name, *args, **kwargs)

            return routed
        return value

    def _routes(self, name: str) -> bool:
        # The arch's own compute methods go through the prepared forward; library methods do not.
        if name.startswith("_") or name in _library_names():
            return False
        return any(name in vars(cls) for cls in type(self.arch).__mro__)

    def __setattr__(self, name, value):
        setattr(self.arch, name, value)

    def __repr__(self):
        return f"PreparedNetwork({type(self.arch).__name__})"
