"""A DataLoader from a `datasets.<phase>` block."""

import os
import re

import torch
from torch.utils.data import DataLoader, default_collate

from dataset import create_dataset, find_dataset_class
from engine.run.paths import safe_name
from utils.errors import DataError
from utils.errors.in_use import block_in_use

_UNEQUAL = re.compile(
    r"stack expects each tensor to be equal size, but got (\[[\d, ]*\]) at entry \d+ and (\[[\d, ]*\])"
)


class NamedCollate:
    """torch's collate, whose failure on items of different sizes names the dataset block and the sizes
    (torch says only "stack expects each tensor to be equal size"). A class, so that workers can pickle it.
    A batched fetch whose list of items has its own `collate()` (dataset/common/cached_batch.py: a batch
    copied straight out of a dataset's cache) is batched by it."""

    def __init__(self, phase: str, kind: str):
        self.phase, self.kind = phase, kind

    def __call__(self, items):
        own_collate = getattr(items, "collate", None)
        if own_collate is not None:
            return own_collate()
        try:
            return default_collate(items)
        except RuntimeError as error:
            sizes = _UNEQUAL.search(str(error))
            if sizes is None:
                raise
            raise DataError(
                f"The items of 'datasets.{self.phase}' ({self.kind}) differ in size ({sizes.group(1)} and "
                f"{sizes.group(2)}), so one batch cannot hold them; give items of one size (image_size / "
                f"patch_size), or set 'datasets.{self.phase}.batch_size: 1'."
            ) from None


def build_dataloader(opt, phase: str, run_dir: str) -> DataLoader:
    block = opt["datasets"][phase]
    # Datasets that split one folder into train and val write the split into the run folder and
    # reread it on resume; they learn their phase from the block's name.
    block["phase"] = phase
    if "split_file" in getattr(find_dataset_class(block["type"]), "config_keys", ()) and not block.get(
        "split_file"
    ):
        block["split_file"] = os.path.join(run_dir, f"split_{safe_name(block['type'])}.json")
    with block_in_use(f"datasets.{phase}", block["type"]):
        dataset = create_dataset(block)
    is_train = phase == "train"
    batch_size = block.get("batch_size") or (
        opt["train"]["batch_size"] if is_train else opt["val"]["batch_size"]
    )
    shuffle = block.get("use_shuffle")
    drop_last = block.get("drop_last")
    workers = block.get("num_workers", 0)
    sampler = None
    if is_train and hasattr(dataset, "sample_weights") and dataset.sample_weights() is not None:
        # Seeded here so that Accelerate, under several processes, does not draw its seed from torch's
        # global generator; the loop reseeds it from (seed, epoch) at every epoch (engine/loader_rng.py).
        generator = torch.Generator().manual_seed(opt["seed"])
        weights = torch.as_tensor(dataset.sample_weights(), dtype=torch.double)
        sampler = torch.utils.data.WeightedRandomSampler(weights, len(weights), generator=generator)
        shuffle = False
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=is_train if shuffle is None else shuffle,
        sampler=sampler,
        drop_last=(is_train and len(dataset) >= batch_size) if drop_last is None else drop_last,
        num_workers=workers,
        collate_fn=NamedCollate(phase, block["type"]),
        pin_memory=block.get("pin_memory", False),
        persistent_workers=bool(block.get("persistent_workers")) and workers > 0,
        prefetch_factor=block.get("prefetch_factor") if workers > 0 else None,
    )
