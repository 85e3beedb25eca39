"""The speed options of `train`: channels-last memory and torch.compile (docs/benchmarks.md, "Stage 1
speed options", says what each gains where). Both are off by default, and then nothing here runs.

channels_last  every 4D (5D) parameter and batch tensor is kept NHWC (NDHWC); convolutions then run
               without layout conversions on oneDNN CPUs and tensor-core GPUs. Saved weights stay
               contiguous (a state-dict hook), since safetensors refuses strided tensors.
compile        each network's prepared module is compiled in place (`nn.Module.compile`), so every
               method the model routes through it (`encode`, `decode`, a call) is compiled and the
               state-dict keys stay those of the arch (no `_orig_mod.` prefix in saved weights).
"""

import torch


def memory_format(tensor: torch.Tensor):
    """The channels-last format of a 4D or 5D tensor; None for any other rank."""
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(tensor.dim())


def to_channels_last(module: torch.nn.Module) -> None:
    """Make every 4D/5D parameter and buffer of `module` channels-last, in place (the tensors keep
    their identity, so optimizers built before or after see the same parameters)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        fmt = memory_format(tensor)
        if fmt is not None:
            tensor.data = tensor.data.contiguous(memory_format=fmt)
    module.register_state_dict_post_hook(_contiguous_state)


def _contiguous_state(module, state_dict, prefix, local_metadata) -> None:
    # safetensors writes only contiguous tensors; the copy is made at save time, the weights stay NHWC.
    for key, value in state_dict.items():
        if key.startswith(prefix) and torch.is_tensor(value) and not value.is_contiguous():
            state_dict[key] = value.contiguous()


def channels_last_batch(batch):
    """The batch with every 4D/5D floating-point tensor channels-last (other entries as they are)."""
    if torch.is_tensor(batch):
        fmt = memory_format(batch)
        return batch.contiguous(memory_format=fmt) if fmt is not None and batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {k: channels_last_batch(v) for k, v in batch.items()}
    if type(batch) in (list, tuple):
        return type(batch)(channels_last_batch(v) for v in batch)
    return batch


def apply_speed_options(model) -> None:
    """Before Accelerate prepares the networks: channels-last weights, compiled dispatch modules."""
    train = model.opt["train"]
    for _, handle in model.named_networks:
        if train.get("channels_last"):
            to_channels_last(handle.arch)
        if train.get("compile"):
            handle.prepared.compile()
