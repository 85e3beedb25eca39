"""Generate with a trained LDM run: float32 TIFs and a grid PNG out.

    python scripts/generate.py --run experiments/LDM_TIF/<key>/final --conditions data/sample/dente --out gen/
    python scripts/generate.py --run experiments/LDM_TIF/<key>/final --conditions data/sample/dente \
        --targets data/sample/edente --num-samples 4 --out gen/        # scored: metrics.json
    python scripts/generate.py --run experiments/LDM_PSF/<key>/final --vectors vectors.json --out gen/
    python scripts/generate.py --run experiments/LDM_PSF/<key>/final --vector 0.3,0.1,900,1000,0.45,0.55,0.65 --out gen/
    python scripts/generate.py --run experiments/ControlNet_shapes/<key>/final --control masks/ --out gen/
    python scripts/generate.py --run experiments/LDM_CLS/<key>/best --labels 0 1 2 --out gen/
    python scripts/generate.py --run experiments/LDM_UNC/<key>/final --num-samples 16 --out gen/
    python scripts/generate.py --run checkpoint_epoch50.pth --config checkpoints/LDM/pti_ldm_vae.yml \
        --vae autoencoder_epoch73.pth --conditions data/sample/dente --out gen/     # PTI-LDM-VAE's files

Outputs are in the data's intensity range (`--normalized` keeps the network's), named after their
conditions; `--seed` makes them reproducible. `--targets` scores them against the target TIFs of the same
names (PSNR, SSIM, Dice for 0/1 masks; per sample, the mean, and the mean-target and shuffled-condition
baselines) into `metrics.json`.

`--run` may also be a PTI-LDM-VAE stage-2 file (`checkpoint_epochN.pth`, or `diffusion_unet.pt`), read as
it is: `--config` is the YAML giving its network keys, condition, schedule and sampling settings
(checkpoints/LDM/pti_ldm_vae.yml) and `--vae` its autoencoder `.pth` (default: the YAML's
`vae.monai_checkpoint`); see models/pti/generation.py.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cli.console import quiet_libraries  # noqa: E402
from utils.cli.imports import defer_unused_imports  # noqa: E402

defer_unused_imports()  # before diffusers loads: no script reads bitsandbytes
quiet_libraries()  # before diffusers and transformers load: bitsandbytes warns on import

from models.ldm.sample_files import write_samples  # noqa: E402
from models.ldm.sample_scores import score_samples  # noqa: E402
from utils.cli.args import (  # noqa: E402
    MAX_BATCH,
    MAX_SAMPLES,
    MAX_STEPS,
    count,
    default_device,
    device,
    existing_file,
    existing_folder,
    finite,
    output_folder,
    run_or_pth,
    seed,
)
from utils.cli.script import ScriptParser  # noqa: E402
from utils.errors import UserError  # noqa: E402


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
    config: Path | None = None,
    vae: Path | None = None,
) -> list[Path]:
    """Samples of the run in `run` (its `final/`, `best/` or `checkpoint-N/` folder: UNet, projector,
    scheduler, `ldm.json` with the VAE reference, scale factor and the data's intensity range), written
    to `out`; returns the files written.

    Image conditions are read and normalised as the run's validation data was (its saved `config.yml`).
    Outputs are written in the data's intensity range (the inverse of the dataset's normalisation: an
    image-conditioned sample with its condition's stats, others with the mean stats of the run's
    targets; `normalized` keeps the network's range), named after their conditions. Vectors are given in
    the dataset's layout (a PSFDataset's `coords`: x, y, depth_mm, focus_mm, wavelengths_um); the run's
    `condition.indices` picks the numbers it was trained on. Sample i starts from the noise of
    `seed + i`, whatever the batch size. A PTI-LDM-VAE `.pth` as `run` is read with the YAML `config` and
    the autoencoder `.pth` `vae` (`load_pipeline`)."""
    # Here, not at the top: they load diffusers and every arch, and `--help` answers at once.
    from models.ldm.generation_inputs import network_inputs
    from models.ldm.schedules import check_sampling_steps

    pipe, data_config = load_pipeline(run, device, config, vae)
    if steps is not None:
        check_sampling_steps(
            steps,
            pipe.noise_scheduler_config["num_train_timesteps"],
            "--steps",
            "the run's diffusion.num_train_timesteps",
        )
    kind = pipe.condition_type
    names, inputs, stats = network_inputs(pipe, data_config, conditions, vectors, labels, num_samples)

    def sample(chunk, seeds):
        batch = inputs[chunk] if inputs is not None else None
        return pipe(batch, seeds=seeds, sampler=sampler, num_inference_steps=steps, guidance_scale=guidance)

    def tile(i, image):  # an image condition beside its sample
        if kind == "image" and inputs[i].shape == image.shape:
            return np.concatenate([inputs[i].float().cpu().numpy(), image], axis=-1)
        return image

    return write_samples(out, names, sample, pipe.description, seed, batch_size, stats, normalized, tile)


def load_pipeline(run: Path, device: str, config: Path | None = None, vae: Path | None = None):
    """(the pipeline of `run`, where its data settings are: the run folder's config.yml or `config`)."""
    if run.is_dir():
        if config is not None or vae is not None:
            raise UserError(
                "--config and --vae go with a PTI-LDM-VAE .pth as --run; a run folder holds its own."
            )
        from models.ldm.pipeline import LDMPipeline  # here, not at the top: `--help` answers at once

        return LDMPipeline.from_final(str(run), device), run
    if config is None:
        raise UserError(
            f"--run '{run}' is a PTI-LDM-VAE file: give --config, the YAML with its network keys "
            "(checkpoints/LDM/pti_ldm_vae.yml), and --vae, its autoencoder .pth."
        )
    from models.pti.generation import pti_ldm_pipeline
    from trainer import load_config

    opt, _ = load_config(str(config), [f"vae.monai_checkpoint={vae}"] if vae is not None else [])
    return pti_ldm_pipeline(run, opt, device), config


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__)
    parser.add_argument(
        "--run",
        required=True,
        type=run_or_pth,
        reads=True,
        help="a trained LDM (or ControlNet) run's final/, best/ or checkpoint-N/ folder, or a PTI-LDM-VAE "
        "checkpoint_epochN.pth / diffusion_unet.pt (with --config and --vae)",
    )
    parser.add_argument(
        "--config", type=existing_file, reads=True, help="with a .pth --run: the YAML of its network keys"
    )
    parser.add_argument(
        "--vae",
        type=existing_file,
        reads=True,
        help="with a .pth --run: its autoencoder .pth (PTI-LDM-VAE's)",
    )
    parser.add_argument("--out", required=True, type=output_folder, writes=True, help="output folder")
    parser.add_argument(
        "--conditions",
        type=existing_folder,
        reads=True,
        help="folder of condition TIFs (image-conditioned runs)",
    )
    parser.add_argument(
        "--vectors",
        type=existing_file,
        reads=True,
        help="JSON list of vectors, or CSV rows (vector-conditioned runs)",
    )
    parser.add_argument(
        "--vector", action="append", default=[], help="one vector, comma-separated (repeatable)"
    )
    parser.add_argument(
        "--control",
        action="append",
        type=existing_folder,
        reads=True,
        help="folder of control TIFs (--run: a ControlNet run's folder); repeat it for a run of several "
        "controls, in the order of its control.key; the LDM's condition as without",
    )
    parser.add_argument(
        "--conditioning-scale",
        action="append",
        type=finite(0.0),
        help="weight of the control (0: the LDM alone); once for all controls or once per --control; "
        "default: the run's",
    )
    parser.add_argument(
        "--labels", nargs="+", default=[], help="class indices of a class-conditioned run: 0 1 2 or 0,1,2"
    )
    parser.add_argument(
        "--num-samples",
        "--count",
        dest="num_samples",
        type=count(1, MAX_SAMPLES),
        help="samples of an unconditional run (4), or samples per condition (1)",
    )
    parser.add_argument(
        "--targets",
        type=existing_folder,
        reads=True,
        help="folder of target TIFs named like the conditions: scores the samples into metrics.json",
    )
    parser.add_argument(
        "--normalized", action="store_true", help="write the network's normalised range, not the data's"
    )
    parser.add_argument(
        "--sampler", choices=("ddpm", "ddim", "dpm_solver"), help="default: the run's val.sampler"
    )
    parser.add_argument("--steps", type=count(1, MAX_STEPS), help="inference steps; default: the run's")
    parser.add_argument(
        "--guidance", type=finite(0.0), help="classifier-free guidance scale; default: the run's"
    )
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--batch-size", type=count(1, MAX_BATCH), default=8)
    parser.add_argument("--device", type=device, default=default_device())
    return parser


def run(args) -> int:
    if args.targets is not None and args.normalized:
        raise UserError("--targets scores samples in the data's range; leave out --normalized.")
    if args.control is not None:  # a ControlNet run: its sampling lives in models/controlnet/
        from models.controlnet.generation import main_with_control

        report_scores(args, main_with_control(args))
        return 0
    from models.ldm.generation_inputs import parse_labels, read_vectors

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
        config=args.config,
        vae=args.vae,
    )
    print(f"Wrote {len(written)} TIFs and grid.png into {args.out}.")
    report_scores(args, written)
    return 0


def report_scores(args, written) -> None:
    """`--targets`: the samples scored against their targets, beside the baselines, into metrics.json."""
    if args.targets is None:
        return
    report = score_samples(written, args.out, args.targets)
    baselines = {k: v for k, v in report.items() if k.endswith("_baseline")}
    line = ", ".join(f"{name} {value:.3f}" for name, value in report["mean"].items())
    print(f"Scored against {args.targets}: {line}; baselines {json.dumps(baselines)} (metrics.json).")


def main(argv=None) -> int:
    return build_parser().run(run, argv)


if __name__ == "__main__":
    sys.exit(main())
