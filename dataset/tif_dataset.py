"""Folders of TIF images or volumes: one folder for a VAE (`TIFFolderDataset`), two folders paired by name
(`TIFPairDataset`).

Items: `{gt_key: target, lq_key: condition, 'name': 'p01_slice003', 'norm': {...}}`, float32 (C, H, W) or
(C, D, H, W). Reading, checks, normalisation, splits, augmentation and caching live in `dataset/common/`;
docs/data.md has the whole list of keys.
"""

import logging
from pathlib import Path

from dataset.common.files import TIF_SUFFIXES, list_files, relative_name
from dataset.common.image_items import ImageItemsDataset, Record
from dataset.common.image_keys import FOLDER_KEYS, RESERVED_ITEM_KEYS
from dataset.common.options import read_key_name
from utils.config.schema import Key
from utils.errors import ConfigError, DataError

logger = logging.getLogger(__name__)
UNMATCHED = ("error", "skip")
MAX_LISTED = 10

PAIR_KEYS = {
    "gt_dir": Key(None, "str", "The folder of targets (required).", nullable=True),
    "cond_dir": Key(
        None, "str", "The folder of conditions, paired with the targets by name (required).", nullable=True
    ),
    "val_gt_dir": Key(
        None, "str", "Validation targets (with `val_cond_dir`) instead of a split.", nullable=True
    ),
    "val_cond_dir": Key(None, "str", "Validation conditions (with `val_gt_dir`).", nullable=True),
    "recursive": FOLDER_KEYS["recursive"],
    "unmatched": Key(
        "error", "str", "A file without a partner stops the run, or is skipped with a warning.", UNMATCHED
    ),
    "gt_key": FOLDER_KEYS["gt_key"],
    "lq_key": Key("cond", "str", "Item key of the conditions."),
}


def _folder(opt: dict, key: str, where: str) -> str:
    value = opt.get(key)
    if not value:
        raise ConfigError(f"{where} needs '{key}', the folder of .tif files.")
    return str(value)


def _files_by_name(folder: str, recursive: bool, key: str) -> dict[str, Path]:
    root = Path(folder)
    by_name = {}
    for path in list_files(folder, TIF_SUFFIXES, recursive, key):
        name = relative_name(path, root)
        if name in by_name:
            raise DataError(f"'{by_name[name]}' and '{path}' have the same name; keep one of them.")
        by_name[name] = path
    return by_name


class TIFFolderDataset(ImageItemsDataset):
    """Every .tif/.tiff of `dir` (and its subfolders with `recursive`), as `{gt_key: image}` items."""

    config_keys = {**ImageItemsDataset.config_keys, **FOLDER_KEYS}
    val_keys = ("val_dir",)

    def find_records(self, opt):
        self.gt_key = read_key_name(
            opt, "gt_key", FOLDER_KEYS["gt_key"].default, self.where, RESERVED_ITEM_KEYS
        )
        use_val_dir = self.phase != "train" and opt.get("val_dir") is not None
        key = "val_dir" if use_val_dir else "dir"
        folder = _folder(opt, key, self.where)
        by_name = _files_by_name(folder, self.read(opt, "recursive"), key)
        return [Record(name, {self.gt_key: path}) for name, path in by_name.items()], [folder]


class TIFPairDataset(ImageItemsDataset):
    """Targets in `gt_dir` and conditions in `cond_dir` paired by name (path below the folder, no suffix).

        datasets:
          train: &data
            type: TIFPairDataset
            gt_dir: data/edente          # targets
            cond_dir: data/dente         # conditions, matched to targets by file name (never by sort order)
            normalize: zscore_foreground
            patch_size: 256
            train_split: 0.8
            split_by: '^(p\\d+)_'       # patient id: no patient in both train and val
            augment: {flip: true, rot90: true}
            cache_rate: 1.0
          val: *data                     # same block; the trainer's phase picks the other side of the split

    docs/data.md lists every key.
    """

    config_keys = {**ImageItemsDataset.config_keys, **PAIR_KEYS}
    val_keys = ("val_gt_dir", "val_cond_dir")

    def find_records(self, opt):
        keys = self.config_keys
        self.gt_key = read_key_name(opt, "gt_key", keys["gt_key"].default, self.where, RESERVED_ITEM_KEYS)
        self.lq_key = read_key_name(
            opt, "lq_key", keys["lq_key"].default, self.where, (*RESERVED_ITEM_KEYS, self.gt_key)
        )
        unmatched = self.read(opt, "unmatched")
        recursive = self.read(opt, "recursive")
        has_val = [opt.get(k) is not None for k in self.val_keys]
        if any(has_val) and not all(has_val):
            raise ConfigError(
                f"{self.where} sets only one of val_gt_dir and val_cond_dir; set both, or neither."
            )
        prefix = "val_" if self.phase != "train" and all(has_val) else ""
        gt_folder = _folder(opt, f"{prefix}gt_dir", self.where)
        cond_folder = _folder(opt, f"{prefix}cond_dir", self.where)
        targets = _files_by_name(gt_folder, recursive, f"{prefix}gt_dir")
        conditions = _files_by_name(cond_folder, recursive, f"{prefix}cond_dir")
        lonely_targets = sorted(targets.keys() - conditions.keys())
        lonely_conditions = sorted(conditions.keys() - targets.keys())
        if lonely_targets or lonely_conditions:
            if unmatched == "error":
                raise DataError(_unmatched_message(gt_folder, lonely_targets, cond_folder, lonely_conditions))
            self.skipped = len(lonely_targets) + len(lonely_conditions)
            logger.warning(
                "%s: skipped %d files without a partner (%d in '%s', %d in '%s').",
                self.where,
                self.skipped,
                len(lonely_targets),
                gt_folder,
                len(lonely_conditions),
                cond_folder,
            )
        else:
            self.skipped = 0
        records = [
            Record(name, {self.gt_key: targets[name], self.lq_key: conditions[name]})
            for name in sorted(targets.keys() & conditions.keys())
        ]
        if not records:
            raise DataError(f"No file of '{gt_folder}' has a partner of the same name in '{cond_folder}'.")
        return records, [gt_folder, cond_folder]


def _files(count: int) -> str:
    return f"{count} file{'s' if count != 1 else ''}"


def _unmatched_message(gt_folder, lonely_targets, cond_folder, lonely_conditions) -> str:
    def listed(names):
        shown = ", ".join(names[:MAX_LISTED])
        return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")

    parts = []
    if lonely_targets:
        parts.append(
            f"{_files(len(lonely_targets))} in '{gt_folder}' without a condition in '{cond_folder}' "
            f"({listed(lonely_targets)})"
        )
    if lonely_conditions:
        parts.append(
            f"{_files(len(lonely_conditions))} in '{cond_folder}' without a target in '{gt_folder}' "
            f"({listed(lonely_conditions)})"
        )
    return (
        f"Unpaired files: {'; '.join(parts)}; pairs are matched by file name, so rename or remove them, "
        "or set unmatched: skip."
    )
