import math

import torch
from torch.utils import data


class SyntheticShapesDataset(data.Dataset):
    """Noisy/clean pairs of random soft ellipses (ellipsoids with `spatial_dims: 3`), made on the fly.

    The example plugin's data, and tiny volumes for 3D tests. Item `idx` is a pure function of
    (`seed`, `idx`), so the validation set is fixed and any worker order gives the same batches. Keys:
    `gt` (clean, in [0, 1]), `cond` (clean + Gaussian noise).
    """

    config_keys = {"size", "image_size", "channels", "num_shapes", "noise_std", "seed", "spatial_dims"}

    def __init__(self, opt):
        self.size = int(opt["size"])
        self.image_size = int(opt.get("image_size", 32))
        self.channels = int(opt.get("channels", 1))
        self.num_shapes = int(opt.get("num_shapes", 3))
        self.noise_std = float(opt.get("noise_std", 0.1))
        self.spatial_dims = int(opt.get("spatial_dims", 2))
        # Train and val draw from different streams unless the YAML gives each its own seed.
        self.seed = int(opt.get("seed", 0 if opt.get("phase", "train") == "train" else 1))
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
