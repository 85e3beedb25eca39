import math

import torch
from torch.utils import data


class SyntheticShapesDataset(data.Dataset):
    """Noisy/clean pairs of random soft ellipses, made on the fly: the example plugin's data.

    Item `idx` is a pure function of (`seed`, `idx`), so the validation set is fixed and any worker
    order gives the same batches. Keys: `gt` (clean, in [0, 1]), `cond` (clean + Gaussian noise).
    """

    config_keys = {"size", "image_size", "channels", "num_shapes", "noise_std", "seed"}

    def __init__(self, opt):
        self.size = int(opt["size"])
        self.image_size = int(opt.get("image_size", 32))
        self.channels = int(opt.get("channels", 1))
        self.num_shapes = int(opt.get("num_shapes", 3))
        self.noise_std = float(opt.get("noise_std", 0.1))
        # Train and val draw from different streams unless the YAML gives each its own seed.
        self.seed = int(opt.get("seed", 0 if opt.get("phase", "train") == "train" else 1))
        coords = torch.linspace(-1, 1, self.image_size)
        self.yy, self.xx = torch.meshgrid(coords, coords, indexing="ij")

    def __len__(self):
        return self.size

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + idx)
        clean = torch.zeros(self.channels, self.image_size, self.image_size)
        for _ in range(self.num_shapes):
            cx, cy = (torch.rand(2, generator=g) * 1.4 - 0.7).tolist()
            ax, ay = (torch.rand(2, generator=g) * 0.35 + 0.1).tolist()
            angle = torch.rand(1, generator=g).item() * math.pi
            brightness = torch.rand(self.channels, 1, 1, generator=g) * 0.7 + 0.3
            x, y = self.xx - cx, self.yy - cy
            u = x * math.cos(angle) + y * math.sin(angle)
            v = -x * math.sin(angle) + y * math.cos(angle)
            # A logistic edge instead of a hard one, so the clean images are smooth enough to learn fast.
            shape = torch.sigmoid((1 - (u / ax) ** 2 - (v / ay) ** 2) * 8)
            clean = torch.maximum(clean, brightness * shape)
        noisy = clean + self.noise_std * torch.randn(clean.shape, generator=g)
        return {"gt": clean, "cond": noisy, "x": idx}
