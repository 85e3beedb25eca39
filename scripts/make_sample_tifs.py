"""Write a small sample of float32 TIFs from images that scikit-image ships, so the examples run offline.

    python scripts/make_sample_tifs.py [--out data/sample] [--patients 4] [--slices 6] [--size 256]

The output depends only on the arguments: the same files every time (`write_samples` lists the layout).
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
from skimage import data
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cli.args import count, output_folder, seed  # noqa: E402
from utils.cli.script import ScriptParser  # noqa: E402

# Grayscale pictures that ship inside scikit-image (no download).
SOURCES = (
    "camera",
    "moon",
    "coins",
    "shepp_logan_phantom",
    "brick",
    "grass",
    "gravel",
    "cell",
    "page",
    "text",
)


def picture(name: str) -> np.ndarray:
    image = getattr(data, name)().astype(np.float32)
    return (image - image.min()) / max(float(image.max() - image.min()), 1e-6)


def view(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square window (60-95 % of the short side) resized to `size`, inside a round field of view."""
    side = int(min(image.shape) * rng.uniform(0.6, 0.95))
    top = int(rng.integers(0, image.shape[0] - side + 1))
    left = int(rng.integers(0, image.shape[1] - side + 1))
    window = resize(image[top : top + side, left : left + side], (size, size), anti_aliasing=True)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    field = np.hypot(yy, xx) < 0.47 * size
    # Intensities away from 0 inside the field, so the zero background is distinct (zscore_foreground).
    return np.where(field, 100 + 900 * window, 0).astype(np.float32)


def add_teeth(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The condition: bright ellipses along a lower arc, as teeth in a dental slice."""
    size = image.shape[0]
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    out = image.copy()
    count = int(rng.integers(5, 9))
    for angle in np.linspace(0.2 * np.pi, 0.8 * np.pi, count) + rng.normal(0, 0.04, count):
        cy, cx = size / 2 + 0.3 * size * np.sin(angle), size / 2 + 0.3 * size * np.cos(angle)
        ry, rx = size * rng.uniform(0.03, 0.05), size * rng.uniform(0.02, 0.035)
        tooth = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        out[tooth] = 1500 + 200 * rng.random()
    return out


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image, photometric="minisblack")


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=output_folder,
        writes=True,
        default=Path("data/sample"),
        help="folder to write into (default: data/sample)",
    )
    parser.add_argument(
        "--patients", type=count(1, len(SOURCES)), default=4, help=f"at most {len(SOURCES)} (default: 4)"
    )
    parser.add_argument("--slices", type=count(1, 1000), default=6, help="slices per patient (default: 6)")
    parser.add_argument(
        "--size", type=count(16, 4096), default=256, help="height and width in pixels (default: 256)"
    )
    parser.add_argument("--seed", type=seed, default=0)
    return parser


def main(argv=None) -> int:
    return build_parser().run(write_samples, argv)


def write_samples(args) -> int:
    """Writes float32, one-channel images with a zero background outside a round field:

        <out>/tif/p01_slice00.tif ...        one folder, for a VAE (TIFFolderDataset)
        <out>/edente/p01_slice00.tif ...     targets      } paired by file name (TIFPairDataset):
        <out>/dente/p01_slice00.tif ...      conditions   } the target plus bright "teeth" along an arc
        <out>/volumes/p01.tif ...            one (slices, size, size) volume per patient (spatial_dims: 3)

    Each "patient" is one scikit-image picture; its slices are shifted, zoomed views of it, so slices of
    one patient resemble each other and a split by patient (`split_by: '^(p\\d+)_'`) matters."""
    out = args.out
    rng = np.random.default_rng(args.seed)
    for p, source in enumerate(SOURCES[: args.patients], start=1):
        image = picture(source)
        slices = [view(image, rng, args.size) for _ in range(args.slices)]
        for s, target in enumerate(slices):
            name = f"p{p:02d}_slice{s:02d}.tif"
            write(out / "tif" / name, target)
            write(out / "edente" / name, target)
            write(out / "dente" / name, add_teeth(target, rng))
        write(out / "volumes" / f"p{p:02d}.tif", np.stack(slices))
    total = args.patients * args.slices
    print(
        f"Wrote {total} slices in {out / 'tif'}, {total} pairs in {out / 'dente'} -> {out / 'edente'}, "
        f"{args.patients} volumes in {out / 'volumes'}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
