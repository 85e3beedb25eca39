"""Gradient checkpointing for the blocks of a library network that has no switch for it.

A checkpointed block keeps only its inputs in the forward pass and runs again in the backward pass to
rebuild its activations: less memory for one more forward. diffusers' networks have their own switch
(`enable_gradient_checkpointing`); MONAI 1.6's `DiffusionModelUNet` has none, and diffusers' bare
`Encoder` / `Decoder` (plain modules, not `ModelMixin`s) have the flag without the function it calls.
"""

import functools

import torch
from torch.utils.checkpoint import checkpoint


def checkpoint_blocks(blocks) -> None:
    """Checkpoint each block's forward. The block's class is swapped for a subclass rather than the block
    wrapped in another module, so the parameter names (and every saved checkpoint) stay the same, and a
    deep copy (the EMA copy) checkpoints its own blocks."""
    for block in blocks:
        block.__class__ = _checkpointed(type(block))


def enable_diffusers_flag(module: torch.nn.Module) -> None:
    """Turn on the `gradient_checkpointing` flag of a diffusers `Encoder` / `Decoder`, with the function
    their forward calls when it is on (what `ModelMixin.enable_gradient_checkpointing` sets)."""
    module.gradient_checkpointing = True
    module._gradient_checkpointing_func = _checkpoint_call


def _checkpoint_call(module, *args, **kwargs):
    # use_reentrant=False: the recommended mode, which also passes keyword arguments and frozen inputs
    return checkpoint(module.__call__, *args, use_reentrant=False, **kwargs)


@functools.cache
def _checkpointed(cls: type) -> type:
    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():  # inference keeps nothing for a backward pass anyway
            return cls.forward(self, *args, **kwargs)
        return checkpoint(functools.partial(cls.forward, self), *args, use_reentrant=False, **kwargs)

    return type(f"Checkpointed{cls.__name__}", (cls,), {"forward": forward})
