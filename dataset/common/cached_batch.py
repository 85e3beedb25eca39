"""Batches copied out of the in-memory cache one key at a time, instead of item by item.

torch's `default_collate` builds a batch by stacking its items' arrays. When every item of a batch
is cached and needs no per-item work (no crop and no augmentation), the whole batch can come
straight out of one contiguous (N, C, *spatial) tensor per key, with one `index_select` per key.
The trainer's collate (engine/data.py) takes that path, and the batch is identical to
`default_collate`'s, and the items themselves are never made. On bench/data.py with the cache on and
0 workers this loads 17,000-24,000 pairs per second, 4-5x MONAI's CacheDataset. A plain DataLoader
still gets the items.
"""

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

ALIGN = 64  # bytes: every tensor of a batch's one storage starts on a cache line
# Batches alive at once in a training loop: the one being trained on, Accelerate's look-ahead (it
# fetches one batch early to know which is the last) and the one being made; and one to spare.
KEEP_BATCHES = 4


class FetchedItems(Sequence):
    """The items of one batched fetch (`dataset.__getitems__`), made only when they are read, with
    `collate()`: a faster way to batch them, straight from the cache, that gives the same result as
    `default_collate` without making the items at all (making them took 0.13 ms of a cached batch's
    0.9 ms on bench/data.py).

    A read-only sequence rather than a list, so that making the items can wait: `default_collate` and
    collates that index, iterate or zip it see the items; `list(items)` gives a list."""

    def __init__(self, make_items: Callable[[], list], collate: Callable[[], dict]):
        self._make_items, self._items = make_items, None
        self.collate = collate

    @property
    def items(self) -> list:
        if self._items is None:
            self._items = self._make_items()
        return self._items

    def __getitem__(self, index):
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"FetchedItems({self.items!r})"


class StackedCache:
    """The cached images and normalisation stats of a dataset, as one tensor per key.

    Made by `stack(items)` from `PreloadCache.items` (tuples `({key: image}, {key: stats}, extras)`).
    Each item's arrays become views of the stacked tensors, so memory does not double."""

    def __init__(self, images: dict[str, torch.Tensor], stats: dict[str, torch.Tensor]):
        self.images, self.stats = images, stats
        self.buffers = BatchBuffers()

    @classmethod
    def stack(cls, items: list) -> "StackedCache | None":
        """None when there is nothing cached, or the cached arrays of a key differ in shape or dtype
        (e.g. a crop dataset of images of several sizes)."""
        if not items:
            return None
        stores = []
        for part in (0, 1):  # images, then stats
            first = items[0][part]
            layout = {key: (array.shape, array.dtype) for key, array in first.items()}
            for item in items:
                if {key: (a.shape, a.dtype) for key, a in item[part].items()} != layout:
                    return None
            stores.append(
                {
                    key: torch.empty((len(items), *shape), dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
                    for key, (shape, dtype) in layout.items()
                }
            )
        for row, item in enumerate(items):
            for part, store in enumerate(stores):
                for key, array in item[part].items():
                    store[key][row] = torch.from_numpy(np.ascontiguousarray(array))
                    item[part][key] = store[key][row].numpy()
        return cls(*stores)

    def batch(self, indices: list[int], names: list[str], extras: list[dict]) -> dict:
        """What `default_collate` makes of the items `indices` (keys in the items' order)."""
        index = torch.as_tensor(indices)
        images, stats = _select_into_one_storage([self.images, self.stats], index, self.buffers)
        batch = dict(images)
        if extras and extras[0]:
            batch.update(default_collate(extras))
        batch["name"] = names
        batch["norm"] = stats
        return batch


def _select_into_one_storage(
    groups: list[dict[str, torch.Tensor]], index: torch.Tensor, buffers: "BatchBuffers"
) -> list[dict]:
    """The rows `index` of every tensor of `groups`, copied into views of one storage.

    One storage rather than one per tensor: a DataLoader worker hands each storage over as its own
    shared-memory segment, and with a batch of two images and two small stats tensors the segments'
    fixed cost is a tenth of the hand-over. In a worker the storage is new shared memory, as
    `default_collate` makes it, so handing it over copies nothing; in the main process it is a storage
    of an earlier batch that nothing holds any more, when there is one (`BatchBuffers`).
    """
    layout, size = [], 0
    for group in groups:
        for store in group.values():
            size = -(-size // ALIGN) * ALIGN
            layout.append((size, (len(index), *store.shape[1:])))
            size += len(index) * store[0].numel() * store.element_size()
    if get_worker_info():
        storage = torch.UntypedStorage._new_shared(size)
    else:
        claim = buffers.take(size)  # a reference that keeps other threads off it until the views exist
        storage = claim.untyped_storage()
    places = iter(layout)
    out = []
    for group in groups:
        selected = {}
        for key, store in group.items():
            offset, shape = next(places)
            view = torch.empty(0, dtype=store.dtype).set_(storage, offset // store.element_size(), shape)
            selected[key] = torch.index_select(store, 0, index, out=view)
        out.append(selected)
    return out


class BatchBuffers:
    """Storages of the last few batches, handed out again once nothing else holds them.

    A batch of images is megabytes, and glibc gives a new allocation of that size fresh pages from the
    kernel as often as not; faulting them in costs more than copying the batch (bench/data.py with the
    cache and 0 workers: 13,300-16,600 pairs/s recycling, 8,700-9,900 allocating, in the same runs).
    torch's allocator keeps no CPU cache, so this keeps one. A storage is reused only when this pool
    holds its one reference: every tensor that views it (the batch, its slices, a numpy array of it,
    a tensor autograd saved for backward) counts, which is how torch's CUDA-graph trees
    (torch/_inductor/cudagraph_trees.py) tell a dead output from a live one.
    """

    def __init__(self, keep: int = KEEP_BATCHES):
        self.keep = keep
        self.storages: list[torch.UntypedStorage] = []
        self.lock = threading.Lock()  # two threads must not both take the same idle storage

    def take(self, size: int) -> torch.Tensor:
        """A byte tensor over an idle storage of `size` bytes, or over a new one that replaces the
        oldest kept. The tensor claims the storage until the caller's own views of it exist."""
        with self.lock:
            for storage in self.storages:
                if storage.nbytes() == size and torch._C._storage_Use_Count(storage._cdata) == 1:
                    break
            else:
                storage = torch.UntypedStorage(size)
                self.storages = [*self.storages, storage][-self.keep :]
            return torch.empty(0, dtype=torch.uint8).set_(storage)

    def __getstate__(self) -> dict:
        return {"keep": self.keep}  # a DataLoader worker or a copy of the dataset starts its own

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["keep"])
