import math

import torch
from torch.utils import data

from dataset.common.options import ITEM_SEED
from utils.config.schema import Key, declared_values


class SyntheticShapesDataset(data.Dataset):
    """Noisy/clean pairs of random soft ellipses (ellipsoids with `spatial_dims: 3`), made on the fly.

    The example plugin's data, and tiny volumes for 3D tests. Item `idx` is a pure function of
    (`seed`, `idx`), so the validation set is fixed and any worker order gives the same batches. Keys:
    `gt` (clean, in [0, 1]), `cond` (clean + Gaussian noise).
    """

    config_keys = {
        "size": Key(None, "int", "Items per epoch.", minimum=1, required=True),
        "image_size": Key(32, "int", "Side of each image (or volume) in pixels.", minimum=2),
        "channels": Key(1, "int", "Channels per image.", minimum=1),
        "num_shapes": Key(3, "int", "Ellipses per image.", minimum=0),
        "noise_std": Key(0.1, "float", "Standard deviation of the noise added to `cond`.", minimum=0.0),
        "seed": ITEM_SEED,
        "spatial_dims": Key(2, "int", "2 for images, 3 for volumes.", minimum=2, maximum=3),
    }

    def __init__(self, opt):
        keys = declared_values(opt, self.config_keys)
        self.size = int(keys["size"])
        self.image_size = int(keys["image_size"])
        self.channels = int(keys["channels"])
        self.num_shapes = int(keys["num_shapes"])
        self.noise_std = float(keys["noise_std"])
        self.spatial_dims = int(keys["spatial_dims"])
        # Train and val draw from different streams unless the YAML gives each its own seed.
        seed = keys["seed"]
        self.seed = int(seed if seed is not None else (0 if opt.get("phase", "train") == "train" else 1))
        coords = torch.linspace(-1, 1, self.image_size)
        self.grid = torch.meshgrid(*[coords] * self.spatial_dims, indexing="ij")

    def __len__(self):
        return self.size

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + idx)
        clean = torch.zeros(self.channels, *[self.image_size] * self.spatial_dims)
        for _ in range(self.num_shapes):
            centre = (torch.rand(self.spatial_dims, generator=g) * 1.4 - 0.7).tolist()
            axes = (torch.rand(self.spatial_dims, generator=g) * 0.35 + 0.1).tolist()
            angle = torch.rand(1, generator=g).item() * math.pi
            brightness = torch.rand(self.channels, *[1] * self.spatial_dims, generator=g) * 0.7 + 0.3
            offsets = [axis_grid - c for axis_grid, c in zip(self.grid, centre)]
            # Rotate in the last two axes; a logistic edge keeps the shapes smooth enough to learn fast.
            y, x = offsets[-2], offsets[-1]
            offsets[-1] = x * math.cos(angle) + y * math.sin(angle)
            offsets[-2] = -x * math.sin(angle) + y * math.cos(angle)
            radius = sum((o / a) ** 2 for o, a in zip(offsets, axes))
            clean = torch.maximum(clean, brightness * torch.sigmoid((1 - radius) * 8))
        noisy = clean + self.noise_std * torch.randn(clean.shape, generator=g)
        return {"gt": clean, "cond": noisy, "x": idx}
