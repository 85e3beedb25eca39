"""Samples written as `scripts/generate.py` writes them: one float32 TIF each, named after its condition
(or control), in the data's intensity range, and `grid.png` of the first 16 in the network's range."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
import torch

from models.ldm.intensity import to_intensity
from utils.errors import UserError
from utils.images.grid import make_grid, save_png

GRID_TILES = 16


def write_samples(
    out: Path,
    names: list[str],
    sample: Callable[[slice, list[int]], torch.Tensor],
    description: dict,
    seed: int = 0,
    batch_size: int = 8,
    stats=None,
    normalized: bool = False,
    tile: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> list[Path]:
    """`sample(chunk, seeds)` gives the images of `names[chunk]`, sample i from the noise of seed + i
    whatever the batch size. Each is mapped back to the data's range with its own (shift, scale) from
    `stats`, else the run's mean `description['intensity']`, unless `normalized`. `tile(i, image)` makes
    sample i's grid tile (the sample alone by default)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file; give a folder for the generated TIFs.")
    intensity = description.get("intensity") or {"shift": 0.0, "scale": 1.0}
    written, tiles = [], []
    for start in range(0, len(names), batch_size):
        chunk = slice(start, start + batch_size)
        seeds = [seed + i for i in range(start, min(start + batch_size, len(names)))]
        shown = sample(chunk, seeds).cpu()
        images = shown
        if not normalized:
            per_image = (
                stats[chunk] if stats is not None else [[intensity["shift"], intensity["scale"]]] * len(shown)
            )
            images = to_intensity(shown, per_image)
        for i, (name, image) in enumerate(zip(names[chunk], images.numpy())):
            path = out / f"{name}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, image.astype(np.float32).squeeze())
            written.append(path)
            if len(tiles) < GRID_TILES:  # in the network's range, where condition and sample compare
                tiles.append(tile(start + i, shown[i].numpy()) if tile else shown[i].numpy())
    save_png(make_grid(np.stack(tiles)), str(out / "grid.png"))
    return written
