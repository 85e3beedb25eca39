import math

import torch
from torch.utils import data

from dataset.common.options import ITEM_SEED, read_key, where_of
from utils.config.schema import Key
from utils.errors import ConfigError

SHAPE_KINDS = ("ellipse", "rectangle", "triangle")


class SyntheticMasksDataset(data.Dataset):
    """Images of flat shapes with their segmentation masks and a class label, made on the fly (2D), or
    volumes of solid shapes (`spatial_dims: 3`).

    Each image holds 1 to `max_shapes` shapes of one kind (ellipse, rectangle, triangle: the first
    `num_kinds`; in 3D an ellipsoid, a box, a pyramid, rotated about the depth axis), each with its own
    brightness in [0.5, 1] on a black background. Keys (in 3D each H, W is D, H, W):

    - `image`: float32 (channels, H, W) in [0, 1] (plus `noise_std` Gaussian noise)
    - `mask`: int64 (H, W), 0 for the background and 1 + kind inside a shape (a segmentation target)
    - `label`: int64, the kind of the image's shapes (a classification target)
    - `edges` (with `edges: true`): float32 (1, H, W), 1 on the shapes' outline (a second ControlNet control)

    Item `idx` is a pure function of (`seed`, `idx`); train and val draw other streams unless each is given
    a seed. Nothing is downloaded: the multi-task and ControlNet examples run on it as shipped.
    """

    config_keys = {
        "size": Key(None, "int", "Items per epoch.", minimum=1, required=True),
        "image_size": Key(32, "int", "Side of each image in pixels.", minimum=1),
        "spatial_dims": Key(
            2, "int", "2: images (H, W); 3: volumes (D, H, W) of side image_size.", minimum=2, maximum=3
        ),
        "channels": Key(1, "int", "Channels per image.", minimum=1),
        "num_kinds": Key(
            2,
            "int",
            f"Shape kinds drawn, the first N of {', '.join(SHAPE_KINDS)}.",
            minimum=1,
            maximum=len(SHAPE_KINDS),
        ),
        "max_shapes": Key(2, "int", "Most shapes per image (1 to this many).", minimum=1),
        "noise_std": Key(0.0, "float", "Standard deviation of the noise added to `image`.", minimum=0.0),
        "edges": Key(False, "bool", "Also give `edges`, the outline of the mask's shapes (1 pixel wide)."),
        "seed": ITEM_SEED,
    }

    def __init__(self, opt):
        where = where_of(opt, type(self).__name__)
        keys = {name: read_key(opt, name, self.config_keys, where) for name in self.config_keys}
        if keys["size"] is None:
            raise ConfigError(f"{where} needs 'size', the number of items per epoch.")
        self.size = int(keys["size"])
        self.image_size = int(keys["image_size"])
        self.channels = int(keys["channels"])
        self.num_kinds = int(keys["num_kinds"])
        self.max_shapes = int(keys["max_shapes"])
        self.noise_std = float(keys["noise_std"])
        self.edges = bool(keys["edges"])
        self.spatial_dims = int(keys["spatial_dims"])
        # Train and val draw from different streams unless the YAML gives each its own seed.
        seed = keys["seed"]
        self.seed = int(seed if seed is not None else (0 if opt.get("phase", "train") == "train" else 1))
        coords = torch.linspace(-1, 1, self.image_size)
        if self.spatial_dims == 3:
            self.z, self.y, self.x = torch.meshgrid(coords, coords, coords, indexing="ij")
        else:
            self.y, self.x = torch.meshgrid(coords, coords, indexing="ij")

    @property
    def num_classes(self) -> int:
        """Classes of the mask: the background and one per kind."""
        return self.num_kinds + 1

    class_count_keys = {"mask": "num_kinds", "label": "num_kinds"}  # the setting that fixes each count

    def class_counts(self) -> dict[str, int]:
        """Classes of each class-index key (values 0 .. n-1), for the heads trained on them."""
        return {"mask": self.num_classes, "label": self.num_kinds}

    def __len__(self):
        return self.size

    def _inside(self, kind: str, g: torch.Generator) -> torch.Tensor:
        cx, cy = (torch.rand(2, generator=g) * 0.9 - 0.45).tolist()
        a, b = (torch.rand(2, generator=g) * 0.3 + 0.3).tolist()
        angle = torch.rand(1, generator=g).item() * math.pi
        u = (self.x - cx) * math.cos(angle) + (self.y - cy) * math.sin(angle)
        v = -(self.x - cx) * math.sin(angle) + (self.y - cy) * math.cos(angle)
        w, c = torch.zeros(()), 1.0  # the depth axis (3D), drawn after the 2D draws so 2D stays as it was
        if self.spatial_dims == 3:
            cz = torch.rand(1, generator=g).item() * 0.9 - 0.45
            c = torch.rand(1, generator=g).item() * 0.3 + 0.3
            w = self.z - cz
        if kind == "ellipse":
            return (u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2 <= 1
        if kind == "rectangle":
            return (u.abs() <= a) & (v.abs() <= b) & (w.abs() <= c)
        # An isosceles triangle: apex at v = -b, base at v = +b, half-width a at the base (in 3D a
        # pyramid, half-depth c at the base).
        rise = (v + b) / (2 * b)
        return (v <= b) & (u.abs() <= a * rise) & (w.abs() <= c * rise)

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + idx)
        kind = int(torch.randint(self.num_kinds, (1,), generator=g))
        count = int(torch.randint(1, self.max_shapes + 1, (1,), generator=g))
        side = [self.image_size] * self.spatial_dims
        image = torch.zeros(self.channels, *side)
        mask = torch.zeros(side, dtype=torch.long)
        for _ in range(count):
            inside = self._inside(SHAPE_KINDS[kind], g)
            brightness = torch.rand(self.channels, *[1] * self.spatial_dims, generator=g) * 0.5 + 0.5
            image = torch.where(inside, brightness, image)
            mask[inside] = kind + 1
        if self.noise_std:
            image = image + self.noise_std * torch.randn(image.shape, generator=g)
        item = {"image": image, "mask": mask, "label": torch.tensor(kind), "name": f"shapes_{idx:05d}"}
        if self.edges:  # drawn after everything else, so the other keys are as without it
            item["edges"] = outline(mask)
        return item


def outline(mask: torch.Tensor) -> torch.Tensor:
    """(1, *spatial) float: 1 where a pixel (voxel) of a shape has a face neighbour of another class (or the
    border)."""
    ndim = mask.ndim
    padded = torch.nn.functional.pad(mask[None, None].float(), (1, 1) * ndim, value=-1.0)[0, 0]
    inner = (slice(1, -1),) * ndim
    centre = padded[inner]
    differs = torch.zeros_like(centre, dtype=torch.bool)
    for axis in range(ndim):
        for shifted in (slice(None, -2), slice(2, None)):
            index = list(inner)
            index[axis] = shifted
            differs |= padded[tuple(index)] != centre
    return ((mask > 0) & differs).float()[None]
