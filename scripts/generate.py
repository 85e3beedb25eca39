"""Generate with a trained LDM run: float32 TIFs and a grid PNG out.

    python scripts/generate.py --run experiments/LDM_TIF/<key>/final --conditions data/sample/dente --out gen/
    python scripts/generate.py --run experiments/LDM_PSF/<key>/final --vectors vectors.json --out gen/
    python scripts/generate.py --run experiments/LDM_PSF/<key>/final --vector 0.3,0.1,900,1000,0.45,0.55,0.65 --out gen/
    python scripts/generate.py --run experiments/ControlNet_shapes/<key>/final --control masks/ --out gen/

`--run` is the run's `final/` folder (UNet, projector, scheduler, `ldm.json` with the VAE reference and
scale factor). Image conditions are read and normalised as the run's validation data was (its saved
`config.yml`); outputs are in that normalised range, named after their conditions. Vectors are given in
the dataset's layout (a PSFDataset's `coords`: x, y, depth_mm, focus_mm, wavelengths_um); the run's
`condition.indices` picks the numbers it was trained on. `--seed` makes the output reproducible: sample i
starts from the noise of seed + i, whatever the batch size.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.console import quiet_libraries  # noqa: E402

quiet_libraries()  # before diffusers and transformers load: bitsandbytes warns on import

from dataset.common.image_items import NETWORK_INPUT_KEYS  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.images import make_grid, save_png  # noqa: E402


def read_conditions(run: Path, folder: Path):
    """(names, condition images) from a folder of TIFs, normalised like the run's validation data."""
    from dataset.tif_dataset import TIFFolderDataset

    opt = yaml.safe_load((run / "config.yml").read_text()) if (run / "config.yml").is_file() else {}
    block = (opt.get("datasets") or {}).get("val") or {}
    dataset = TIFFolderDataset(
        {
            "dir": str(folder),
            "phase": "val",
            **{k: block[k] for k in NETWORK_INPUT_KEYS if block.get(k) is not None},
        }
    )
    items = [dataset[i] for i in range(len(dataset))]
    return [item["name"] for item in items], torch.stack([item["gt"] for item in items])


def read_vectors(path: Path | None, inline: list[str]) -> list[list[float]]:
    vectors = [[float(v) for v in text.split(",")] for text in inline]
    if path is not None:
        text = path.read_text()
        if path.suffix == ".json":
            vectors += [[float(v) for v in row] for row in json.loads(text)]
        else:  # CSV / whitespace rows
            vectors += [
                [float(v) for v in line.replace(",", " ").split()]
                for line in text.splitlines()
                if line.strip()
            ]
    return vectors


def generate(
    run: Path,
    out: Path,
    conditions=None,
    vectors=None,
    count: int = 4,
    seed: int = 0,
    batch_size: int = 8,
    sampler=None,
    steps=None,
    guidance=None,
    device: str = "cpu",
) -> list[Path]:
    from models.ldm.pipeline import LDMPipeline  # here, not at the top: `--help` answers at once

    pipe = LDMPipeline.from_final(str(run), device)
    kind = pipe.condition_type
    if kind == "image":
        if conditions is None:
            raise UserError("This LDM is conditioned on images: give --conditions, a folder of TIFs.")
        names, inputs = read_conditions(run, conditions)
    elif kind == "vector":
        if not vectors:
            raise UserError("This LDM is conditioned on vectors: give --vectors FILE or --vector x,y,...")
        inputs = torch.tensor(vectors, dtype=torch.float32)
        names = [f"sample_{i:04d}" for i in range(len(inputs))]
    elif kind == "class":
        inputs = torch.tensor([int(v[0]) for v in vectors or []])
        names = [f"class{int(c)}_{i:04d}" for i, c in enumerate(inputs)]
    else:
        inputs, names = None, [f"sample_{i:04d}" for i in range(count)]
    out.mkdir(parents=True, exist_ok=True)
    written, tiles = [], []
    for start in range(0, len(names), batch_size):
        chunk = slice(start, start + batch_size)
        seeds = [seed + i for i in range(start, min(start + batch_size, len(names)))]
        batch = inputs[chunk] if inputs is not None else None
        images = pipe(
            batch, seeds=seeds, sampler=sampler, num_inference_steps=steps, guidance_scale=guidance
        ).cpu()
        for i, (name, image) in enumerate(zip(names[chunk], images.numpy())):
            path = out / f"{name}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, image.astype(np.float32).squeeze())
            written.append(path)
            if len(tiles) < 16:
                pair = (
                    [batch[i].float().cpu().numpy(), image]
                    if kind == "image" and batch[i].shape == image.shape
                    else [image]
                )
                tiles.append(np.concatenate(pair, axis=-1))
    save_png(make_grid(np.stack(tiles)), str(out / "grid.png"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, type=Path, help="a trained LDM run's final/ folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--conditions", type=Path, help="folder of condition TIFs (image-conditioned runs)")
    parser.add_argument(
        "--vectors", type=Path, help="JSON list of vectors, or CSV rows (vector-conditioned runs)"
    )
    parser.add_argument(
        "--vector", action="append", default=[], help="one vector, comma-separated (repeatable)"
    )
    parser.add_argument(
        "--control", type=Path, help="folder of control TIFs (--run: a ControlNet run's final/)"
    )
    parser.add_argument(
        "--conditioning-scale", type=float, help="ControlNet residual weight; default: the run's"
    )
    parser.add_argument("--count", type=int, default=4, help="samples of an unconditional run")
    parser.add_argument(
        "--sampler", choices=("ddpm", "ddim", "dpm_solver"), help="default: the run's val.sampler"
    )
    parser.add_argument("--steps", type=int, help="inference steps; default: the run's")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale; default: the run's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.control is not None:  # a ControlNet run: its sampling lives in models/controlnet/
        from models.controlnet.generation import main_with_control

        return main_with_control(args)
    try:
        vectors = read_vectors(args.vectors, args.vector) if (args.vectors or args.vector) else None
        written = generate(
            args.run,
            args.out,
            args.conditions,
            vectors,
            args.count,
            args.seed,
            args.batch_size,
            args.sampler,
            args.steps,
            args.guidance,
            args.device,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {len(written)} TIFs and grid.png into {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
