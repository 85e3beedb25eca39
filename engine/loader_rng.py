"""Keep the training DataLoader and its samplers off the global random generators, so that resume is exact.

`seed_loader_for_epoch` gives the loader and its samplers generators seeded from (seed, epoch) at every
epoch: they never touch the global RNG, and their draws are the same in an uninterrupted and a resumed
epoch.
"""

import numpy as np
import torch

# Separate streams of one (seed, epoch): the workers' base seed and the samplers' indices.
LOADER_STREAM, SAMPLER_STREAM = 0, 1


def epoch_seed(seed: int, epoch: int, stream: int = LOADER_STREAM) -> int:
    """A 63-bit seed that depends only on (seed, epoch, stream)."""
    key = [int(seed) % 2**32, int(epoch)] + ([int(stream)] if stream else [])
    entropy = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
    return int(entropy[0]) << 31 | int(entropy[1]) >> 1


def epoch_generator(seed: int, epoch: int, stream: int = LOADER_STREAM) -> torch.Generator:
    """A generator whose state depends only on (seed, epoch, stream)."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, stream))


def seed_loader_for_epoch(loader, seed: int, epoch: int) -> None:
    """Give `loader` (a DataLoader, or Accelerate's wrapper of one) and its samplers fresh generators for `epoch`.

    Call it on the loader about to be iterated (after `skip_first_batches`, which copies the old one's
    generator) and before iterating it.
    """
    target = getattr(loader, "base_dataloader", loader)  # Accelerate's DataLoaderShard wraps a DataLoader
    # Creating an iterator draws one number (the workers' base seed) from the loader's `generator`, or
    # from torch's global generator when it has none. An uninterrupted run draws at the start of the
    # epoch, before any checkpoint of it; a resumed run restores the global RNG from the checkpoint and
    # then builds its `skip_first_batches` loader, drawing again. Every later `torch.randn` of the model
    # (diffusion noise, dropout, VAE posterior noise) is then shifted by one draw, and the resumed weights
    # drift away from the uninterrupted ones (3.7e-3 on a tiny LDM).
    if hasattr(target, "generator"):
        target.generator = epoch_generator(seed, epoch)
    # A sampler's own generator (a `WeightedRandomSampler` for a dataset's `sample_weights()`) is not in
    # the checkpoint: seeded once, it restarts from the seed in a resumed run and replays the first
    # epoch's indices in a later epoch. Seeded per epoch, each epoch's indices depend on the epoch alone.
    for sampler in samplers_of(target):
        if not hasattr(sampler, "generator"):
            continue
        if isinstance(sampler.generator, torch.Generator):
            # In place: under several processes Accelerate keeps this very object as the loader's
            # `synchronized_generator` and copies process 0's state into it; a new object would escape that.
            sampler.generator.manual_seed(epoch_seed(seed, epoch, SAMPLER_STREAM))
        else:  # None: the sampler would draw its seed from torch's global generator
            sampler.generator = epoch_generator(seed, epoch, SAMPLER_STREAM)


def samplers_of(loader) -> list:
    """Every sampler and batch sampler below `loader`, through the wrappers Accelerate puts around them.

    `skip_first_batches` wraps the batch sampler in a `SkipBatchSampler`, several processes in a
    `BatchSamplerShard` (both keep it as `.batch_sampler`); a `BatchSampler` keeps its sampler as `.sampler`;
    Accelerate may pass a batch sampler as the loader's `sampler`.
    """
    found, seen = [], set()
    pending = [getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)]
    while pending:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        found.append(item)
        pending += [getattr(item, "sampler", None), getattr(item, "batch_sampler", None)]
    return found
