import math

import torch
from torch.utils import data

from utils.errors import ConfigError

SHAPE_KINDS = ("ellipse", "rectangle", "triangle")


class SyntheticMasksDataset(data.Dataset):
    """Images of flat shapes with their segmentation masks and a class label, made on the fly (2D).

    Each image holds 1 to `max_shapes` shapes of one kind (ellipse, rectangle, triangle: the first
    `num_kinds`), each with its own brightness in [0.5, 1] on a black background. Keys:

    - `image`: float32 (channels, H, W) in [0, 1] (plus `noise_std` Gaussian noise)
    - `mask`: int64 (H, W), 0 for the background and 1 + kind inside a shape (a segmentation target)
    - `label`: int64, the kind of the image's shapes (a classification target)

    Item `idx` is a pure function of (`seed`, `idx`); train and val draw other streams unless each is given
    a seed. Nothing is downloaded: the multi-task and ControlNet examples run on it as shipped.
    """

    config_keys = {"size", "image_size", "channels", "num_kinds", "max_shapes", "noise_std", "seed"}

    def __init__(self, opt):
        self.size = int(opt["size"])
        self.image_size = int(opt.get("image_size", 32))
        self.channels = int(opt.get("channels", 1))
        self.num_kinds = int(opt.get("num_kinds", 2))
        self.max_shapes = int(opt.get("max_shapes", 2))
        self.noise_std = float(opt.get("noise_std", 0.0))
        if not 1 <= self.num_kinds <= len(SHAPE_KINDS):
            raise ConfigError(
                f"'num_kinds' of SyntheticMasksDataset is {self.num_kinds}; give 1 to {len(SHAPE_KINDS)} "
                f"({', '.join(SHAPE_KINDS)})."
            )
        if self.max_shapes < 1:
            raise ConfigError(f"'max_shapes' of SyntheticMasksDataset is {self.max_shapes}; give 1 or more.")
        self.seed = int(opt.get("seed", 0 if opt.get("phase", "train") == "train" else 1))
        coords = torch.linspace(-1, 1, self.image_size)
        self.y, self.x = torch.meshgrid(coords, coords, indexing="ij")

    @property
    def num_classes(self) -> int:
        """Classes of the mask: the background and one per kind."""
        return self.num_kinds + 1

    def __len__(self):
        return self.size

    def _inside(self, kind: str, g: torch.Generator) -> torch.Tensor:
        cx, cy = (torch.rand(2, generator=g) * 0.9 - 0.45).tolist()
        a, b = (torch.rand(2, generator=g) * 0.3 + 0.3).tolist()
        angle = torch.rand(1, generator=g).item() * math.pi
        u = (self.x - cx) * math.cos(angle) + (self.y - cy) * math.sin(angle)
        v = -(self.x - cx) * math.sin(angle) + (self.y - cy) * math.cos(angle)
        if kind == "ellipse":
            return (u / a) ** 2 + (v / b) ** 2 <= 1
        if kind == "rectangle":
            return (u.abs() <= a) & (v.abs() <= b)
        # An isosceles triangle: apex at v = -b, base at v = +b, half-width a at the base.
        return (v <= b) & (u.abs() <= a * (v + b) / (2 * b))

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + idx)
        kind = int(torch.randint(self.num_kinds, (1,), generator=g))
        count = int(torch.randint(1, self.max_shapes + 1, (1,), generator=g))
        image = torch.zeros(self.channels, self.image_size, self.image_size)
        mask = torch.zeros(self.image_size, self.image_size, dtype=torch.long)
        for _ in range(count):
            inside = self._inside(SHAPE_KINDS[kind], g)
            brightness = torch.rand(self.channels, 1, 1, generator=g) * 0.5 + 0.5
            image = torch.where(inside, brightness, image)
            mask[inside] = kind + 1
        if self.noise_std:
            image = image + self.noise_std * torch.randn(image.shape, generator=g)
        return {"image": image, "mask": mask, "label": torch.tensor(kind), "name": f"shapes_{idx:05d}"}
