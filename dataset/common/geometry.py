"""Bringing every image of an item to `patch_size`: resize, or a crop shared by all the item's images.

`resize` is deterministic, so its result can be cached; `crop` is random in training (center otherwise)
and runs after the cache, on every access. All images of an item get the same crop window, so a
condition and its target stay aligned pixel for pixel. Images are numpy (C, *spatial) float32 arrays.
"""

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import DataError

PATCH_MODES = ("resize", "crop")


@contextlib.contextmanager
def one_thread():
    """Run torch ops on one image single-threaded: handing a 256x256 image to a thread pool costs more
    than it saves (20x slower on a busy 2-core machine). DataLoader workers already run this way."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def resize(image: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """(C, *spatial) -> (C, *size), linear interpolation (antialiased when shrinking a 2D image)."""
    if tuple(image.shape[1:]) == tuple(size):
        return image
    mode = "bilinear" if len(size) == 2 else "trilinear"
    shrinking = any(s < n for s, n in zip(size, image.shape[1:]))
    with one_thread():
        resized = F.interpolate(
            torch.from_numpy(np.ascontiguousarray(image))[None],
            size=size,
            mode=mode,
            align_corners=False,
            antialias=shrinking and len(size) == 2,
        )[0]
    return resized.numpy()


def crop_window(shape: tuple[int, ...], size: tuple[int, ...], random: bool, name: str) -> tuple[slice, ...]:
    """The spatial slices of one crop of `size` from an image of spatial `shape`: random or centred."""
    if any(s > n for s, n in zip(size, shape)):
        raise DataError(
            f"The image '{name}' has spatial shape {tuple(shape)}, smaller than patch_size {tuple(size)}; "
            f"use patch_mode: resize or a smaller patch_size."
        )
    starts = [
        int(torch.randint(0, n - s + 1, ()).item()) if random else (n - s) // 2 for s, n in zip(size, shape)
    ]
    return tuple(slice(start, start + s) for start, s in zip(starts, size))


def crop(image: np.ndarray, window: tuple[slice, ...]) -> np.ndarray:
    return image[(slice(None), *window)]
