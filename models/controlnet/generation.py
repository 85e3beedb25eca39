"""`scripts/generate.py --control <folder>`: sample a trained ControlNet run on a folder of control TIFs.

Each control TIF (a mask, an edge map; (H, W) or (C, H, W), values as in training; over a 3D LDM
(D, H, W) or (C, D, H, W)) gives one sample, written as a (D, H, W) stack in 3D,
named after it. A run of several controls takes one `--control` folder per control, in the order of its
`control.key`, paired by file name (the first folder's names name the samples), and one
`--conditioning-scale` for all or one per control. Over a conditioned LDM each control also takes a condition, given as for the LDM alone
(`--vector(s)`, `--labels`, `--conditions`): one for every control, or one per control (in the order
of the control files' names; image conditions are paired with the controls by file name). Sample i
starts from the noise of seed + i; outputs are written in the data's intensity range unless
`--normalized`.
"""

from pathlib import Path

import numpy as np
import torch

from models.controlnet.pipeline import ControlNetPipeline
from models.ldm.generation_inputs import network_inputs, parse_labels, read_vectors
from models.ldm.sample_files import write_samples
from models.ldm.schedules import check_sampling_steps
from utils.errors import DataError, UserError


def read_controls(folder: Path, spatial_dims: int = 2) -> tuple[list[str], torch.Tensor]:
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
        arrays.append(array[None] if array.ndim == spatial_dims else array)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(
            f"The control images in '{folder}' differ in shape ({sorted(shapes)}); give one size."
        )
    return [p.stem for p in paths], torch.from_numpy(np.stack(arrays))


def read_control_folders(pipe, folders: list[Path]) -> tuple[list[str], list[torch.Tensor]]:
    """(names, one (N, C, H, W) tensor per control key) from one folder per key, paired by file name."""
    keys = pipe.control_keys
    if len(folders) != len(keys):
        raise UserError(
            f"This ControlNet run takes {len(keys)} controls ({', '.join(keys)}) but got {len(folders)} "
            "--control folders; give one --control folder per control, in that order."
        )
    spatial_dims = len(pipe.ldm.description["latent_shape"]) - 1
    names, first = read_controls(folders[0], spatial_dims)
    check_control_shape(pipe, folders[0], first)
    tensors = [first]
    for folder in folders[1:]:
        other_names, other = read_controls(folder, spatial_dims)
        missing = sorted(set(names) - set(other_names))
        if missing:
            raise UserError(
                f"The controls {missing[:5]} of '{folders[0]}' have no TIF of the same name in '{folder}'; "
                "the --control folders are paired by file name."
            )
        check_control_shape(pipe, folder, other)
        tensors.append(other[[other_names.index(name) for name in names]])
    return names, tensors


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


def control_conditions(pipe, run: Path, control_names, control_size, conditions, vectors, labels):
    """(inputs, per-sample intensity stats or None) of the LDM's condition for each control, in order."""
    given = conditions is not None or bool(vectors) or bool(labels)
    if pipe.condition_type == "none":
        if given:
            raise UserError("This ControlNet steers an unconditional LDM; give only --control.")
        return None, None
    condition_names, inputs, stats = network_inputs(pipe.ldm, run, conditions, vectors, labels, None)
    if pipe.condition_type == "image":  # paired by file name, never by position
        missing = sorted(set(control_names) - set(condition_names))
        if missing:
            raise UserError(
                f"The controls {missing[:5]} have no condition TIF of the same name in '{conditions}'; "
                "image conditions are paired with the controls by file name."
            )
        order = [condition_names.index(name) for name in control_names]
        if list(inputs.shape[2:]) != list(control_size):
            size = "x".join(map(str, inputs.shape[2:]))
            raise UserError(
                f"The condition TIFs in '{conditions}' are {size} but the controls are "
                f"{'x'.join(map(str, control_size))}; a control and its condition are images of the same size."
            )
        return inputs[order], stats[order] if stats is not None else None
    if len(inputs) == 1:
        return inputs.expand(len(control_names), *inputs.shape[1:]), None
    if len(inputs) != len(control_names):
        raise UserError(
            f"There are {len(control_names)} controls but {len(inputs)} conditions; give one condition for "
            "every control, or one per control (in the order of the control files' names)."
        )
    return inputs, None


def generate_with_control(
    run: Path,
    out: Path,
    controls: Path | list[Path],
    seed: int = 0,
    batch_size: int = 8,
    sampler=None,
    steps=None,
    guidance=None,
    conditioning_scale=None,
    device: str = "cpu",
    conditions: Path | None = None,
    vectors=None,
    labels=None,
    normalized: bool = False,
) -> list[Path]:
    pipe = ControlNetPipeline.from_final(str(run), device)
    if steps is not None:
        check_sampling_steps(
            steps,
            pipe.ldm.noise_scheduler_config["num_train_timesteps"],
            "--steps",
            "the run's diffusion.num_train_timesteps",
        )
    folders = list(controls) if isinstance(controls, (list, tuple)) else [controls]
    names, tensors = read_control_folders(pipe, [Path(f) for f in folders])
    inputs = tensors[0]  # the control shown beside each sample
    condition_inputs, stats = control_conditions(
        pipe, Path(run), names, inputs.shape[2:], conditions, vectors, labels
    )
    if conditioning_scale is not None:  # one for all controls or one per control (a list from argparse)
        conditioning_scale = _scales(conditioning_scale, len(tensors))

    def sample(chunk, seeds):
        return pipe(
            [t[chunk] for t in tensors],
            condition_inputs[chunk] if condition_inputs is not None else None,
            seeds=seeds,
            conditioning_scale=conditioning_scale,
            sampler=sampler,
            num_inference_steps=steps,
            guidance_scale=guidance,
        )

    def tile(i, image):  # the control (its first channel, scaled to 1) beside its sample
        control = inputs[i, :1].numpy() / max(float(inputs[i].max()), 1e-8)
        return np.concatenate([np.repeat(control, image.shape[0], 0), image], axis=-1)

    description = pipe.ldm.description
    return write_samples(out, names, sample, description, seed, batch_size, stats, normalized, tile)


def _scales(given, count: int) -> list[float]:
    given = list(given) if isinstance(given, (list, tuple)) else [given]
    if len(given) not in (1, count):
        raise UserError(
            f"{len(given)} --conditioning-scale values for {count} controls; give one for all controls or one "
            "per --control, in the same order."
        )
    return given * count if len(given) == 1 else given


def main_with_control(args) -> list[Path]:
    """`scripts/generate.py --control`: its parsed arguments in, the TIFs written out."""
    if args.num_samples is not None:
        raise UserError("--num-samples does not apply with --control: each control TIF gives one sample.")
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
        conditions=args.conditions,
        vectors=read_vectors(args.vectors, args.vector) if (args.vectors or args.vector) else None,
        labels=parse_labels(args.labels),
        normalized=args.normalized,
    )
    print(f"Wrote {len(written)} TIFs and grid.png into {args.out}.")
    return written
