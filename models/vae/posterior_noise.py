"""The posterior noise of a VAE's training step, the same whatever the process count or a resume.

Drawn for the whole global batch from (seed, position in training) and sliced to this process's share:
N processes with batch b then sample exactly the noise of one process with batch N * b, and a resumed
run the noise of an uninterrupted one. Torch's global generator would give each process its own noise
and shift with every other draw.
"""

import torch


def global_batch_noise(model, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like this process's `like`, part of one draw for the global batch."""
    processes, rank = model.accelerator.num_processes, model.accelerator.process_index
    generator = torch.Generator().manual_seed(
        hash((model.opt["seed"], model.state.epoch, model.state.batches_in_epoch)) % 2**63
    )
    full = torch.randn((processes * like.shape[0], *like.shape[1:]), generator=generator)
    return full[rank * like.shape[0] : (rank + 1) * like.shape[0]].to(like.device, like.dtype)
