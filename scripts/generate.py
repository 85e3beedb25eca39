"""Generate with a trained LDM run: float32 TIFs and a grid PNG out.

    python scripts/generate.py --run experiments/LDM_TIF/<key>/final --conditions data/sample/dente --out gen/
    python scripts/generate.py --run experiments/LDM_PSF/<key>/final --vectors vectors.json --out gen/
    python scripts/generate.py --run experiments/LDM_PSF/<key>/final --vector 0.3,0.1,900,1000,0.45,0.55,0.65 --out gen/
    python scripts/generate.py --run experiments/ControlNet_shapes/<key>/final --control masks/ --out gen/
    python scripts/generate.py --run experiments/LDM_CLS/<key>/best --labels 0 1 2 --out gen/
    python scripts/generate.py --run experiments/LDM_UNC/<key>/final --num-samples 16 --out gen/

`--run` is the run's `final/` (or `best/`) folder (UNet, projector, scheduler, `ldm.json` with the VAE
reference, scale factor and the data's intensity range). Image conditions are read and normalised as
the run's validation data was (its saved `config.yml`). Outputs are written in the data's intensity
range (the inverse of the dataset's normalisation: an image-conditioned sample with its condition's
stats, others with the mean stats of the run's targets; `--normalized` keeps the network's range), named
after their conditions. Vectors are given in the dataset's layout (a PSFDataset's `coords`: x, y,
depth_mm, focus_mm, wavelengths_um); the run's `condition.indices` picks the numbers it was trained on.
`--seed` makes the output reproducible: sample i starts from the noise of seed + i, whatever the batch
size.
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
from models.archs.vector_features import entries_used  # noqa: E402
from models.ldm.intensity import to_intensity  # noqa: E402
from utils.cli_args import OneLineParser, count, default_device, device, finite  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.images import make_grid, save_png  # noqa: E402
from utils.io_errors import as_user_error  # noqa: E402


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
    stats = torch.stack([torch.as_tensor(item["norm"]["gt"], dtype=torch.float64) for item in items])
    return [item["name"] for item in items], torch.stack([item["gt"] for item in items]), stats


def read_vectors(path: Path | None, inline: list[str]) -> list[list[float]]:
    vectors = [_numbers(text.split(","), f"--vector {text!r}") for text in inline]
    if path is not None:
        where = f"--vectors '{path}'"
        if not path.is_file():
            raise UserError(f"{where} is not a file; give a JSON list of vectors or a CSV file of rows.")
        try:
            text = path.read_text()
            rows = json.loads(text) if path.suffix == ".json" else None
        except Exception as error:  # missing, a folder, not UTF-8, not JSON: one sentence naming the file
            raise as_user_error(error, str(path)) or error from None
        if rows is None:  # CSV / whitespace rows
            rows = [line.replace(",", " ").split() for line in text.splitlines() if line.strip()]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise UserError(f"{where} must hold a list of vectors, e.g. [[0.1, 0.2, 900], [0.3, 0.1, 1000]].")
        vectors += [_numbers(row, f"{where} (row {i + 1})") for i, row in enumerate(rows)]
    if not vectors:
        raise UserError("The vectors given are empty; give --vector x,y,... or a --vectors file with rows.")
    return vectors


def _numbers(values, where: str) -> list[float]:
    """The finite numbers of one vector; NaN would be sampled into a NaN image without complaint."""
    numbers = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{where} has {str(value)!r}, which is not a number.") from None
        if not np.isfinite(number):
            raise UserError(f"{where} has {str(value)!r}; every number must be finite.")
        numbers.append(number)
    return numbers


def parse_labels(values: list[str]) -> list[int]:
    """`--labels 0 1 2` or `--labels 0,1,2`."""
    labels = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                labels.append(int(part))
            except ValueError:
                raise UserError(f"--labels takes whole numbers (class indices); got {part!r}.") from None
    return labels


def network_inputs(pipe, run: Path, conditions, vectors, labels, num_samples):
    """(names, inputs for the pipeline or None, per-sample intensity stats or None) for this run's kind."""
    kind = pipe.condition_type
    given = {"--conditions": conditions is not None, "--vector(s)": bool(vectors), "--labels": bool(labels)}
    wanted = {"image": "--conditions", "vector": "--vector(s)", "class": "--labels"}.get(kind)
    extra = [flag for flag, present in given.items() if present and flag != wanted]
    if extra:
        what = f"conditioned on {kind}s (give {wanted})" if wanted else "unconditional (give --num-samples)"
        raise UserError(f"This LDM is {what}, so {', '.join(extra)} does not apply.")
    if kind != "none" and num_samples is not None:
        raise UserError(
            f"--num-samples is for unconditional runs; this LDM makes one sample per condition ({wanted})."
        )
    if kind == "image":
        if conditions is None:
            raise UserError("This LDM is conditioned on images: give --conditions, a folder of TIFs.")
        names, inputs, stats = read_conditions(run, conditions)
        check_condition_size(pipe, names[0], inputs[:1])
        return names, inputs, stats
    if kind == "vector":
        if not vectors:
            raise UserError("This LDM is conditioned on vectors: give --vectors FILE or --vector x,y,...")
        lengths = sorted({len(v) for v in vectors})
        indices = pipe.description["condition"].get("indices")
        formulas = list(getattr(pipe.projector.config, "features", None) or [])
        if formulas:  # the formulas name the entries they use (v0, v1, ...)
            indices = list(range(entries_used(formulas)))
        needed = pipe.projector.config.in_channels
        usable = len(lengths) == 1 and (
            max(indices) < lengths[0] if indices is not None else lengths[0] == needed
        )
        if not usable:
            layout = (
                f"at least {max(indices) + 1} numbers (it uses entries {list(indices)})"
                if indices
                else (f"{needed} numbers")
            )
            raise UserError(f"This LDM takes vectors of {layout}; the vectors given have {lengths} numbers.")
        inputs = torch.tensor(vectors, dtype=torch.float32)
        return [f"sample_{i:04d}" for i in range(len(inputs))], inputs, None
    if kind == "class":
        classes = pipe.projector.config.num_classes
        if not labels:
            raise UserError(
                f"This LDM is conditioned on class labels: give --labels with indices from 0 to {classes - 1}, "
                "e.g. --labels 0 1 2."
            )
        bad = [label for label in labels if not 0 <= label < classes]
        if bad:
            raise UserError(f"--labels has {bad}, but this LDM knows {classes} classes: 0 to {classes - 1}.")
        inputs = torch.tensor(labels)
        return [f"class{int(c)}_{i:04d}" for i, c in enumerate(labels)], inputs, None
    count = 4 if num_samples is None else num_samples
    if count < 1:
        raise UserError(f"--num-samples is {count}; give at least 1.")
    return [f"sample_{i:04d}" for i in range(count)], None, None


