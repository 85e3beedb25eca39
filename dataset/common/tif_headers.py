"""TIF headers parsed once: where an uncompressed file keeps its pixels, and headers shared by many files.

tifffile parses a file's whole header (every tag of every page) on each open. For a 256x256 float32
image that takes several times as long as reading its pixels, and building a dataset of 10,000 small
images spends seconds probing them. Two shortcuts, both falling back to tifffile whenever they do not
apply:

- `RawPixels`: an uncompressed, contiguous series is read with one read at the offset its
  header gave when the dataset was built, as long as the file's size and modification time are unchanged.
- `KnownHeaders`: files written by one program usually share their header byte for byte. When a
  header lies wholly before the pixels, its bytes identify it, so the next file of the same size whose
  first bytes are the same needs no parsing.
"""

import os
from dataclasses import dataclass, replace
from math import prod
from typing import NamedTuple

import numpy as np

NUMERIC_KINDS = "biuf"  # real numbers only: bool, signed and unsigned integers, floats
LONGEST_SHARED_HEADER = 1 << 16  # bytes; longer headers (large descriptions) are parsed every time
# Headers kept per file size: files whose headers all differ (a UUID in each, as OME-TIFF writes) stop
# adding to the table here, so that each later probe compares against a few prefixes at most.
HEADERS_PER_SIZE = 8


@dataclass(frozen=True, slots=True)
class RawPixels:
    """Where an uncompressed, contiguous TIF keeps its pixels, and the file's size and mtime then."""

    offset: int
    dtype: np.dtype  # in the file's byte order
    shape: tuple[int, ...]
    size: int
    mtime_ns: int

    def pixels(self, path: str) -> np.ndarray | None:
        """The pixels in native byte order, or None when the file changed since it was probed."""
        array = np.empty(self.shape, dtype=self.dtype)
        # One unbuffered read straight into the array: np.fromfile takes 5x as long for a small image.
        with open(path, "rb", buffering=0) as f:
            stat = os.fstat(f.fileno())
            if (stat.st_size, stat.st_mtime_ns) != (self.size, self.mtime_ns):
                return None
            f.seek(self.offset)
            view, filled = memoryview(array.reshape(-1).view(np.uint8)), 0
            while filled < len(view) and (got := f.readinto(view[filled:])):
                filled += got
        if filled < len(view):
            return None
        return array if self.dtype.isnative else array.astype(self.dtype.newbyteorder("="))


class Header(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype
    raw: RawPixels | None = None  # set for uncompressed TIFs, whose pixels `files.read` reads directly


def parse(path: str) -> tuple[Header, int | None]:
    """(the header of the TIF's first series, the number of leading bytes that hold all of it, or None
    when some of it lies elsewhere). tifffile's errors pass through."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
        stat = os.stat(path)
        offset = (
            series.dataoffset
        )  # set only when the bytes are final (uncompressed, no predictor), in one run
        if (
            offset is None
            or dtype.kind not in NUMERIC_KINDS
            or offset + prod(shape) * dtype.itemsize > stat.st_size  # truncated: tifffile reports it
        ):
            return Header(shape, dtype), None
        raw = RawPixels(offset, dtype.newbyteorder(tif.byteorder), shape, stat.st_size, stat.st_mtime_ns)
        return Header(shape, dtype, raw), _leading_bytes(tif, offset)


def _leading_bytes(tif, data_offset: int) -> int | None:
    """`data_offset` when the file's only page has its directory and tag values before the pixels."""
    if len(tif.pages) != 1 or data_offset > LONGEST_SHARED_HEADER:
        return None
    page = tif.pages.first
    layout = tif.tiff
    ends = [page.offset + layout.tagnosize + len(page.tags) * layout.tagsize + layout.offsetsize]
    ends += [tag.valueoffset + tag.valuebytecount for tag in page.tags.values()]
    return data_offset if max(ends) <= data_offset else None


class KnownHeaders:
    """Headers already parsed while probing a dataset, by file size and leading bytes."""

    def __init__(self):
        self._by_size: dict[int, dict[bytes, Header]] = {}

    def probe(self, path: str) -> Header:
        stat = os.stat(path)
        known = self._by_size.get(stat.st_size, {})
        if known:
            with open(path, "rb") as f:
                start = f.read(max(len(prefix) for prefix in known))
            for prefix, header in known.items():
                if start[: len(prefix)] == prefix:
                    raw = replace(header.raw, mtime_ns=stat.st_mtime_ns)
                    return header._replace(raw=raw)
        header, leading = parse(path)
        if leading is not None and len(known) < HEADERS_PER_SIZE:
            with open(path, "rb") as f:
                self._by_size.setdefault(stat.st_size, {})[f.read(leading)] = header
        return header
