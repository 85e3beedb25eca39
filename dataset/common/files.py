"""Image files in, checked float32 channel-first arrays out; every bad file is a DataError naming it.

Two steps, so that most mistakes surface when the dataset is built rather than mid-epoch:
`probe` reads only a file's header (shape and dtype: a corrupt file, a wrong dtype or rank);
`read` decodes the pixels (a truncated file, NaN or Inf values).
"""

import os
from pathlib import Path

import numpy as np

from dataset.common import tif_headers
from dataset.common.tif_headers import NUMERIC_KINDS, Header, KnownHeaders, RawPixels
from utils.errors import DataError

TIF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIF_SUFFIXES + PIL_SUFFIXES
# PIL modes that keep more than 8 bits; every other mode is converted to 8-bit gray or RGB.
_PIL_DTYPES = {"I": np.dtype(np.int32), "F": np.dtype(np.float32), "I;16": np.dtype(np.uint16)}


def list_files(folder: str, suffixes: tuple[str, ...], recursive: bool, key: str) -> list[Path]:
    """Files of `folder` with one of `suffixes` (any case), sorted; a missing or empty folder is an error."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"The folder '{folder}' ({key}) does not exist or is not a folder.")
    walk = root.rglob("*") if recursive else root.iterdir()
    found = sorted(
        p for p in walk if p.suffix.lower() in suffixes and p.is_file() and not p.name.startswith(".")
    )
    if not found:
        nested = not recursive and any(p.suffix.lower() in suffixes for p in root.rglob("*"))
        hint = "; its subfolders do, so set recursive: true" if nested else ""
        raise DataError(f"The folder '{folder}' ({key}) holds no {'/'.join(suffixes)} files{hint}.")
    return found


def probe(path: str | Path, channels: int = 1, known: KnownHeaders | None = None) -> Header:
    """Shape and dtype from the header alone; for PNG/JPG, those `read(path, channels)` will return.

    known: headers of files probed before, shared by files written the same way (tif_headers.py).
    """
    path = str(path)
    if path.lower().endswith(TIF_SUFFIXES):
        try:
            return known.probe(path) if known is not None else tif_headers.parse(path)[0]
        except Exception as error:
            raise DataError(f"'{path}' is not a readable TIF file ({_reason(error)}).") from None
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            shape = (height, width) if channels == 1 else (height, width, channels)
            return Header(shape, _PIL_DTYPES.get(image.mode[:4], np.dtype(np.uint8)))
    except Exception as error:
        raise DataError(f"'{path}' is not a readable image file ({_reason(error)}).") from None


def read(path: str | Path, channels: int = 1, raw: RawPixels | None = None) -> np.ndarray:
    """The decoded pixels as stored (TIF) or converted to `channels` (PNG/JPG: 1 gray, 3 RGB), unchecked.

    raw: the file's `probe(...).raw`, to read an uncompressed TIF without parsing its header again.
    """
    path = str(path)
    array = raw.pixels(path) if raw is not None else None
    if array is not None:
        return array
    if path.lower().endswith(TIF_SUFFIXES):
        import tifffile

        try:
            return tifffile.imread(path)
        except Exception as error:
            raise DataError(f"'{path}' is not a readable TIF file ({_reason(error)}).") from None
    from PIL import Image

    try:
        with Image.open(path) as image:
            return _pil_pixels(image, channels)
    except Exception as error:
        raise DataError(f"'{path}' is not a readable image file ({_reason(error)}).") from None


def check_dtype(dtype: np.dtype, path) -> None:
    if np.dtype(dtype).kind not in NUMERIC_KINDS:
        raise DataError(
            f"'{path}' holds {np.dtype(dtype)} pixels; it must hold real numbers (float32 is best)."
        )


def check_finite(array: np.ndarray, path) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        raise DataError(f"'{path}' has {nan} NaN and {inf} Inf pixels; every pixel must be a finite number.")
    # Pixels are trained as float32: a float64 value beyond its range would become Inf there and show up
    # only later as "the loss is not finite".
    limit = np.finfo(np.float32).max
    if array.dtype.kind == "f" and array.dtype.itemsize > 4 and array.size and np.abs(array).max() > limit:
        raise DataError(
            f"'{path}' has pixels up to {float(np.abs(array).max()):.3g} in magnitude, beyond float32's range "
            f"({float(limit):.3g}); rescale the image (e.g. store it in sensible units) before training."
        )


def channel_axis(shape: tuple[int, ...], path, spatial_dims: int, channels: int) -> int | None:
    """Where the channel axis of an array of `shape` is: None (no such axis), 0 (first) or -1 (last).

    A rank that fits neither (a volume where images are expected, an RGB TIF where one channel is) is an
    error naming the file and the shapes that would fit.
    """
    if len(shape) == spatial_dims and channels == 1:
        return None
    if len(shape) == spatial_dims + 1:
        if shape[0] == channels:
            return 0
        if shape[-1] == channels:
            return -1
    spatial = "(H, W)" if spatial_dims == 2 else "(D, H, W)"
    expected = f"{spatial} or (1, ...)" if channels == 1 else f"({channels}, ...) or (..., {channels})"
    hint = ""
    if spatial_dims == 2 and len(shape) == 3 and channels == 1:
        hint = " (a volume? set spatial_dims: 3; several channels? set channels)"
    elif spatial_dims == 3 and len(shape) == 2:
        hint = " (a 2D image; set spatial_dims: 2)"
    raise DataError(
        f"'{path}' has shape {tuple(shape)}; with spatial_dims {spatial_dims} and channels {channels} "
        f"the dataset expects {expected}{hint}."
    )


def channel_first_shape(shape: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    if axis is None:
        return (1, *shape)
    return tuple(shape) if axis == 0 else (shape[-1], *shape[:-1])


def to_channel_first(array: np.ndarray, axis: int | None) -> np.ndarray:
    if axis is None:
        return array[None]
    return array if axis == 0 else np.moveaxis(array, -1, 0)


def _pil_pixels(image, channels: int) -> np.ndarray:
    # 16-bit and float grayscale keep their range; converting them to 'L' would clip to 8 bits.
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        gray = np.asarray(image)
        return gray if channels == 1 else np.repeat(gray[..., None], channels, axis=-1)
    return np.asarray(image.convert("L" if channels == 1 else "RGB"))


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def relative_name(path: Path, root: Path) -> str:
    """The path below `root` without its suffix, with '/' separators: the item's name and pairing key."""
    return Path(os.path.relpath(path, root)).with_suffix("").as_posix()
