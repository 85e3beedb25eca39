"""Benchmark of the built-in PSF simulator (not a test).

    .venv/bin/python bench/psf.py                 # CPU
    .venv/bin/python bench/psf.py --device cuda   # GPU, when there is one
    .venv/bin/python bench/psf.py --threads 1     # one CPU thread (steadier on a busy machine)

Prints, for each shipped lens at kernel 64: PSFs per second one point per call (as DeepLens's
figures were taken; best and median of the repeats) and 49 points per call (a 7 x 7 map), at spp 16384 and 65536; the time of a 7 x 7
`psf_map` of the Cooke triplet; and the Monte-Carlo noise of stratified against independent pupil
sampling (DeepLens's), as the L1 distance to a 1M-ray reference kernel.

Reference, DeepLens on the project's 2-core CPU at spp 16384: about 6 ms per PSF for a two-surface
singlet, 20 ms for the Cooke triplet, and 0.67 s for the Cooke triplet's 7 x 7 PSF map.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.optics import GeoLens, shipped_lenses  # noqa: E402


def timed(fn, repeats: int, device) -> tuple[float, float]:
    """Best and median seconds of `fn()` after one warm-up call.

    The best is the code's speed; on a shared machine the median also counts the neighbours.
    """
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0], times[len(times) // 2]


def throughput(device, repeats):
    print(f"PSFs per second, kernel 64, device {device}, {torch.get_num_threads()} threads")
    print(
        f"{'lens':26s} {'spp':>6s} {'best ms':>8s} {'median ms':>10s} {'PSF/s (best)':>13s} {'49/call PSF/s':>14s}"
    )
    one = torch.tensor([[0.5, 0.5, -10000.0]])
    grid = torch.stack(
        torch.meshgrid(torch.linspace(-0.9, 0.9, 7), torch.linspace(-0.9, 0.9, 7), indexing="ij"), dim=-1
    ).reshape(-1, 2)
    many = torch.cat([grid, torch.full((49, 1), -10000.0)], dim=-1)
    for path in shipped_lenses():
        lens = GeoLens(filename=path, device=device)
        lens.refocus(-10000.0)
        for spp in (16384, 65536):
            best, median = timed(lambda lens=lens, spp=spp: lens.psf(one, ks=64, spp=spp), repeats, device)
            batch, _ = timed(
                lambda lens=lens, spp=spp: lens.psf(many, ks=64, spp=spp), max(3, repeats // 4), device
            )
            print(
                f"{path.name:26s} {spp:6d} {best * 1e3:8.2f} {median * 1e3:10.2f} {1 / best:13.0f} {49 / batch:14.0f}"
            )


def psf_map_time(device, repeats):
    lens = GeoLens(filename="cooke_triplet_f50.json", device=device)
    lens.refocus(-10000.0)
    best, median = timed(lambda: lens.psf_map(-10000.0, grid=(7, 7), ks=64, spp=16384), repeats, device)
    print(f"\nCooke triplet psf_map 7x7, ks 64, spp 16384: best {best:.3f} s, median {median:.3f} s")


def noise(device):
    print("\nMonte-Carlo noise: mean L1 distance to a 1M-ray kernel (ks 64, 3 field points, 4 seeds)")
    points = torch.tensor([[0.0, 0.0, -10000.0], [0.5, 0.3, -3000.0], [0.9, -0.7, -1000.0]])
    for path in shipped_lenses():
        lens = GeoLens(filename=path, device=device)
        lens.refocus(-5000.0)
        reference = lens.psf(points, ks=64, spp=1 << 20, seed=123)
        row = []
        for stratified, spp in ((True, 16384), (False, 16384), (False, 65536), (True, 65536)):
            errors = [
                float(
                    (lens.psf(points, ks=64, spp=spp, seed=s, stratified=stratified) - reference).abs().sum()
                )
                for s in range(4)
            ]
            label = "stratified" if stratified else "independent"
            row.append(f"{label} {spp}: {sum(errors) / len(errors) / len(points):.4f}")
        print(f"{path.name:28s} " + "   ".join(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-noise", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        # On a shared CPU, busy cores stall every parallel region of a multi-threaded run.
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    throughput(device, args.repeats)
    psf_map_time(device, max(3, args.repeats // 4))
    if not args.skip_noise:
        noise(device)


if __name__ == "__main__":
    main()
