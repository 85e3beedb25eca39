"""The keys an image dataset reads: its images and their normalisation, its split, and (for the
datasets that read one folder) the folder."""

from dataset.common.geometry import PATCH_MODES
from dataset.common.normalization import MODES
from utils.config.schema import SEED_MAX, Key

IMAGE_KEYS = {
    "patch_size": Key(
        None,
        "int|list",
        "Bring every image to this size (an int, or one per spatial axis), as `patch_mode` says.",
        minimum=1,
        nullable=True,
    ),
    "patch_mode": Key("resize", "str", "How `patch_size` is reached.", PATCH_MODES),
    "spatial_dims": Key(2, "int", "2 for images, 3 for volumes.", minimum=2, maximum=3),
    "channels": Key(1, "int", "Channels per image.", minimum=1),
    "normalize": Key(
        "none", "str", "Per-image intensity normalisation (dataset/common/normalization.py).", MODES
    ),
    "percentiles": Key([1.0, 99.0], "float|list", "`[low, high]` percentiles clipped by `percentile`."),
    "value_range": Key(
        None,
        "float|list",
        "A fixed `[low, high]` for `minmax` (clipped) instead of each image's own.",
        nullable=True,
    ),
    "norm_range": Key([0.0, 1.0], "float|list", "Output `[low, high]` of `minmax` and `percentile`."),
    "background": Key(0.0, "float", "The background value of `zscore_foreground`."),
    "augment": Key(
        None,
        "any",
        "Training-only augmentation, e.g. `{flip: true, rot90: true, degrees: 10, scale: 0.1, translate: 0.05}`.",
        nullable=True,
    ),
    "cache_rate": Key(
        0.0, "float", "Fraction of the items read once and kept in memory.", minimum=0.0, maximum=1.0
    ),
}
# The options that decide what a trained network saw, so that inference scripts prepare new images the
# same way (splits, augmentation and caching do not apply to a folder being reconstructed).
NETWORK_INPUT_KEYS = (
    "normalize",
    "percentiles",
    "value_range",
    "norm_range",
    "background",
    "patch_size",
    "spatial_dims",
    "channels",
)
SPLIT_KEYS = {
    "train_split": Key(
        None,
        "float",
        "Fraction of the items (of the split groups) that train; the rest validate.",
        minimum=0.0,
        maximum=1.0,
        nullable=True,
    ),
    "seed": Key(0, "int", "Seed of the train/validation split.", minimum=0, maximum=SEED_MAX),
    "split_by": Key(
        None,
        "str",
        "A regex on the item name whose first group is its split group (e.g. a patient id).",
        nullable=True,
    ),
    # Declaring it tells the trainer that this dataset splits its files: it then keeps the split in the
    # run folder, so a resumed run validates on the same items.
    "split_file": Key(
        None,
        "str",
        "Where the drawn split is kept (default: in the run folder).",
        nullable=True,
        fill_default=False,
    ),
}
RESERVED_ITEM_KEYS = ("name", "norm")
# The keys of a dataset that reads one folder of files (the TIF and image-folder datasets).
FOLDER_KEYS = {
    "dir": Key(None, "str", "The folder of files (required).", nullable=True),
    "val_dir": Key(
        None,
        "str",
        "A folder of validation files, read by the val/test blocks instead of `dir`.",
        nullable=True,
    ),
    "recursive": Key(
        False, "bool", "Also read the files in subfolders (named by their path below the folder)."
    ),
    "gt_key": Key("gt", "str", "Item key of the target images."),
}
