"""Keep the training DataLoader off the global random generators, so that resume is exact.

Creating a DataLoader iterator draws one number (the workers' base seed) from the loader's
`generator`, or from torch's global generator when it has none. An uninterrupted run makes that draw
at the start of the epoch, before any checkpoint of that epoch; a resumed run restores the global RNG
state from the checkpoint and then builds its `skip_first_batches` loader, drawing again. Every later
`torch.randn` of the model (diffusion noise, dropout, VAE posterior noise) is then shifted by one
draw, and the resumed weights drift away from the uninterrupted ones (3.7e-3 on a tiny LDM).

With its own generator, seeded from (seed, epoch) at every epoch, the loader never touches the global
RNG, and its workers' seeds are the same in an uninterrupted and a resumed epoch.
"""

import numpy as np
import torch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator whose state depends only on (seed, epoch)."""
    entropy = np.random.SeedSequence([int(seed) % 2**32, int(epoch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(entropy[0]) << 31 | int(entropy[1]) >> 1)


def seed_loader_for_epoch(loader, seed: int, epoch: int) -> None:
    """Give `loader` (a DataLoader, or Accelerate's wrapper of one) a fresh generator for `epoch`.

    Call it on the loader about to be iterated (after `skip_first_batches`, which copies the old one's
    generator) and before iterating it.
    """
    target = getattr(loader, "base_dataloader", loader)  # Accelerate's DataLoaderShard wraps a DataLoader
    if hasattr(target, "generator"):
        target.generator = epoch_generator(seed, epoch)
