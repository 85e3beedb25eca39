"""Turn a batch of arrays into one displayable grid, and write PNGs."""

import numpy as np
from PIL import Image


def to_numpy(images) -> np.ndarray:
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    return np.asarray(images, dtype=np.float32)


VOLUME_SLICES = 5  # planes of a volume shown side by side in its tile; odd, so the middle one is among them


def volume_slices(volumes: np.ndarray, count: int = VOLUME_SLICES) -> np.ndarray:
    """(N, C, D, H, W) -> (N, C, H, k x W): the middle planes of `count` equal parts of the depth (k of
    them, fewer for a thin volume), side by side, so a tile shows how a volume changes along D."""
    depth = volumes.shape[2]
    planes = sorted({depth * (2 * k + 1) // (2 * count) for k in range(count)})
    return np.concatenate([volumes[:, :, p] for p in planes], axis=-1)


def make_grid(images, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) or (N, C, D, H, W) -> an (H', W', 3) float grid in [0, 1].

    Each image is scaled to its own min..max so faint PSFs and bright images are both visible; a volume
    shows a few planes side by side (`volume_slices`); one channel is grey, three are RGB, any other
    count is laid out channel by channel.
    """
    x = to_numpy(images)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 5:
        x = volume_slices(x)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, C, D, H, W), got shape {x.shape}")
    n, c, h, w = x.shape
    if c != 3:  # every channel becomes its own grey tile
        x = x.reshape(n * c, 1, h, w)
        ncol = ncol or c if c > 1 else ncol
    lo = x.reshape(len(x), -1).min(axis=1)[:, None, None, None]
    hi = x.reshape(len(x), -1).max(axis=1)[:, None, None, None]
    x = np.nan_to_num((x - lo) / np.where(hi > lo, hi - lo, 1.0))
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    count = len(x)
    ncol = ncol or int(np.ceil(np.sqrt(count)))
    nrow = int(np.ceil(count / ncol))
    grid = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.float32)
    for i in range(count):
        r, col = divmod(i, ncol)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w
        ] = x[i].transpose(1, 2, 0)
    return grid


def save_png(grid: np.ndarray, path: str) -> None:
    Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8)).save(path)
