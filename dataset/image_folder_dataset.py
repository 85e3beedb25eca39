"""A folder of ordinary images (png, jpg, bmp, tif), gray or RGB: for users outside medical imaging.

Items: `{gt_key: float32 (C, H, W), 'name': 'cats/001', 'norm': {...}}`. Everything after reading (checks,
normalisation, splits, augmentation, caching) is shared with the TIF datasets; see docs/data.md.
"""

from pathlib import Path

from dataset.common.files import IMAGE_SUFFIXES, list_files, relative_name
from dataset.common.image_items import ImageItemsDataset, Record
from dataset.common.image_keys import FOLDER_KEYS, RESERVED_ITEM_KEYS
from dataset.common.options import read_key_name
from utils.config.schema import Key
from utils.errors import ConfigError


class ImageFolderDataset(ImageItemsDataset):
    """Every image of `dir`:

        datasets:
          train: &data
            type: ImageFolderDataset
            dir: data/photos
            channels: 3            # 1: converted to gray; 3: to RGB (16-bit gray PNGs keep their range)
            patch_size: 128
            normalize: minmax
            norm_range: [-1, 1]
            train_split: 0.9
          val: *data

    docs/data.md lists every key.
    """

    config_keys = {
        **ImageItemsDataset.config_keys,
        **FOLDER_KEYS,
        "dir": Key(None, "str", "The folder of images (required).", nullable=True),
        "channels": Key(
            3, "int", "1: images read as gray; 3: as RGB (16-bit gray PNGs keep their range).", minimum=1
        ),
    }
    val_keys = ("val_dir",)

    def find_records(self, opt):
        if self.channels not in (1, 3):
            raise ConfigError(
                f"'channels' in {self.where} is {self.channels}; images are read as 1 (gray) or 3 (RGB)."
            )
        self.gt_key = read_key_name(
            opt, "gt_key", self.config_keys["gt_key"].default, self.where, RESERVED_ITEM_KEYS
        )
        key = "val_dir" if self.phase != "train" and opt.get("val_dir") is not None else "dir"
        folder = opt.get(key)
        if not folder:
            raise ConfigError(f"{self.where} needs '{key}', the folder of images.")
        paths = list_files(str(folder), IMAGE_SUFFIXES, self.read(opt, "recursive"), key)
        return [Record(relative_name(path, Path(folder)), {self.gt_key: path}) for path in paths], [
            str(folder)
        ]
