"""ManifestDataset (seed 002): path and label columns, latents, filters, class balance, splits by column."""

import numpy as np
import pytest
import tifffile
import torch
from torch.utils.data import DataLoader

from dataset.manifest_dataset import ManifestDataset
from utils.errors import ConfigError, DataError


@pytest.fixture
def manifest(tmp_path):
    """6 rows: 4 of type 'road', 2 of type 'river'; one row marked empty; latents beside the images."""
    rows = ["layout_path,latent_path,type,score,patient,is_empty"]
    for i in range(6):
        kind = "road" if i < 4 else "river"
        tifffile.imwrite(tmp_path / f"img{i}.tif", np.full((8, 8), i, np.float32))
        np.save(tmp_path / f"lat{i}.npy", np.full((4, 2, 2), i, np.float32))
        rows.append(f"img{i}.tif,lat{i}.npy,{kind},{i / 2},pt{i // 2},{'True' if i == 5 else 'False'}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def test_columns_labels_and_latents(manifest):
    dataset = ManifestDataset(
        {
            "csv": str(manifest),
            "columns": {"gt": "layout_path"},
            "label_columns": ["type", "score"],
            "latent_column": "latent_path",
        }
    )
    assert len(dataset) == 6 and dataset.label_classes == {"type": ["river", "road"]}
    item = dataset[4]
    assert item["gt"].shape == (1, 8, 8) and float(item["gt"][0, 0, 0]) == 4
    assert item["type"].item() == 0 and item["type"].dtype == torch.int64
    assert item["score"].item() == pytest.approx(2.0) and item["score"].dtype == torch.float32
    assert item["latent"].shape == (4, 2, 2) and float(item["latent"][0, 0, 0]) == 4
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch["type"].tolist() == [1, 1, 1]


def test_latents_only(manifest):
    dataset = ManifestDataset({"csv": str(manifest), "columns": {}, "latent_column": "latent_path"})
    assert set(dataset[0]) == {"latent", "name", "norm"}


def test_filters_keep_matching_rows(manifest):
    dataset = ManifestDataset(
        {
            "csv": str(manifest),
            "columns": {"gt": "layout_path"},
            "filters": {"is_empty": False, "type": "river"},
        }
    )
    assert [r.name for r in dataset.records] == ["img4"]
    listed = ManifestDataset(
        {"csv": str(manifest), "columns": {"gt": "layout_path"}, "filters": {"score": [0, 1.5]}}
    )
    assert [r.name for r in listed.records] == ["img0", "img3"]


def test_balance_by_weights_classes_equally(manifest):
    dataset = ManifestDataset({"csv": str(manifest), "columns": {"gt": "layout_path"}, "balance_by": "type"})
    weights = dataset.sample_weights()
    assert weights == [0.25] * 4 + [0.5] * 2
    assert ManifestDataset({"csv": str(manifest), "columns": {"gt": "layout_path"}}).sample_weights() is None


def test_split_by_group_column(manifest, tmp_path):
    opt = {
        "csv": str(manifest),
        "columns": {"gt": "layout_path"},
        "train_split": 0.67,
        "group_column": "patient",
        "split_file": str(tmp_path / "split.json"),
    }
    train, val = ManifestDataset(opt), ManifestDataset({**opt, "phase": "val"})
    patient = {f"img{i}": f"pt{i // 2}" for i in range(6)}
    assert len(train) == 4 and len(val) == 2
    assert not {patient[r.name] for r in train.records} & {patient[r.name] for r in val.records}


def test_manifest_mistakes(manifest):
    with pytest.raises(ConfigError, match="augment and latent_column"):
        ManifestDataset(
            {
                "csv": str(manifest),
                "columns": {"gt": "layout_path"},
                "latent_column": "latent_path",
                "augment": {"flip": True},
            }
        )
    with pytest.raises(DataError, match="did you mean 'type'"):
        ManifestDataset({"csv": str(manifest), "columns": {"gt": "layout_path"}, "filters": {"typo": 1}})
    with pytest.raises(DataError, match="passes the filters"):
        ManifestDataset({"csv": str(manifest), "columns": {"gt": "layout_path"}, "filters": {"type": "lake"}})
    np.save(manifest.parent / "lat0.npy", np.full((4, 2, 2), np.nan, np.float32))
    dataset = ManifestDataset({"csv": str(manifest), "columns": {}, "latent_column": "latent_path"})
    with pytest.raises(DataError, match="lat0.npy"):
        dataset[0]
