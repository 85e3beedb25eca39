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
def _routed(arch_cls: type, name: str) -> bool:
    """Route a method when the class that defines it is the arch's own (or a base below PreTrainedModel):
    `forward`, `encode`, `decode`... but not `parameters`, `save_pretrained` or `train`."""
    if name.startswith("_"):
        return False
    library = set(PreTrainedModel.__mro__)
    for cls in arch_cls.__mro__:
        if name in vars(cls):
            return cls not in library
    return False


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
        if callable(value) and not isinstance(value, nn.Module) and _routed(type(self.arch), name):
            prepared = self.prepared

            def routed(*args, **kwargs):
                return prepared(name, *args, **kwargs)

            return routed
        return value

    def __setattr__(self, name, value):
        setattr(self.arch, name, value)

    def __repr__(self):
        return f"PreparedNetwork({type(self.arch).__name__})"
