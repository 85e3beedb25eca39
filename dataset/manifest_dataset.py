"""A CSV manifest: one row per item, columns of image paths, labels and pre-encoded latents.

`columns` maps item keys to columns of image paths, `mask_columns` to class-map images, `label_columns`
and `latent_column` add labels and latents; `filters` keeps rows, `balance_by` weights them (see
`ManifestDataset`). Paths are relative to `root` (default: the CSV's folder).
"""

import csv
from pathlib import Path

import numpy as np
import torch

from dataset.common import files
from dataset.common.image_items import ImageItemsDataset, Record
from dataset.common.image_keys import RESERVED_ITEM_KEYS
from dataset.common.options import plain
from utils.config.schema import Key
from utils.errors import ConfigError, DataError, did_you_mean

LATENT_KEY = "latent"
TRUE_WORDS = ("true", "1", "yes", "y", "t")


MANIFEST_KEYS = {
    "csv": Key(None, "str", "The manifest's path (required).", nullable=True),
    "root": Key(
        None, "str", "Folder the CSV's paths are relative to (default: the CSV's folder).", nullable=True
    ),
    "columns": Key({"gt": "path"}, "any", "Item key -> CSV column of image paths."),
    "label_columns": Key(
        None,
        "any",
        "Columns of per-item labels: integers stay integers, numbers become float32, words class indices.",
        nullable=True,
    ),
    "mask_columns": Key(
        None, "any", "Item key -> CSV column of class-map images, read as int64 (H, W).", nullable=True
    ),
    "latent_column": Key(
        None, "str", "Column of pre-encoded latents (.npy, .pt or .tif), the item's `latent`.", nullable=True
    ),
    "filters": Key(
        None,
        "any",
        "Keep the rows whose column equals the value (or one of a list), e.g. `{split: train}`.",
        nullable=True,
    ),
    "balance_by": Key(
        None, "str", "Column whose classes `sample_weights()` draws equally often.", nullable=True
    ),
    "group_column": Key(None, "str", "Column of split groups (instead of `split_by`).", nullable=True),
}


