"""Throughput of TIFPairDataset against the MONAI pipeline of PTI-LDM-VAE (not a test).

Both load the same folder pair of 256x256 float32 TIFs, bring each image to channel-first 256x256
(`patch_size: 256`; MONAI's `LoadImaged`, `EnsureChannelFirstd`, `Resized`) and batch 16 pairs, with
0 and 2 DataLoader workers, without and with an in-memory cache (`cache_rate: 1.0`; MONAI's
`CacheDataset`). MONAI reads the TIFs with its `PILReader` (its `ITKReader`, which PTI-LDM-VAE would
pick when itk is installed, is not installed here). Workers persist across epochs for both, so
worker start-up is not counted; after a warm-up epoch each, the two alternate, each timed over whole
epochs for at least `--min-seconds`, and the median of `--epochs` such timings counts. Ours is batched
by the trainer's collate (engine/data.py), which copies a cached batch out in one step per key. With 0 workers it also times `dataset[i]` alone, without batching.
Prints pairs per second (a pair is two images) for each setting and the ratio ours / MONAI; the
target is >= 2.

    python bench/data.py [--pairs 256] [--epochs 3] [--min-seconds 1] [--batch-size 16] [--normalize none] [--threads N]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial

import numpy as np
import tifffile
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.tif_dataset import TIFPairDataset  # noqa: E402
from engine.data import NamedCollate  # noqa: E402

SIZE = 256


def write_pairs(root: str, count: int) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    gt_dir, cond_dir = os.path.join(root, "edente"), os.path.join(root, "dente")
    os.makedirs(gt_dir), os.makedirs(cond_dir)
    for i in range(count):
        image = rng.random((SIZE, SIZE), dtype=np.float32)
        tifffile.imwrite(os.path.join(gt_dir, f"p{i // 8:03d}_slice{i % 8}.tif"), image)
        tifffile.imwrite(os.path.join(cond_dir, f"p{i // 8:03d}_slice{i % 8}.tif"), image + 1)
    return gt_dir, cond_dir


def ours(gt_dir, cond_dir, cache: bool, normalize: str):
    opt = {"gt_dir": gt_dir, "cond_dir": cond_dir, "patch_size": SIZE, "normalize": normalize, "phase": "val"}
    dataset = TIFPairDataset({**opt, "cache_rate": 1.0 if cache else 0.0})
    return dataset, partial(torch.utils.data.DataLoader, collate_fn=NamedCollate("val", "TIFPairDataset"))


def monai(gt_dir, cond_dir, cache: bool, normalize: str):
    from monai.data import CacheDataset, DataLoader, Dataset, PILReader
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized

    keys = ["gt", "cond"]
    transform = Compose(
        [
            LoadImaged(keys=keys, reader=PILReader(), image_only=True),
            EnsureChannelFirstd(keys=keys, channel_dim="no_channel"),
            Resized(keys=keys, spatial_size=(SIZE, SIZE)),
        ]
    )
    names = sorted(os.listdir(gt_dir))
    items = [{"gt": os.path.join(gt_dir, n), "cond": os.path.join(cond_dir, n)} for n in names]
    if cache:
        dataset = CacheDataset(items, transform, cache_rate=1.0, num_workers=2, progress=False)
    else:
        dataset = Dataset(items, transform)
    return dataset, DataLoader


def epoch_rate(loader, min_seconds: float = 0.0) -> float:
    """Pairs per second over whole epochs, as many as take `min_seconds` (a cached epoch takes 20 ms,
    too short to time alone)."""
    start = time.perf_counter()
    count = 0
    while True:
        count += sum(len(batch["gt"]) for batch in loader)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed


def item_rate(dataset) -> float:
    """Items per second of `dataset[i]` alone: the pipeline without batching or worker transfer."""
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.perf_counter() - start)


def compare(gt_dir, cond_dir, cache: bool, workers: int, args) -> dict:
    """Rates of both pipelines, epochs alternating (ours, MONAI, ours, ...): the machine's drift hits both."""
    result = {}
    loaders = {}
    for name, build in (("ours", ours), ("MONAI", monai)):
        start = time.perf_counter()
        dataset, loader_class = build(gt_dir, cond_dir, cache, args.normalize)
        result[f"{name} build"] = time.perf_counter() - start
        if workers == 0:
            result[f"{name} item"] = item_rate(dataset)
        loaders[name] = loader_class(
            dataset, batch_size=args.batch_size, num_workers=workers, persistent_workers=workers > 0
        )
        epoch_rate(loaders[name])  # warm-up: worker start, first imports, page cache
    rates = {name: [] for name in loaders}
    for _ in range(args.epochs):
        for name, loader in loaders.items():
            rates[name].append(epoch_rate(loader, args.min_seconds))
    result.update({name: statistics.median(values) for name, values in rates.items()})
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time whole epochs for at least this")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--normalize", default="none", help="our normalisation (MONAI's pipeline has none)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the main process (default: torch's choice)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        # On a small busy machine, batching (torch.stack in collate) on a thread pool is much slower than
        # on one thread, and it dominates both pipelines; --threads 1 times the datasets rather than that.
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")
    print(
        f"{args.pairs} pairs of {SIZE}x{SIZE} float32 TIFs, batch {args.batch_size}; pairs/s (median of "
        f"{args.epochs} timings of at least {args.min_seconds:g} s)"
    )
    print(
        f"{'workers':>7} {'cache':>5} {'ours':>8} {'MONAI':>8} {'ratio':>6}   "
        f"{'items/s without DataLoader (ours / MONAI)':>42}   build s (ours / MONAI)"
    )
    with tempfile.TemporaryDirectory() as root:
        gt_dir, cond_dir = write_pairs(root, args.pairs)
        for cache in (False, True):
            for workers in (0, 2):
                r = compare(gt_dir, cond_dir, cache, workers, args)
                items = f"{r['ours item']:.0f} / {r['MONAI item']:.0f}" if workers == 0 else "-"
                print(
                    f"{workers:>7} {'yes' if cache else 'no':>5} {r['ours']:>8.0f} {r['MONAI']:>8.0f} "
                    f"{r['ours'] / r['MONAI']:>5.1f}x   {items:>42}   "
                    f"{r['ours build']:.2f} / {r['MONAI build']:.2f}"
                )


if __name__ == "__main__":
    main()
