"""ManifestDataset with seed 002's columns: image, mask and label per row, non-empty rows only."""

import numpy as np
import pytest
import tifffile
import torch
from torch.utils.data import DataLoader

from dataset.manifest_dataset import ManifestDataset
from utils.errors import ConfigError, DataError


@pytest.fixture
def manifest(tmp_path):
    """5 rows (layout_path, mask_path, latent_path, type, is_empty); row 3 is empty."""
    rows = ["layout_path,mask_path,latent_path,type,is_empty"]
    for i in range(5):
        mask = np.zeros((8, 8), np.uint8)
        mask[: i + 1, :2] = 1 + i % 2
        tifffile.imwrite(tmp_path / f"layout{i}.tif", mask.astype(np.float32) * 0.5)
        tifffile.imwrite(tmp_path / f"mask{i}.tif", mask)
        np.save(tmp_path / f"lat{i}.npy", np.full((4, 2, 2), i, np.float32))
        rows.append(f"layout{i}.tif,mask{i}.tif,lat{i}.npy,{'ab'[i % 2]},{i == 3}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def block(manifest, **changes):
    return {
        "csv": str(manifest),
        "columns": {"image": "layout_path"},
        "mask_columns": {"mask": "mask_path"},
        "label_columns": ["type"],
        "latent_column": "latent_path",
        "filters": {"is_empty": False},
        **changes,
    }


def test_image_mask_and_label_per_non_empty_row(manifest):
    dataset = ManifestDataset(block(manifest))
    assert [r.name for r in dataset.records] == ["layout0", "layout1", "layout2", "layout4"]
    item = dataset[1]
    assert item["image"].shape == (1, 8, 8) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (8, 8) and item["mask"].dtype == torch.int64
    assert item["mask"].sum().item() == 2 * 2 * 2  # rows 0-1, columns 0-1, class 2
    assert item["type"].item() == 1 and item["latent"].shape == (4, 2, 2)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["mask"].shape == (4, 8, 8) and batch["type"].tolist() == [0, 1, 0, 0]


def test_a_non_integer_mask_is_one_sentence(manifest, tmp_path):
    tifffile.imwrite(tmp_path / "mask2.tif", np.full((8, 8), 0.5, np.float32))
    with pytest.raises(DataError, match="mask2.tif' holds non-integer values"):
        ManifestDataset(block(manifest))[2]


def test_masks_with_augmentation_are_refused(manifest):
    with pytest.raises(ConfigError, match="mask_columns with augment or patch_size"):
        ManifestDataset(block(manifest, patch_size=4))


def test_label_classes_are_known_at_start_and_mask_classes_at_each_batch(manifest):
    from utils.errors.classes import check_batch_classes

    dataset = ManifestDataset(block(manifest))
    assert dataset.class_counts() == {"type": 2}  # the labels of the CSV; masks are read per item
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    head = "'network.heads[1].num_classes' (head 'seg')"
    with pytest.raises(ConfigError, match=r"is 2, but a batch of 'datasets.train' holds 3 classes in 'mask'"):
        check_batch_classes([(head, 2, "mask")], batch, "'datasets.train'")
    check_batch_classes([(head, 3, "mask"), (head, 2, "type")], batch, "'datasets.train'")
