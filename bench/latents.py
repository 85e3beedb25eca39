"""Time of the latent-space scripts (not a test): encoding against a plain loop, then the 2-D maps of N latents.

The VAE is checkpoints/VAE/tif.yml's AutoencoderKL (64x64 images -> 4x16x16 latents, 1,024 features),
at its initial weights (the time does not depend on them); the images are N random 64x64 float32 TIFs
written to a temporary folder. For each N it first times three ways of getting their posterior means,
batch by batch in turn, each step timed (median of `--rounds` totals):

- plain: the images already in memory as one tensor, encoded in batches under `torch.no_grad` (what a
  user's own loop does at best; it reads no file);
- analyze_latents.py: its loop (`encoded_batches`) on the folder: building the dataset (probing every
  file), reading the TIFs, the posterior means, the thumbnails of the map's hover;
- val.latent_map: the plain loop plus `ValidationLatentMap.add` on each batch (the map takes the
  posterior means of the validation pass's own forward, so what it adds is that collection);

and prints each as a ratio to the plain loop's time (target at most 1.1). Then it times the features
(flatten + standardise), each embedding (PCA, UMAP, t-SNE) and the scores (silhouette, kNN accuracy,
trustworthiness). UMAP's first call compiles numba code; that one-off cost is timed apart, on 100
points, before the runs. The load average of the machine is printed before and after.

    python bench/latents.py [--sizes 1000 10000] [--batch-size 16] [--rounds 3] [--threads 2] [--encode-only]
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import tifffile
import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models.archs import define_network  # noqa: E402
from scripts.latent_analysis.encoding import encoded_batches  # noqa: E402
from scripts.latent_analysis.sources import folder_sources  # noqa: E402
from utils.latent_maps import embed_2d, latent_features, separation_scores, trustworthiness_score  # noqa: E402
from utils.latent_maps.training_map import LATENT_MAP_KEYS, ValidationLatentMap  # noqa: E402

SIZE = 64
WAYS = ["plain", "analyze_latents.py", "val.latent_map"]  # the ways of encoding compared, in this order


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def write_images(folder: str, count: int) -> torch.Tensor:
    """`count` random 64x64 TIFs in `folder`; returns them as one (N, 1, 64, 64) tensor."""
    images = np.random.default_rng(0).random((count, 1, SIZE, SIZE), dtype=np.float32)
    for i, image in enumerate(images):
        tifffile.imwrite(os.path.join(folder, f"img{i:05d}.tif"), image[0])
    return torch.from_numpy(images)


def plain_steps(vae, images: torch.Tensor, batch: int, latent_map=None):
    """The plain loop, one batch per step: posterior means under `torch.no_grad`."""
    for start in range(0, len(images), batch):
        x = images[start : start + batch]
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.mean
        if latent_map is not None:
            latent_map.add(latents, x)
        yield latents.numpy()


def plain_encode(vae, images: torch.Tensor, batch: int) -> np.ndarray:
    return np.concatenate(list(plain_steps(vae, images, batch)))


def script_steps(vae, folder: str, batch: int):
    """analyze_latents.py's loop, one batch per step; the first step also builds the dataset (probing
    every file), as the script does before its first batch."""
    sources = folder_sources([f"all={folder}"], {})
    vae = copy.deepcopy(vae)  # the script's own network: encoded_batches makes its weights channels_last
    for _, _, means, _ in encoded_batches(vae, sources, batch):
        yield means


def compare_encoding(vae, folder: str, images: torch.Tensor, batch: int, rounds: int) -> dict:
    """Seconds of each way (median over rounds) and the largest latent difference. The ways advance
    batch by batch in turn, each step timed, so a machine whose speed drifts slows all of them alike."""
    seconds = {name: [] for name in WAYS}
    plain_encode(vae, images[: 4 * batch], batch)  # warm-up: the kernels' first calls
    for round_number in range(rounds):
        latent_map = ValidationLatentMap({**LATENT_MAP_KEYS, "max_points": len(images)})
        latent_map.begin(0)
        steps = {
            "plain": plain_steps(vae, images, batch),
            "analyze_latents.py": script_steps(vae, folder, batch),
            "val.latent_map": plain_steps(vae, images, batch, latent_map),
        }
        spent = dict.fromkeys(WAYS, 0.0)
        results = {name: [] for name in WAYS}
        shift = round_number % len(WAYS)  # each way goes first in turn
        order = WAYS[shift:] + WAYS[:shift]
        for _ in range(-(-len(images) // batch)):
            for name in order:
                means, elapsed = timed(next, steps[name])
                spent[name] += elapsed
                results[name].append(means)
        for name in WAYS:
            seconds[name].append(spent[name])
    print(
        "  rounds: " + "; ".join(f"{name} " + " / ".join(f"{t:.1f}" for t in seconds[name]) for name in WAYS)
    )
    difference = float(
        np.abs(np.concatenate(results["analyze_latents.py"]) - np.concatenate(results["plain"])).max()
    )
    return {name: statistics.median(values) for name, values in seconds.items()}, difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batch-size", type=int, default=16, help="analyze_latents.py's default")
    parser.add_argument("--rounds", type=int, default=3, help="encoding rounds (each way once per round)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encode-only", action="store_true", help="time the encoding alone, not the maps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch threads {args.threads}"
    )
    with open(os.path.join(ROOT, "checkpoints", "VAE", "tif.yml")) as f:
        network = yaml.safe_load(f)["network"]
    torch.manual_seed(0)
    vae = define_network(network).eval()
    if not args.encode_only:
        _, compile_seconds = timed(embed_2d, np.random.default_rng(0).standard_normal((100, 8)), "umap")
        print(f"UMAP first call (numba compilation, once per process): {compile_seconds:.1f} s")
    for count in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            images = write_images(folder, count)
            seconds, difference = compare_encoding(vae, folder, images, args.batch_size, args.rounds)
        plain = seconds["plain"]
        print(
            f"N={count}, batch {args.batch_size}, {args.rounds} round(s): encode "
            + "; ".join(f"{name} {t:.1f} s ({t / plain:.2f}x)" for name, t in seconds.items())
            + f"; largest difference from the plain loop's latents {difference:.1e}",
            flush=True,
        )
        if args.encode_only:
            continue
        latents = plain_encode(vae, images, args.batch_size)
        features, feature_seconds = timed(latent_features, latents, "flatten")
        groups = np.arange(count) % 2
        line = [f"N={count}: features {feature_seconds:.2f} s"]
        coords = {}
        for method in ("pca", "umap", "tsne"):
            coords[method], seconds = timed(embed_2d, features, method)
            line.append(f"{method} {seconds:.1f} s")
        _, score_seconds = timed(separation_scores, features, groups)
        _, trust_seconds = timed(trustworthiness_score, features, coords["umap"])
        line.append(f"silhouette+kNN {score_seconds:.1f} s, trustworthiness {trust_seconds:.1f} s per map")
        print("; ".join(line), flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
