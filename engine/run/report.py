"""The lines a run prints before its first step, so that a start is never silent.

The engine calls `announce_run` once its Accelerator and `train.log` exist (where the run writes, on
what device, how many processes) and `describe_setup` once the networks and data are ready (the model,
each network's parameter count, the data sizes). Both write through the model's logger, so
`train.log` holds the same lines from the start, not from the first checkpoint. Preparation that
takes a while (ray-tracing a PSF cache, encoding latents) shows its own bar (`utils.cli.console`).
"""

import os


def count_parameters(module) -> tuple[int, int]:
    """(all, trainable) parameter counts of a module."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def human_count(n: int) -> str:
    """12_345_678 -> '12.3M': a parameter count at a glance."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def device_line(accelerator) -> str:
    device = accelerator.device
    name = str(device)
    if device.type == "cuda":
        import torch

        name += f" ({torch.cuda.get_device_name(device)})"
    processes = accelerator.num_processes
    return (
        f"Device: {name}, {processes} process{'es' if processes != 1 else ''}, "
        f"mixed precision {accelerator.mixed_precision}"
    )


def announce_run(model) -> None:
    """Where the run writes and what it runs on (called before anything slow happens)."""
    if not model.accelerator.is_main_process:
        return
    what = "Training" if model.is_train else "Testing"
    model.logger.info(f"{what} {model.opt['name']} in {os.path.abspath(model.run_dir)}")
    model.logger.info(device_line(model.accelerator))


def _loader_line(phase: str, loader) -> str:
    dataset = loader.dataset
    try:
        items = f"{len(dataset)} items"
    except TypeError:  # an iterable dataset has no length
        items = "streamed items"
    batch = loader.batch_size or getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    batches = len(loader)
    return (
        f"{phase} {items} ({type(dataset).__name__}), batch {batch or '-'} per process, "
        f"{batches} batch{'es' if batches != 1 else ''} per process"
    )


def describe_setup(model) -> None:
    """The model, its networks with their parameter counts, and the data sizes."""
    if not model.accelerator.is_main_process:
        return
    networks = []
    for name, handle in model.named_networks:
        arch = handle.arch
        total, trainable = count_parameters(arch)
        frozen = f", {human_count(total - trainable)} frozen" if total != trainable else ""
        networks.append(f"{name} {type(arch).__name__} {human_count(total)} parameters{frozen}")
    model.logger.info(f"Model: {type(model).__name__}; " + "; ".join(networks))
    loaders = [("train", model.train_loader), ("val", model.val_loader)]
    data = [_loader_line(phase, loader) for phase, loader in loaders if loader is not None]
    if data:
        model.logger.info("Data: " + "; ".join(data))
