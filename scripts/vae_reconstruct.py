"""Reconstruct a folder of TIFs with a trained VAE: float32 TIFs, a metrics CSV and a grid PNG out.

    python scripts/vae_reconstruct.py --run experiments/VAE_TIF/<key>/final --input data/sample/tif --out recon/

`--run` is a VAE run's `final/` (or `checkpoint-N/`) folder; its saved `config.yml` says how the
training data was normalised, and the same normalisation (with the run's patch size) is applied here.
`--run` may also be a PTI-LDM-VAE `autoencoder_epochN.pth` or `checkpoint_epochN.pth`, read as it is, with
`--config` the YAML giving its network keys and data settings (checkpoints/VAE/pti_ldm_vae.yml):

    python scripts/vae_reconstruct.py --run autoencoder_epoch73.pth --config checkpoints/VAE/pti_ldm_vae.yml \
        --input data/sample/tif --out recon/

Reconstructions are written back in the input's original intensity range, with the input's names.
Metrics (PSNR, SSIM, MAE; data range of each input image) are computed in that original range.
"""

import csv
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cli.console import quiet_libraries  # noqa: E402
from utils.cli.imports import defer_unused_imports  # noqa: E402

defer_unused_imports()  # before diffusers loads: no script reads bitsandbytes
quiet_libraries()  # before diffusers and transformers load: bitsandbytes warns on import

from dataset.common.image_keys import NETWORK_INPUT_KEYS  # noqa: E402
from utils.cli.args import (  # noqa: E402
    MAX_BATCH,
    count,
    default_device,
    device,
    existing_file,
    existing_folder,
    output_folder,
    run_or_pth,
)
from utils.cli.script import ScriptParser  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.images.comparison import comparison_grid  # noqa: E402
from utils.images.grid import save_png  # noqa: E402
from utils.images.patches import patch_settings, sliding_window  # noqa: E402
from utils.losses.vae import decoded_image  # noqa: E402
from utils.metrics.image import mae, psnr, ssim  # noqa: E402


def load_vae(run: Path, device: str, config: Path | None = None):
    """(the autoencoder, its run's config): from a run's folder, or a PTI-LDM-VAE .pth with `config`."""
    if run.is_file() or config is not None:
        if not run.is_file() or config is None:
            raise UserError(
                f"--run '{run}' is a PTI-LDM-VAE .pth: give --config, the YAML with its network keys "
                "(checkpoints/VAE/pti_ldm_vae.yml)."
                if run.is_file()
                else "--config goes with a PTI-LDM-VAE .pth as --run; a run folder holds its own config.yml."
            )
        from models.pti.generation import pti_vae  # here, not at the top: `--help` answers at once

        vae, opt = pti_vae(run, config, device)
        return vae.eval(), opt
    config_path = run / "config.yml"
    if not config_path.is_file():
        config_path = run.parent / "config.yml"
    if not config_path.is_file():
        raise UserError(
            f"No config.yml in '{run}' or its parent: --run must be a VAE run's final/ or checkpoint folder."
        )
    opt = yaml.safe_load(config_path.read_text())
    weights = run / "net_g"
    if not (weights / "model.safetensors").is_file():
        raise UserError(
            f"No trained autoencoder in '{weights}' (expected model.safetensors from save_pretrained)."
        )
    from models.archs import find_arch  # here, not at the top: `--help` answers at once

    _, arch_cls = find_arch(opt["network"]["type"])
    vae = arch_cls.from_pretrained(weights).to(device).eval()
    return vae, opt


def reconstruct(
    run: Path,
    input_dir: Path,
    out: Path,
    batch_size: int = 4,
    device: str = "cpu",
    config: Path | None = None,
) -> list[dict]:
    from dataset.tif_dataset import TIFFolderDataset  # here, not at the top: `--help` answers at once

    vae, opt = load_vae(run, device, config)
    block = (opt.get("datasets") or {}).get("val") or (opt.get("datasets") or {}).get("train") or {}
    dataset = TIFFolderDataset(
        {
            "dir": str(input_dir),
            "phase": "val",
            **{k: block[k] for k in NETWORK_INPUT_KEYS if block.get(k) is not None},
        }
    )
    recon_type = (opt.get("train") or {}).get("recon_type", "l1")
    out.mkdir(parents=True, exist_ok=True)
    rows, grid_tiles = [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for batch in loader:
            x = batch["gt"].to(device)
            patches = patch_settings(opt.get("train") or {}, x.ndim - 2)
            if patches is not None:  # trained on patches: whole images window by window, blended
                raw = sliding_window(lambda p: vae(p, sample_posterior=False).reconstruction, x, *patches)
            else:
                raw = vae(x, sample_posterior=False).reconstruction
            pred = decoded_image(raw, recon_type).float().cpu()
            original = dataset.denormalize(batch["gt"], batch, "gt").float().numpy()
            restored = dataset.denormalize(pred, batch, "gt").float().numpy()
            for name, target, image in zip(batch["name"], original, restored):
                path = out / f"{name}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, image.squeeze(0).astype(np.float32))
                t, p = target[None], image[None]
                rows.append({"name": name, "psnr": psnr(p, t), "ssim": ssim(p, t), "mae": mae(p, t)})
                if len(grid_tiles) < 8:
                    grid_tiles.append((target, image))
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "psnr", "ssim", "mae"])
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow(
            {"name": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "mae")}}
        )
    if grid_tiles:
        targets, images = (np.stack(column) for column in zip(*grid_tiles))
        save_png(comparison_grid(targets, images), str(out / "grid_input_recon_diff.png"))
    return rows


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__)
    parser.add_argument(
        "--run",
        required=True,
        type=run_or_pth,
        reads=True,
        help="a VAE run's final/ (or checkpoint-N/) folder, or a PTI-LDM-VAE .pth (with --config)",
    )
    parser.add_argument(
        "--config", type=existing_file, reads=True, help="with a .pth --run: the YAML of its network keys"
    )
    parser.add_argument(
        "--input", required=True, type=existing_folder, reads=True, help="folder of .tif/.tiff images"
    )
    parser.add_argument("--out", required=True, type=output_folder, writes=True, help="output folder")
    parser.add_argument("--batch-size", type=count(1, MAX_BATCH), default=4)
    parser.add_argument("--device", type=device, default=default_device())
    return parser


def run(args) -> int:
    rows = reconstruct(args.run, args.input, args.out, args.batch_size, args.device, args.config)
    mean_psnr = float(np.mean([r["psnr"] for r in rows]))
    print(
        f"Reconstructed {len(rows)} images into {args.out} (mean PSNR {mean_psnr:.2f} dB); metrics.csv and "
        "grid PNG written."
    )
    return 0


def main(argv=None) -> int:
    return build_parser().run(run, argv)


if __name__ == "__main__":
    sys.exit(main())
