"""Random flips, rot90 and a small affine, drawn once per item and applied alike to all its images.

    augment: {flip: true, rot90: true, degrees: 10, scale: 0.1, translate: 0.05}   # in a dataset block

Every key is optional; the datasets apply it only when `phase` is 'train'.
"""

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from dataset.common.geometry import one_thread
from dataset.common.options import plain, read_number
from utils.errors import ConfigError, did_you_mean

AUGMENT_KEYS = ("flip", "rot90", "degrees", "scale", "translate")


class PairedAugmentation:
    """flip: each spatial axis flipped with probability 1/2. rot90: a random multiple of 90 degrees in
    the last two axes (only 0 or 180 when they differ in length). degrees / scale / translate: a rotation
    in [-degrees, degrees], a zoom in [1 - scale, 1 + scale] and a shift up to that fraction of the size,
    in the last two axes, by linear interpolation with zeros outside.

    A condition and its target must move together, or the model learns to undo a transform it cannot
    see; so one draw serves every image of the item. The draws use torch's global generator, which
    DataLoader seeds per worker from the run's seed, so a run is reproducible."""

    def __init__(self, options: Mapping | None, where: str):
        options = plain(options) or {}
        if options is True:
            options = {"flip": True, "rot90": True}
        if not isinstance(options, dict):
            raise ConfigError(
                f"'augment' in {where} is {options!r}; it must be a mapping such as "
                "{flip: true, rot90: true, degrees: 10, scale: 0.1, translate: 0.05}."
            )
        for key in options:
            if key not in AUGMENT_KEYS:
                raise ConfigError(
                    f"Unknown key 'augment.{key}' in {where}{did_you_mean(key, AUGMENT_KEYS)}; "
                    f"allowed: {', '.join(AUGMENT_KEYS)}."
                )
        self.flip = bool(options.get("flip", False))
        self.rot90 = bool(options.get("rot90", False))
        inside = f"{where} augment"
        self.degrees = read_number(options, "degrees", 0.0, inside, low=0, high=180)
        self.scale = read_number(options, "scale", 0.0, inside, low=0, high=0.9)
        self.translate = read_number(options, "translate", 0.0, inside, low=0, high=0.5)

    @property
    def active(self) -> bool:
        return self.flip or self.rot90 or bool(self.degrees or self.scale or self.translate)

    def __call__(self, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One random transform applied to every (C, *spatial) array of `images`."""
        first = next(iter(images.values()))
        spatial_dims = first.ndim - 1
        flip_axes = tuple(1 + axis for axis in range(spatial_dims) if self.flip and torch.rand(()) < 0.5)
        turns = 0
        if self.rot90:
            square = first.shape[-1] == first.shape[-2]
            turns = int(torch.randint(0, 4, ()).item()) if square else 2 * int(torch.randint(0, 2, ()).item())
        theta = self._affine(spatial_dims) if (self.degrees or self.scale or self.translate) else None
        out = {}
        for key, image in images.items():
            if flip_axes:
                image = np.flip(image, flip_axes)
            if turns:
                image = np.rot90(image, turns, axes=(-2, -1))
            if theta is not None:
                image = _warp(image, theta)
            out[key] = image
        return out

    def _affine(self, spatial_dims: int) -> torch.Tensor:
        """affine_grid's theta: the output-to-input map, rotating and zooming the last two axes (x=W, y=H)."""
        angle = math.radians(float(torch.empty(()).uniform_(-self.degrees, self.degrees)))
        zoom = float(torch.empty(()).uniform_(1 - self.scale, 1 + self.scale))
        # Normalised coordinates span 2 per axis, so a shift of `translate` of the size is 2 * translate.
        shift_x, shift_y = (float(v) * 2 * self.translate for v in torch.rand(2) * 2 - 1)
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        if spatial_dims == 2:
            theta = [[cos, -sin, shift_x], [sin, cos, shift_y]]
        else:
            theta = [[cos, -sin, 0.0, shift_x], [sin, cos, 0.0, shift_y], [0.0, 0.0, 1.0, 0.0]]
        return torch.tensor([theta], dtype=torch.float32)


def _warp(image: np.ndarray, theta: torch.Tensor) -> np.ndarray:
    with one_thread():
        tensor = torch.from_numpy(np.ascontiguousarray(image))[None]
        grid = F.affine_grid(theta, list(tensor.shape), align_corners=False)
        warped = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    return warped.numpy()