class ManifestDataset(ImageItemsDataset):
    """A CSV manifest of items:

        datasets:
          train: &data
            type: ManifestDataset
            csv: data/manifest.csv
            columns: {gt: layout_path}        # item key -> column of image paths (relative to `root`)
            mask_columns: {mask: mask_path}   # item key -> column of class-map images -> int64 (H, W), not
                                              # normalised (a segmentation target)
            label_columns: [type]             # integers stay integers, numbers become float32,
                                              # words become class indices (sorted; see .label_classes)
            latent_column: latent_path        # .npy/.pt/.tif pre-encoded latents -> item['latent']
            filters: {is_empty: false}        # keep rows whose column equals the value (or one of a list)
            balance_by: type                  # sample_weights(): 1 / class count, for a WeightedRandomSampler
            train_split: 0.9
            group_column: patient_id          # split groups from a column (or split_by, a regex on the name)
          val: *data

    A manifest that already has a split column needs no train_split: `filters: {split: train}` in the
    train block and `{split: val}` in the val block. Item names are the first image column's path below
    `root` without suffix (the latent's, without images)."""

    config_keys = {**ImageItemsDataset.config_keys, **MANIFEST_KEYS}

    def find_records(self, opt):
        csv_path = self.read(opt, "csv")
        if not csv_path:
            raise ConfigError(f"{self.where} needs 'csv', the path of the manifest.")
        self.csv_path = str(csv_path)
        root = Path(self.read(opt, "root") or Path(self.csv_path).parent)
        columns = plain(self.read(opt, "columns")) or {}
        label_columns = list(plain(self.read(opt, "label_columns")) or [])
        latent_column = self.read(opt, "latent_column")
        mask_columns = plain(self.read(opt, "mask_columns")) or {}
        self._check_options(opt, columns, label_columns, latent_column)
        self._check_masks(opt, columns, label_columns, mask_columns)
        header, rows = self._read_csv()
        wanted = {f"columns.{key}": col for key, col in columns.items()}
        wanted.update({f"label_columns[{i}]": col for i, col in enumerate(label_columns)})
        wanted.update({f"mask_columns.{key}": col for key, col in mask_columns.items()})
        for option in ("latent_column", "balance_by", "group_column"):
            if opt.get(option):
                wanted[option] = opt[option]
        filters = plain(opt.get("filters")) or {}
        wanted.update({f"filters.{col}": col for col in filters})
        for option, column in wanted.items():
            if column not in header:
                raise DataError(
                    f"'{self.csv_path}' has no column '{column}' (named by {option})"
                    f"{did_you_mean(column, header)}; "
                    f"its columns are: {', '.join(header)}."
                )
        kept = [(number, row) for number, row in rows if all(_matches(row[c], v) for c, v in filters.items())]
        if not kept:
            raise DataError(f"No row of '{self.csv_path}' passes the filters {filters}.")
        self.label_classes = {}
        labels = {column: self._parse_labels(column, kept) for column in label_columns}
        self._balance_value = {}
        records = []
        for i, (number, row) in enumerate(kept):
            paths = {key: self._existing(root, row[col], number, col) for key, col in columns.items()}
            extras = {column: values[i] for column, values in labels.items()}
            if latent_column:
                extras[LATENT_KEY] = self._existing(root, row[latent_column], number, latent_column)
            for key, column in mask_columns.items():
                extras[key] = _MaskPath(self._existing(root, row[column], number, column))
            named_by = next(iter(paths.values()), extras.get(LATENT_KEY))
            name = files.relative_name(Path(named_by), root)
            group = row[opt["group_column"]] if opt.get("group_column") else None
            records.append(Record(name, paths, extras, group))
            if opt.get("balance_by"):
                self._balance_value[name] = row[opt["balance_by"]]
        return records, [self.csv_path]

    def load_extras(self, record):
        extras = dict(record.extras)
        if LATENT_KEY in extras:
            extras[LATENT_KEY] = _read_latent(extras[LATENT_KEY])
        for key, value in extras.items():
            if isinstance(value, _MaskPath):
                extras[key] = _read_mask(value.path)
        return extras

    def class_counts(self) -> dict[str, int]:
        """Classes of each integer label column, from the labels read with the CSV; masks are read per
        item, so a head is checked against them at each batch."""
        counts = {}
        for record in self.records:
            for key, value in record.extras.items():
                if torch.is_tensor(value) and not value.is_floating_point():
                    counts[key] = max(counts.get(key, 0), int(value.max()) + 1)
        return counts

    def sample_weights(self) -> list[float] | None:
        """1 / (items of its `balance_by` class) per item, so classes are drawn equally often; else None."""
        if not self._balance_value:
            return None
        values = [self._balance_value[r.name] for r in self.records]
        counts = {v: values.count(v) for v in set(values)}
        return [1.0 / counts[v] for v in values]

    # ------------------------------------------------------------------ helpers

    def _check_options(self, opt, columns, label_columns, latent_column):
        if not isinstance(columns, dict) or not all(isinstance(c, str) for c in columns.values()):
            raise ConfigError(
                f"'columns' in {self.where} is {columns!r}; it maps item keys to CSV columns, "
                "e.g. {gt: path}."
            )
        if not columns and not latent_column:
            raise ConfigError(f"{self.where} reads nothing: give 'columns' (image paths) or 'latent_column'.")
        taken = set(RESERVED_ITEM_KEYS) | ({LATENT_KEY} if latent_column else set())
        for key in [*columns, *label_columns]:
            if key in taken:
                raise ConfigError(
                    f"The item key '{key}' in {self.where} is used twice or is reserved "
                    f"({', '.join(sorted(taken))})."
                )
            taken.add(key)
        if latent_column and self.augment.active:
            raise ConfigError(
                f"{self.where} sets both augment and latent_column; a flipped or turned image would no "
                "longer match its pre-encoded latent."
            )
        if opt.get("group_column") and opt.get("split_by"):
            raise ConfigError(
                f"{self.where} sets both group_column and split_by; choose one source of split groups."
            )

    def _check_masks(self, opt, columns, label_columns, mask_columns):
        if not isinstance(mask_columns, dict) or not all(isinstance(c, str) for c in mask_columns.values()):
            raise ConfigError(
                f"'mask_columns' in {self.where} is {mask_columns!r}; it maps item keys to CSV columns of "
                "class-map images, e.g. {mask: mask_path}."
            )
        for key in mask_columns:
            if key in columns or key in label_columns or key in (LATENT_KEY, *RESERVED_ITEM_KEYS):
                raise ConfigError(
                    f"The item key '{key}' of 'mask_columns' in {self.where} is used twice or is reserved."
                )
        # Masks are read beside the images, untouched: a crop, a resize or a flip of the images would no
        # longer match them.
        if mask_columns and (self.augment.active or self.patch_size is not None):
            raise ConfigError(
                f"{self.where} sets mask_columns with augment or patch_size; masks are not resized, cropped or "
                "flipped with the images, so give images at their training size without augmentation."
            )

    def _read_csv(self):
        try:
            with open(self.csv_path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                # Row numbers as a spreadsheet shows them: the header is row 1.
                rows = [(number, row) for number, row in enumerate(reader, start=2)]
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise DataError(
                f"'{self.csv_path}' is not a readable CSV file ({type(error).__name__}: {error})."
            ) from None
        if not header or not rows:
            raise DataError(
                f"'{self.csv_path}' has no {'header' if not header else 'rows'}; it needs a header row and "
                "one row per item."
            )
        for number, row in rows:
            if None in row or any(value is None for value in row.values()):
                raise DataError(
                    f"Row {number} of '{self.csv_path}' has {'more' if None in row else 'fewer'} cells than "
                    "the header."
                )
        return header, rows

    def _existing(self, root: Path, value: str, number: int, column: str) -> Path:
        path = root / value.strip() if value and value.strip() else None
        if path is None or not path.is_file():
            raise DataError(
                f"Row {number} of '{self.csv_path}', column '{column}': the file '{path or value}' "
                "does not exist."
            )
        return path

    def _parse_labels(self, column, rows) -> list[torch.Tensor]:
        cells = [row[column].strip() for _, row in rows]
        for (number, _), cell in zip(rows, cells):
            if not cell:
                raise DataError(f"Row {number} of '{self.csv_path}' has an empty '{column}' label.")
        try:
            numbers = [float(c) for c in cells]
        except ValueError:
            classes = sorted(set(cells))
            self.label_classes[column] = classes
            index = {c: i for i, c in enumerate(classes)}
            return [torch.tensor(index[c]) for c in cells]
        if all(n.is_integer() and "." not in c for n, c in zip(numbers, cells)):
            return [torch.tensor(int(n)) for n in numbers]
        return [torch.tensor(n, dtype=torch.float32) for n in numbers]


def _matches(cell: str, wanted) -> bool:
    """A CSV cell (text) against a filter value from YAML: a bool, a number, a string or a list of them."""
    if isinstance(wanted, list):
        return any(_matches(cell, w) for w in wanted)
    cell = cell.strip()
    if isinstance(wanted, bool):
        return (cell.lower() in TRUE_WORDS) == wanted
    if isinstance(wanted, int | float):
        try:
            return float(cell) == float(wanted)
        except ValueError:
            return False
    return cell == str(wanted)


class _MaskPath:
    """A mask file in a record's extras (read as a class map, unlike a label or latent)."""

    def __init__(self, path: Path):
        self.path = path


def _read_mask(path: Path) -> torch.Tensor:
    """A class map (H, W) of int64: an integer-valued image (a single channel, or a trailing axis of 1)."""
    array = np.squeeze(np.asarray(files.read(path)))
    if array.ndim != 2:
        raise DataError(f"The mask '{path}' has shape {array.shape}; a mask is one 2D class map (H, W).")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise DataError(
                f"The mask '{path}' holds non-integer values; a mask holds class indices 0, 1, 2, ..."
            )
    if array.min() < 0:
        raise DataError(f"The mask '{path}' holds negative values; a mask holds class indices 0, 1, 2, ...")
    return torch.from_numpy(array.astype(np.int64))


def _read_latent(path: Path) -> torch.Tensor:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix in (".pt", ".pth"):
            array = torch.load(path, map_location="cpu", weights_only=True)
            array = array.numpy() if torch.is_tensor(array) else np.asarray(array)
        else:
            array = files.read(path)
    except DataError:
        raise
    except Exception as error:
        raise DataError(
            f"'{path}' is not a readable latent (.npy, .pt or .tif) ({type(error).__name__}: {error})."
        ) from None
    files.check_dtype(array.dtype, path)
    files.check_finite(array, path)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
