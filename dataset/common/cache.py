"""An in-memory cache of the first `cache_rate` of a dataset's items, filled before DataLoader workers start.

Indices 0 .. round(cache_rate * len) - 1 are cached, as MONAI's CacheDataset does: the deterministic part
of loading (decoded, checked, normalised, resized); random crops and augmentation run on every access.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from utils.cli.console import preparation_bar


class PreloadCache:
    """Filled up front rather than lazily in `__getitem__`: each DataLoader worker is a forked copy of the
    dataset, so a lazy cache fills separately in every worker (memory times `num_workers`, each worker
    seeing a different subset), is lost at each epoch's end unless `persistent_workers`, and makes
    `cache_rate` meaningless. Filled in the process that builds the dataset, the arrays exist once;
    forked workers share their pages copy-on-write, and what an item returns is identical for 0 or N
    workers. The cache never grows after construction. Under the `spawn` start method (macOS, Windows)
    each worker receives a pickled copy instead: correct, but memory times the number of workers.

    The dataset's `dataset[i]` returns a copy of a cached item, so a caller that modifies it in place
    cannot change the cache; DataLoader's batched fetch (`__getitems__`) skips that copy because its
    collate copies the items into new batch tensors anyway."""

    def __init__(self, compute: Callable[[int], object], length: int, cache_rate: float, threads: int = 4):
        self.count = int(round(cache_rate * length))
        # Threads rather than processes: decoding and numpy release the GIL, and results stay in this process.
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            loading = pool.map(compute, range(self.count))
            if self.count:  # the wait before training says what it is
                loading = preparation_bar(
                    loading, self.count, f"loading {self.count} items into memory (cache_rate)"
                )
            self.items = list(loading)

    def get(self, idx: int):
        """The cached value of item `idx`, or None when it is not cached."""
        return self.items[idx] if idx < self.count else None

    def __len__(self) -> int:
        return self.count
