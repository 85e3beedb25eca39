"""Write the items of an experiment's dataset as float32 TIFs: controls, targets or conditions to give
`generate.py`, made exactly as the run saw them.

    python scripts/dataset_to_tifs.py --config checkpoints/ControlNet/exp.yml --keys mask image \
        --count 32 --out data/masks datasets.val.seed=7 datasets.val.size=32

The block (`--block`, default `val`) is built as the trainer builds it, after the same config check;
overrides (`datasets.val.seed=7` for items the run never saw, `datasets.val.size=32` for as many) work as
on the trainer's command line.
Each image key of each item becomes `<out>/<key>/<item name>.tif`, as the dataset gives it to the network;
an item without a name is `sample_NNNN`, the name `generate.py` gives the sample of the N-th vector or label,
so `--targets` pairs them. Each vector key (a PSF's `coords`, a label) becomes `<out>/<key>.csv`, one row per
item in the same order, for `generate.py --vectors`:

    python scripts/dataset_to_tifs.py --config checkpoints/LDM/3d.yml --keys gt coords --out data/stacks
    python scripts/generate.py --run experiments/LDM_3D_PSF/<key>/final --vectors data/stacks/coords.csv \
        --targets data/stacks/gt --out gen3d
"""

import sys
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cli.args import MAX_SAMPLES, count, existing_file, output_folder  # noqa: E402
from utils.cli.console import quiet_libraries  # noqa: E402
from utils.cli.imports import defer_unused_imports  # noqa: E402
from utils.cli.script import ScriptParser  # noqa: E402
from utils.errors import UserError  # noqa: E402

defer_unused_imports()  # before diffusers loads: no script reads bitsandbytes
quiet_libraries()


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__)
    parser.add_argument("--config", required=True, type=existing_file, reads=True, help="an experiment YAML")
    parser.add_argument("--block", choices=("train", "val", "test"), default="val", help="datasets.<block>")
    parser.add_argument("--keys", nargs="+", default=None, help="item keys to write (default: every image)")
    parser.add_argument("--count", type=count(1, MAX_SAMPLES), default=16, help="items to write")
    parser.add_argument("--out", required=True, type=output_folder, writes=True, help="output folder")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (dotted keys)")
    return parser


def write_items(args) -> int:
    from dataset import create_dataset
    from trainer import load_config

    opt, _ = load_config(str(args.config), args.overrides)
    block = (opt["datasets"].get(args.block) or None) if opt.get("datasets") else None
    if block is None:
        raise UserError(f"'{args.config}' has no 'datasets.{args.block}' block; choose another --block.")
    block = block.to_dict() if hasattr(block, "to_dict") else dict(block)
    block["phase"] = args.block
    dataset = create_dataset(block)
    first = dataset[0]
    images = [k for k, v in first.items() if torch.is_tensor(v) and v.ndim >= 2]
    vectors = [k for k, v in first.items() if torch.is_tensor(v) and v.ndim <= 1]
    keys = args.keys or images
    missing = [k for k in keys if k not in images + vectors]
    if missing:
        raise UserError(
            f"--keys {missing[0]!r} is not an image or vector of the items of 'datasets.{args.block}' "
            f"({block['type']}); its images: {', '.join(images)}; its vectors: {', '.join(vectors) or 'none'}."
        )
    written = min(args.count, len(dataset))
    rows = {key: [] for key in keys if key in vectors}
    for i in range(written):
        item = first if i == 0 else dataset[i]
        name = str(item.get("name", f"sample_{i:04d}"))
        for key in keys:
            if key in rows:
                rows[key].append(",".join(f"{v:.9g}" for v in item[key].reshape(-1).tolist()))
                continue
            path = args.out / key / f"{name}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, item[key].float().numpy().astype(np.float32).squeeze())
    for key, lines in rows.items():
        (args.out / f"{key}.csv").write_text("\n".join(lines) + "\n")
    print(f"Wrote {written} items ({', '.join(keys)}) of datasets.{args.block} into {args.out}.")
    return 0


def main(argv=None) -> int:
    return build_parser().run(write_items, argv)


if __name__ == "__main__":
    sys.exit(main())
