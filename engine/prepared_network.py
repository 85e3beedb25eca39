"""A network handle whose calls run through Accelerate's prepared module (DDP and autocast).

Under DDP a direct call of the bare arch (`arch.encode(x)`) bypasses the wrapper, so gradients are
never synchronised across processes; under mixed precision it bypasses Accelerate's autocast. The
engine therefore prepares a small `MethodDispatch` module around each arch, and the model calls the
arch through the `PreparedNetwork` that `BaseModel.add_network(name, arch)` returns.
"""

from functools import cache

from torch import nn


class MethodDispatch(nn.Module):
    """`dispatch("encode", x)` calls `arch.encode(x)`: one forward for every method of the arch."""

    def __init__(self, arch: nn.Module):
        super().__init__()
        self.arch = arch

    def forward(self, method: str, *args, **kwargs):
        return getattr(self.arch, method)(*args, **kwargs)


LIBRARIES = ("torch", "transformers")  # their methods (parameters, save_pretrained, ...) are not routed


@cache
def routes(arch_cls: type, name: str) -> bool:
    """Whether `handle.<name>(...)` runs through the prepared module: a method the arch's class names in
    `routed_methods` (a tuple of names), when it sets one; otherwise every public method written in the
    arch's own code (`forward`, `encode`, `decode`, ...), not one that torch or transformers provides
    (`parameters()`, `save_pretrained`, `train()`)."""
    named = getattr(arch_cls, "routed_methods", None)
    if named is not None:
        return name in named
    method = getattr(arch_cls, name, None)
    written_in = getattr(method, "__module__", None) or "builtins"
    return not name.startswith("_") and callable(method) and written_in.split(".")[0] not in LIBRARIES


class PreparedNetwork:
    """Stands in for an arch on the model. Calling the handle itself (`net(x)`) and the methods that
    `routes` names run through the prepared module's forward. Everything else, attributes such as
    `config` included, goes straight to the arch, which is also `handle.arch` for a call that must not go
    through DDP (a frozen pass that leaves no gradient). Until the engine has prepared the network, its
    method calls go to the arch directly (a call of the handle itself runs the arch's forward). Calls
    into an arch's submodules (`net.decoder(z)`) are not routed; call methods of the arch."""

    __slots__ = ("prepared", "arch", "routing")

    def __init__(self, prepared: nn.Module, arch: nn.Module, routing: bool = True):
        object.__setattr__(self, "prepared", prepared)
        object.__setattr__(self, "arch", arch)
        object.__setattr__(self, "routing", routing)  # False until the engine has prepared the network

    def __call__(self, *args, **kwargs):
        return self.prepared("__call__", *args, **kwargs)

    def __getattr__(self, name: str):
        value = getattr(self.arch, name)
        if (
            self.routing
            and callable(value)
            and not isinstance(value, nn.Module)
            and routes(type(self.arch), name)
        ):
            prepared = self.prepared

            def routed(*args, **kwargs):
                return prepared(name, *args, **kwargs)

            return routed
        return value

    def __setattr__(self, name, value):
        setattr(self.arch, name, value)

    def __repr__(self):
        return f"PreparedNetwork({type(self.arch).__name__})"


def handle_for(arch: nn.Module) -> PreparedNetwork:
    """A handle whose calls go to `arch` directly until `use_prepared` points it at the prepared module."""
    return PreparedNetwork(MethodDispatch(arch), arch, routing=False)


def use_prepared(handle: PreparedNetwork, prepared: nn.Module) -> None:
    object.__setattr__(handle, "prepared", prepared)
    object.__setattr__(handle, "routing", True)


def bare_arch(network) -> nn.Module:
    """The arch behind a handle, or the arch itself."""
    return network.arch if isinstance(network, PreparedNetwork) else network
