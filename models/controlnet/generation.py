"""`scripts/generate.py --control <folder>`: sample a trained ControlNet run on a folder of control TIFs.

Each control TIF (a mask, an edge map; (H, W) or (C, H, W), values as in training) gives one sample,
named after it; the run's LDM condition, if it has one, is not given here, so only ControlNets over an
unconditional LDM generate from controls alone. Sample i starts from the noise of seed + i.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
import torch

from models.controlnet.pipeline import ControlNetPipeline
from utils.errors import DataError, UserError
from utils.images import make_grid, save_png


def read_controls(folder: Path) -> tuple[list[str], torch.Tensor]:
    from dataset.common import files

    if not Path(folder).is_dir():
        raise DataError(f"--control '{folder}' is not a folder; give a folder of control TIFs.")
    paths = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in (".tif", ".tiff"))
    if not paths:
        raise DataError(f"'{folder}' holds no .tif control images.")
    arrays = []
    for path in paths:  # the dataset's reader: a broken file, text pixels or NaN named, not a traceback
        raw = files.read(path)
        files.check_dtype(raw.dtype, path)
        files.check_finite(raw, path)
        array = np.asarray(raw, dtype=np.float32)
        arrays.append(array[None] if array.ndim == 2 else array)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(
            f"The control images in '{folder}' differ in shape ({sorted(shapes)}); give one size."
        )
    return [p.stem for p in paths], torch.from_numpy(np.stack(arrays))


def check_control_shape(pipe, folder: Path, controls: torch.Tensor) -> None:
    """The ControlNet reads controls of its channels at the latent size times its downsampling; another
    shape fails deep inside its convolutions."""
    config = pipe.controlnet.config
    latent = pipe.ldm.description["latent_shape"][1:]
    wanted = [config.conditioning_channels, *[n * config.control_downsampling for n in latent]]
    if list(controls.shape[1:]) != wanted:
        raise UserError(
            f"The control images in '{folder}' are {'x'.join(map(str, controls.shape[1:]))} (channels x size), "
            f"but this ControlNet takes {'x'.join(map(str, wanted))}; give controls of the training size."
        )


def generate_with_control(
    run: Path,
    out: Path,
    controls: Path,
    seed: int = 0,
    batch_size: int = 8,
    sampler=None,
    steps=None,
    guidance=None,
    conditioning_scale=None,
    device: str = "cpu",
) -> list[Path]:
    pipe = ControlNetPipeline.from_final(str(run), device)
    if pipe.condition_type != "none":
        raise UserError(
            f"This ControlNet steers an LDM conditioned on '{pipe.condition_type}'; --control generates only "
            "over an unconditional LDM (use ControlNetPipeline with conditions from Python)."
        )
    names, inputs = read_controls(controls)
    check_control_shape(pipe, controls, inputs)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file; give a folder for the generated TIFs.")
    out.mkdir(parents=True, exist_ok=True)
    written, tiles = [], []
    for start in range(0, len(names), batch_size):
        chunk = slice(start, start + batch_size)
        seeds = [seed + i for i in range(start, min(start + batch_size, len(names)))]
        images = pipe(
            inputs[chunk],
            seeds=seeds,
            conditioning_scale=conditioning_scale,
            sampler=sampler,
            num_inference_steps=steps,
            guidance_scale=guidance,
        ).cpu()
        for name, control, image in zip(names[chunk], inputs[chunk].numpy(), images.numpy()):
            path = out / f"{name}.tif"
            tifffile.imwrite(path, image.astype(np.float32).squeeze())
            written.append(path)
            if len(tiles) < 16:
                shown = control[:1] / max(float(control.max()), 1e-8)
                tiles.append(np.concatenate([np.repeat(shown, image.shape[0], 0), image], axis=-1))
    save_png(make_grid(np.stack(tiles)), str(out / "grid.png"))
    return written


def main_with_control(args) -> int:
    """`scripts/generate.py --control`: its parsed arguments in, the exit status out."""
    try:
        written = generate_with_control(
            args.run,
            args.out,
            args.control,
            args.seed,
            args.batch_size,
            args.sampler,
            args.steps,
            args.guidance,
            args.conditioning_scale,
            args.device,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {len(written)} TIFs and grid.png into {args.out}.")
    return 0