def check_condition_size(pipe, name: str, image: torch.Tensor) -> None:
    """Refuse conditions the VAE cannot give back at their own size: a 13x21 image comes back 14x22 from
    a VAE that halves once, and the sample would no longer line up with its condition."""
    from models.ldm.frozen_vae import encode_latents

    with torch.no_grad():
        latent = encode_latents(pipe.vae, image.float().to(next(pipe.vae.parameters()).device))
        returned = list(pipe.vae.decode(pipe.vae.unscale_latents(latent)).shape[2:])
    size = list(image.shape[2:])
    if size != returned:
        factor = max(round(s / n) for s, n in zip(size, latent.shape[2:]))
        raise UserError(
            f"The condition '{name}' is {'x'.join(map(str, size))}, but this run's VAE gives back "
            f"{'x'.join(map(str, returned))}; give conditions whose sides are multiples of {factor} (e.g. "
            f"crop to {'x'.join(str(s - s % factor) for s in size)})."
        )


def generate(
    run: Path,
    out: Path,
    conditions=None,
    vectors=None,
    num_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    sampler=None,
    steps=None,
    guidance=None,
    device: str = "cpu",
    labels: list[int] | None = None,
    normalized: bool = False,
) -> list[Path]:
    from models.ldm.pipeline import LDMPipeline  # here, not at the top: `--help` answers at once

    pipe = LDMPipeline.from_final(str(run), device)
    kind = pipe.condition_type
    names, inputs, stats = network_inputs(pipe, run, conditions, vectors, labels, num_samples)
    intensity = pipe.description.get("intensity") or {"shift": 0.0, "scale": 1.0}
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file; give a folder for the generated TIFs.")
    out.mkdir(parents=True, exist_ok=True)
    written, tiles = [], []
    for start in range(0, len(names), batch_size):
        chunk = slice(start, start + batch_size)
        seeds = [seed + i for i in range(start, min(start + batch_size, len(names)))]
        batch = inputs[chunk] if inputs is not None else None
        images = pipe(
            batch, seeds=seeds, sampler=sampler, num_inference_steps=steps, guidance_scale=guidance
        ).cpu()
        shown = images
        if not normalized:
            per_image = (
                stats[chunk]
                if stats is not None
                else [[intensity["shift"], intensity["scale"]]] * len(images)
            )
            images = to_intensity(images, per_image)
        for i, (name, image) in enumerate(zip(names[chunk], images.numpy())):
            path = out / f"{name}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, image.astype(np.float32).squeeze())
            written.append(path)
            if len(tiles) < 16:  # the grid shows the network's range, where condition and sample compare
                sample = shown[i].numpy()
                pair = (
                    [batch[i].float().cpu().numpy(), sample]
                    if kind == "image" and batch[i].shape == sample.shape
                    else [sample]
                )
                tiles.append(np.concatenate(pair, axis=-1))
    save_png(make_grid(np.stack(tiles)), str(out / "grid.png"))
    return written


def main(argv=None) -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run",
        required=True,
        type=Path,
        help="a trained LDM (or ControlNet) run's final/, best/ or checkpoint-N/ folder",
    )
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
        "--conditioning-scale", type=finite(0.0), help="ControlNet residual weight; default: the run's"
    )
    parser.add_argument(
        "--labels", nargs="+", default=[], help="class indices of a class-conditioned run: 0 1 2 or 0,1,2"
    )
    parser.add_argument(
        "--num-samples",
        "--count",
        dest="num_samples",
        type=count(1),
        help="samples of an unconditional run (4)",
    )
    parser.add_argument(
        "--normalized", action="store_true", help="write the network's normalised range, not the data's"
    )
    parser.add_argument(
        "--sampler", choices=("ddpm", "ddim", "dpm_solver"), help="default: the run's val.sampler"
    )
    parser.add_argument("--steps", type=count(1), help="inference steps; default: the run's")
    parser.add_argument(
        "--guidance", type=finite(0.0), help="classifier-free guidance scale; default: the run's"
    )
    parser.add_argument("--seed", type=count(0), default=0)
    parser.add_argument("--batch-size", type=count(1), default=8)
    parser.add_argument("--device", type=device, default=default_device())
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
            args.num_samples,
            args.seed,
            args.batch_size,
            args.sampler,
            args.steps,
            args.guidance,
            args.device,
            labels=parse_labels(args.labels),
            normalized=args.normalized,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {len(written)} TIFs and grid.png into {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
