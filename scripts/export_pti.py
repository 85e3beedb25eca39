"""Export a run's weights as the files PTI-LDM-VAE's loaders read.

    python scripts/export_pti.py --run experiments/PTI_LDM_VAE/<key>/checkpoint-2000 --out pti/
    python scripts/export_pti.py --run experiments/PTI_LDM/<key>/final --out pti/

A VAE run (`network.type: MonaiAutoencoderKL`) gives `autoencoder.pt`, MONAI's AutoencoderKL state dict
(`vae.load_state_dict(torch.load("autoencoder.pt"))`), and `checkpoint.pth` with its VAE trainer's keys:
epoch, autoencoder_state_dict, discriminator_state_dict, optimizer_g_state_dict, optimizer_d_state_dict,
best_val_loss, total_step. An LDM run (`network.backend: monai`, `condition.type: image` with
`position_embedding: false`) gives `diffusion_unet.pt`, MONAI's DiffusionModelUNet state dict, and
`checkpoint.pth`: epoch, unet_state_dict, condition_projector_state_dict, optimizer_state_dict,
best_val_loss, total_step. The optimizer states come from a checkpoint-N/ folder; final/ and best/
hold none. Under `train.ema` the weights are the EMA ones.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cli.console import quiet_libraries  # noqa: E402
from utils.cli.imports import defer_unused_imports  # noqa: E402

defer_unused_imports()  # before diffusers loads: no script reads bitsandbytes
quiet_libraries()  # before diffusers and transformers load: bitsandbytes warns on import

from utils.cli.args import output_folder  # noqa: E402
from utils.cli.script import ScriptParser  # noqa: E402


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__)
    parser.add_run_argument("a VAE or LDM run's final/, best/ or checkpoint-N/ folder")
    parser.add_argument("--out", required=True, type=output_folder, writes=True, help="output folder")
    return parser


def run(args) -> int:
    from models.pti.export import export_run  # here, not at the top: `--help` answers at once

    written, summary = export_run(args.run, args.out)
    print(f"Wrote {', '.join(p.name for p in written)} into {args.out}: {summary}.")
    return 0


def main(argv=None) -> int:
    return build_parser().run(run, argv)


if __name__ == "__main__":
    sys.exit(main())
