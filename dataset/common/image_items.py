"""`ImageItemsDataset`: what the TIF, image-folder and manifest datasets share.

A subclass lists its items as `Record`s in `find_records` (a few image files read together, plus any
per-item values it adds); this class does the rest in one place so the datasets cannot drift apart.
An item is `{<key>: float32 (C, *spatial) tensor for each image, 'name': str, 'norm': {<key>: float64
[shift, scale]}, ...extras}`; `denormalize(tensor, item_or_batch, key)` maps model outputs back to the
original intensities.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils import data

from dataset.common import files
from dataset.common.augmentation import PairedAugmentation
from dataset.common.cache import PreloadCache
from dataset.common.cached_batch import FetchedItems, StackedCache
from dataset.common.geometry import crop, crop_window, resize
from dataset.common.image_keys import IMAGE_KEYS, SPLIT_KEYS
from dataset.common.normalization import Normalization, denormalize
from dataset.common.options import check_keys, plain, read_key, read_pair, read_phase, read_size, where_of
from dataset.common.splits import check_no_leak, compile_split_by, group_of, load_or_draw_split
from utils.config.schema import Key
from utils.errors import ConfigError, DataError


@dataclass
class Record:
    name: str  # unique within the dataset; what split_by reads and results are written as
    paths: dict[str, Path]  # item key -> image file
    extras: dict = field(default_factory=dict)  # values the subclass adds to the item (labels, latent path)
    group: str | None = None  # the split group when the subclass knows it (a manifest's group column)


class ImageItemsDataset(data.Dataset):
    """An item is a few image files read together (`{'gt': a.tif}`, or `{'gt': edente/a.tif, 'cond':
    dente/a.tif}`), plus any per-item values a subclass adds (labels, a latent):

        build:   check keys -> records of this phase's split -> probe every header (dtype, rank, shapes)
                 -> cache the first `cache_rate` of the items
        item:    read -> finite check -> channel-first -> normalise -> resize   (cached)
                 -> shared crop -> shared augmentation (train only)             (every access)
    """

    config_keys: dict[str, Key] = {**IMAGE_KEYS, **SPLIT_KEYS}
    # Keys that name a separate validation source; they exclude train_split.
    val_keys: tuple[str, ...] = ()

    def __init__(self, opt):
        opt = plain(opt)
        self.where = where_of(opt, type(self).__name__)
        check_keys(opt, self.config_keys, self.where)
        self.phase = read_phase(opt, self.where)
        self._read_image_options(opt)
        records, sources = self.find_records(opt)
        self.records = self._select_split(opt, records, sources)
        self._probe()
        cache_rate = self.read(opt, "cache_rate")
        self.cache = PreloadCache(self._load, len(self.records), cache_rate)
        self.stacked_cache = StackedCache.stack(self.cache.items)

    # ------------------------------------------------------------------ for subclasses

    def read(self, opt: dict, name: str):
        """The value of the key `name` as this class declares it in `config_keys`."""
        return read_key(opt, name, self.config_keys, self.where)

    def find_records(self, opt: dict) -> tuple[list[Record], list[str]]:
        """(this phase's records before any train_split, the folders or files they come from)."""
        raise NotImplementedError

    def load_extras(self, record: Record) -> dict:
        """Values added to the item beside its images; cached with them."""
        return dict(record.extras)

    # ------------------------------------------------------------------ dataset protocol

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int) -> dict:
        return self._item(idx, protect_cache=True)

    def __getitems__(self, indices: list[int]) -> Sequence[dict]:
        """DataLoader's batched fetch. Its collate copies the items into new batch tensors, so cached
        arrays can be handed over without the defensive copy that `__getitem__` makes (2.4x faster).
        When the whole batch is cached and needs no per-item work, the items are made only if read,
        and the trainer's collate copies the batch straight out of the cache (cached_batch.py)."""
        if type(self).__getitem__ is not ImageItemsDataset.__getitem__:
            return [self[idx] for idx in indices]  # a subclass's own items
        if not self._batch_from_cache(indices):
            return [self._item(idx, protect_cache=False) for idx in indices]
        names = [self.records[idx].name for idx in indices]
        extras = [self.cache.get(idx)[2] for idx in indices]
        return FetchedItems(
            lambda: [self._item(idx, protect_cache=False) for idx in indices],
            lambda: self.stacked_cache.batch(indices, names, extras),
        )

    def _batch_from_cache(self, indices: list[int]) -> bool:
        per_item_work = (self.patch_size is not None and self.patch_mode == "crop") or (
            self.phase == "train" and self.augment.active
        )
        return (
            self.stacked_cache is not None
            and not per_item_work
            and type(self)._item is ImageItemsDataset._item
            and bool(indices)
            and max(indices) < len(self.cache)
        )

    def _item(self, idx: int, protect_cache: bool) -> dict:
        record = self.records[idx]
        cached = self.cache.get(idx)
        images, stats, extras = cached if cached is not None else self._load(idx)
        if images and self.patch_size is not None and self.patch_mode == "crop":
            first = next(iter(images.values()))
            window = crop_window(first.shape[1:], self.patch_size, self.phase == "train", record.name)
            images = {key: crop(image, window) for key, image in images.items()}
        if images and self.phase == "train" and self.augment.active:
            images = self.augment(images)
        protect = protect_cache and cached is not None
        tensors = {key: _own_tensor(image, protect) for key, image in images.items()}
        stats = {key: torch.from_numpy(value.copy()) for key, value in stats.items()}
        if protect:
            extras = {
                key: value.clone() if torch.is_tensor(value) else value for key, value in extras.items()
            }
        return {**tensors, **extras, "name": record.name, "norm": stats}

    def denormalize(self, image, item: dict, key: str | None = None, foreground=None):
        """`image` (an item's or a batch's tensor) in the original intensities of `item`'s image `key`.

        foreground: for `zscore_foreground`, a boolean mask of where `image` is not background (e.g.
        `item[key] != 0`); elsewhere the `background` value is put back. See `normalization.denormalize`.
        """
        key = key or next(iter(self.records[0].paths))
        return denormalize(image, item["norm"][key], foreground, self.normalization.background)

    # ------------------------------------------------------------------ building

    def _read_image_options(self, opt: dict) -> None:
        where = self.where
        keys = self.config_keys
        self.spatial_dims = int(self.read(opt, "spatial_dims"))
        self.channels = int(self.read(opt, "channels"))
        self.patch_size = read_size(opt, "patch_size", self.spatial_dims, where)
        self.patch_mode = self.read(opt, "patch_mode")
        self.normalization = Normalization(
            mode=self.read(opt, "normalize"),
            percentiles=read_pair(opt, "percentiles", keys["percentiles"].default, where),
            value_range=read_pair(opt, "value_range", keys["value_range"].default, where),
            norm_range=read_pair(opt, "norm_range", keys["norm_range"].default, where),
            background=self.read(opt, "background"),
        )
        low, high = self.normalization.percentiles
        if not 0 <= low < high <= 100:
            raise ConfigError(
                f"'percentiles' in {where} is [{low}, {high}]; it needs 0 <= low < high <= 100."
            )
        self.augment = PairedAugmentation(opt.get("augment"), where)

    def _select_split(self, opt: dict, records: list[Record], sources: list[str]) -> list[Record]:
        names = [r.name for r in records]
        if len(set(names)) != len(names):
            seen = set()
            twice = next(n for n in names if n in seen or seen.add(n))
            files_of = [str(p) for r in records if r.name == twice for p in r.paths.values()]
            raise DataError(
                f"Two files share the name '{twice}' ({', '.join(files_of)}); rename one of them."
            )
        train_split = self.read(opt, "train_split")
        split_file = opt.get("split_file")
        has_val_source = any(opt.get(key) is not None for key in self.val_keys)
        if train_split is None:
            if self.phase != "train" and not has_val_source:
                check_no_leak(split_file, sources, self.where)
            return records
        if has_val_source:
            raise ConfigError(
                f"{self.where} sets both train_split and {'/'.join(self.val_keys)}; use one way to choose "
                "the "
                "validation data."
            )
        if not 0 < train_split < 1:
            raise ConfigError(
                f"'train_split' in {self.where} is {train_split}; it must be between 0 and 1 (exclusive)."
            )
        split_by = opt.get("split_by")
        pattern = compile_split_by(split_by, self.where)
        groups = [
            r.group
            if pattern is None and r.group is not None
            else group_of(r.name, pattern, str(next(iter(r.paths.values()), r.name)))
            for r in records
        ]
        seed = int(self.read(opt, "seed"))
        split = load_or_draw_split(
            names,
            groups,
            train_split=train_split,
            seed=seed,
            split_by=split_by,
            split_file=split_file,
            sources=sources,
        )
        wanted = set(split["train" if self.phase == "train" else "val"])
        return [r for r in records if r.name in wanted]

    def _probe(self) -> None:
        """Every header read once: a corrupt file, a wrong dtype or rank, mixed shapes fail here, by name."""
        self.channel_axes: list[dict[str, int | None]] = []
        self.shapes: list[dict[str, tuple[int, ...]]] = []
        self.raw_pixels: list[dict[str, files.RawPixels | None]] = []
        known = files.KnownHeaders()
        for record in self.records:
            axes, shapes, raw = {}, {}, {}
            for key, path in record.paths.items():
                header = files.probe(path, self.channels, known)
                files.check_dtype(header.dtype, path)
                axes[key] = files.channel_axis(header.shape, path, self.spatial_dims, self.channels)
                shapes[key] = files.channel_first_shape(header.shape, axes[key])
                raw[key] = header.raw
            self.channel_axes.append(axes)
            self.shapes.append(shapes)
            self.raw_pixels.append(raw)
        self._check_shapes()

    def _check_shapes(self) -> None:
        by_file = [
            (shape, path)
            for rec, shapes in zip(self.records, self.shapes)
            for path, shape in zip(rec.paths.values(), shapes.values())
        ]
        if not by_file:
            return
        if self.patch_size is None:
            first_shape, first_path = by_file[0]
            for shape, path in by_file[1:]:
                if shape != first_shape:
                    raise DataError(
                        f"'{path}' has shape {shape} but '{first_path}' has {first_shape}; images of "
                        "different "
                        "sizes cannot be batched, so set patch_size (with patch_mode resize or crop)."
                    )
        elif self.patch_mode == "crop":
            for shape, path in by_file:
                if any(s > n for s, n in zip(self.patch_size, shape[1:])):
                    raise DataError(
                        f"'{path}' has spatial shape {shape[1:]}, smaller than patch_size {self.patch_size}; "
                        "use patch_mode: resize or a smaller patch_size."
                    )
            # One crop window serves all images of an item, so they must share a spatial shape.
            for record, shapes in zip(self.records, self.shapes):
                spatial = {key: shape[1:] for key, shape in shapes.items()}
                if len(set(spatial.values())) > 1:
                    listed = ", ".join(f"'{record.paths[k]}' {s}" for k, s in spatial.items())
                    raise DataError(
                        f"The images of '{record.name}' differ in size ({listed}); patch_mode crop needs "
                        "them equal (patch_mode resize does not)."
                    )

    def _load(self, idx: int):
        """The deterministic part of an item: ({key: float32 array}, {key: float64 stats}, extras)."""
        record = self.records[idx]
        images, stats = {}, {}
        for key, path in record.paths.items():
            array = files.read(path, self.channels, self.raw_pixels[idx][key])
            files.check_dtype(array.dtype, path)
            files.check_finite(array, path)
            array = files.to_channel_first(array, self.channel_axes[idx][key])
            if array.shape != self.shapes[idx][key]:
                raise DataError(
                    f"'{path}' decodes to shape {array.shape}, not the {self.shapes[idx][key]} its "
                    "header gave when the dataset was built; was it changed?"
                )
            image, stats[key] = self.normalization(array)
            if self.patch_size is not None and self.patch_mode == "resize":
                image = resize(image, self.patch_size)
            images[key] = image
        return images, stats, self.load_extras(record)


def _own_tensor(image: np.ndarray, copy: bool) -> torch.Tensor:
    """A tensor of `image`; a copy when it may be a view of the cache and the caller may modify it in place."""
    return torch.from_numpy(np.array(image, order="C") if copy else np.ascontiguousarray(image))
