"""Sample a trained autoencoder from random latents: float32 TIFs and a grid PNG out.

    python scripts/vae_sample.py --run experiments/VAE_PSF/<key>/final --num-samples 16 --out vae_samples/

`--run` is a VAE or multi-task autoencoder run's `final/` (or `checkpoint-N/`) folder. Latents are drawn
from N(0, I) in the space stage 2 diffuses and divided by the run's stored `scaling_factor` (plus its
shift) before decoding, so they have the spread of the training latents; a VQ-VAE's are then snapped
to the nearest codebook entries, the only latents its decoder has seen. The latent's shape is the one
the encoder gives for an image of `--image-size` (default: the arch's `sample_size`, else the run's
validation data). Outputs are in the training data's normalised range, like `vae_reconstruct.py`'s before
denormalisation; sample i is drawn from seed `--seed` + i.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.vae_reconstruct import load_vae  # noqa: E402
from utils.cli.args import (  # noqa: E402
    MAX_IMAGE_SIZE,
    MAX_SAMPLES,
    count,
    default_device,
    device,
    output_folder,
    seed,
)
from utils.cli.script import ScriptParser  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.images.grid import make_grid, save_png  # noqa: E402
from utils.losses.vae import decoded_image  # noqa: E402


def image_size(vae, opt: dict, given: int | None) -> int:
    if given:
        return given
    block = (opt.get("datasets") or {}).get("val") or (opt.get("datasets") or {}).get("train") or {}
    for value in (
        getattr(vae.config, "sample_size", None),
        block.get("image_size"),
        block.get("patch_size"),
        block.get("kernel_size"),
    ):
        if isinstance(value, int) and value > 0:
            return value
    raise UserError(
        "The run names no image size (network.sample_size or datasets.val.image_size); give --image-size."
    )


@torch.no_grad()
def sample(
    run: Path, out: Path, num_samples: int, seed: int = 0, size: int | None = None, device: str = "cpu"
):
    """Decode `num_samples` random latents; returns the images (N, C, H, W) and writes them into `out`."""
    # Here, not at the top: it loads every arch (diffusers, transformers), and `--help` answers at once.
    from models.archs.autoencoder_outputs import decode_generated

    vae, opt = load_vae(run, device)
    size = image_size(vae, opt, size)
    channels = vae.config.in_channels
    spatial = int((opt.get("network") or {}).get("spatial_dims", 2) or 2)
    probe = vae.encode(torch.zeros(1, channels, *[size] * spatial, device=device))
    like = next(
        t
        for t in (probe.latent_dist and probe.latent_dist.mean, probe.latent, probe.quantized)
        if t is not None
    )
    noise = torch.stack(
        [
            torch.randn(like.shape[1:], generator=torch.Generator().manual_seed(seed + i))
            for i in range(num_samples)
        ]
    ).to(device)
    recon_type = (opt.get("train") or {}).get("recon_type", "l1")
    images = decoded_image(decode_generated(vae, noise), recon_type).float().cpu()
    if list(images.shape[2:]) != [size] * spatial:  # a size the encoder rounds: 3 comes back as 4
        factor = max(images.shape[-1] // like.shape[-1], 1)  # the decoder's upsampling
        raise UserError(
            f"--image-size {size} comes back from this VAE as {images.shape[-1]}; give a multiple of {factor} "
            f"(e.g. {max(factor, size - size % factor)})."
        )
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images.numpy()):
        tifffile.imwrite(out / f"sample_{i:04d}.tif", image.astype(np.float32).squeeze())
    if spatial == 2:
        save_png(make_grid(images[:64].numpy()), str(out / "grid.png"))
    return images


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__)
    parser.add_run_argument("an autoencoder run's final/ (or checkpoint-N/) folder")
    parser.add_argument("--num-samples", type=count(1, MAX_SAMPLES), default=16)
    parser.add_argument(
        "--out", type=output_folder, writes=True, default=Path("vae_samples"), help="output folder"
    )
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument(
        "--image-size",
        type=count(1, MAX_IMAGE_SIZE),
        help="default: the arch's sample_size or the run's data size",
    )
    parser.add_argument("--device", type=device, default=default_device())
    return parser


def run(args) -> int:
    images = sample(args.run, args.out, args.num_samples, args.seed, args.image_size, args.device)
    print(
        f"Decoded {len(images)} random latents into {args.out} (values {images.min():.3g} to {images.max():.3g})."
    )
    return 0


def main(argv=None) -> int:
    return build_parser().run(run, argv)


if __name__ == "__main__":
    sys.exit(main())
