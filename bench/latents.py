"""Time of the latent-space scripts.latent_analysis (not a test): encoding and 2-D embedding of N latents.

The VAE is checkpoints/VAE/tif.yml's AutoencoderKL (64x64 images -> 4x16x16 latents, 1,024 features),
at its initial weights (the time does not depend on them); the images are random 64x64 ones. For each N
it times: encoding (batches of 64, posterior means), the features (flatten + standardise), each
embedding (PCA, UMAP, t-SNE) and the scores (silhouette, kNN accuracy, trustworthiness). UMAP's first
call compiles numba code; that one-off cost is timed apart, on 100 points, before the runs. The load
average of the machine is printed before and after (the CPU may be shared).

    python bench/latents.py [--sizes 1000 10000] [--threads 2]
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models.archs import define_network  # noqa: E402
from utils.latent_maps import embed_2d, latent_features, separation_scores, trustworthiness_score  # noqa: E402


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def encode(vae, count: int, batch: int = 64) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    out = []
    with torch.no_grad():
        for start in range(0, count, batch):
            x = torch.rand((min(batch, count - start), 1, 64, 64), generator=generator)
            out.append(vae.encode(x).latent_dist.mean.numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch threads {args.threads}"
    )
    with open(os.path.join(ROOT, "checkpoints", "VAE", "tif.yml")) as f:
        network = yaml.safe_load(f)["network"]
    torch.manual_seed(0)
    vae = define_network(network).eval()
    _, compile_seconds = timed(embed_2d, np.random.default_rng(0).standard_normal((100, 8)), "umap")
    print(f"UMAP first call (numba compilation, once per process): {compile_seconds:.1f} s")
    for count in args.sizes:
        latents, encode_seconds = timed(encode, vae, count)
        features, feature_seconds = timed(latent_features, latents, "flatten")
        groups = np.arange(count) % 2
        line = [f"N={count}: encode {encode_seconds:.1f} s ({count / encode_seconds:.0f} img/s)"]
        line.append(f"features {feature_seconds:.2f} s")
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
