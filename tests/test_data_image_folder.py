"""ImageFolderDataset: png/jpg/tif, gray or RGB, for users outside medical imaging."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from dataset.image_folder_dataset import ImageFolderDataset
from utils.errors import ConfigError


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "b.jpg")
    Image.fromarray(rng.integers(0, 255, (12, 10), dtype=np.uint8)).save(tmp_path / "c.png")
    tifffile.imwrite(tmp_path / "d.tif", rng.random((3, 12, 10)).astype(np.float32))
    Image.fromarray(np.full((12, 10), 40000, np.uint16)).save(tmp_path / "e.png")  # 16-bit gray
    return tmp_path


def test_rgb_by_default(photos):
    dataset = ImageFolderDataset({"dir": str(photos), "normalize": "minmax"})
    assert [r.name for r in dataset.records] == ["a", "b", "c", "d", "e"]
    for item in dataset:
        assert (
            item["gt"].shape == (3, 12, 10) and 0 <= float(item["gt"].min()) <= float(item["gt"].max()) <= 1
        )
    np.testing.assert_array_equal(dataset[2]["gt"][0].numpy(), dataset[2]["gt"][2].numpy())  # gray -> RGB


def test_gray_keeps_16_bit_range(photos):
    (photos / "d.tif").unlink()  # a 3-channel TIF cannot be read as gray
    dataset = ImageFolderDataset({"dir": str(photos), "channels": 1})
    assert dataset[0]["gt"].shape == (1, 12, 10)
    assert float(dataset[3]["gt"].max()) == 40000


def test_resize_and_split(photos, tmp_path):
    opt = {
        "dir": str(photos),
        "patch_size": [8, 8],
        "train_split": 0.6,
        "split_file": str(tmp_path / "s.json"),
    }
    train, val = ImageFolderDataset(opt), ImageFolderDataset({**opt, "phase": "val"})
    assert len(train) == 3 and len(val) == 2 and train[0]["gt"].shape == (3, 8, 8)
    assert not {r.name for r in train.records} & {r.name for r in val.records}


def test_channels_must_be_gray_or_rgb(photos):
    with pytest.raises(ConfigError, match="channels"):
        ImageFolderDataset({"dir": str(photos), "channels": 2})
