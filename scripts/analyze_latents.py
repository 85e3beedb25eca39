"""Maps of a trained VAE's latent space: do groups (dental vs edentulous, patients, lenses) separate?

    python scripts/analyze_latents.py --run experiments/VAE_TIF/<key>/final         --group edente=data/sample/edente --group dente=data/sample/dente --method umap tsne pca --out latent_maps/

Outputs in `--out`: latent_map_<method>.png/.svg/.pdf (300 dpi), latent_map.html (self-contained,
hover shows name, group and thumbnail), metrics.json (silhouette and kNN accuracy of the groups, beside
the same for shuffled groups; trustworthiness of each map) and coords.csv.
"""

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cli.imports import defer_unused_imports  # noqa: E402

defer_unused_imports()  # before diffusers loads: no script reads bitsandbytes

from utils.cli.args import (  # noqa: E402
    MAX_BATCH,
    MAX_IMAGE_SIZE,
    count,
    default_device,
    device,
    existing_file,
    existing_folder,
    named_folder,
    output_folder,
    regex,
    seed,
)
from utils.cli.script import ScriptParser  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.errors.files import as_user_error  # noqa: E402
from utils.latent_maps.embedding import METHODS  # noqa: E402
from utils.latent_maps.features import FEATURE_MODES  # noqa: E402


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__)
    weights = parser.add_reading_group(required=True)
    weights.add_argument(
        "--run", type=existing_folder, reads=True, help="a VAE run's final/ (or checkpoint-N/) folder"
    )
    weights.add_argument(
        "--pth",
        type=existing_file,
        reads=True,
        help="a PTI-LDM-VAE autoencoder_epochN.pth / checkpoint_epochN.pth",
    )
    parser.add_argument(
        "--network", type=existing_file, reads=True, help="with --pth: YAML of its MonaiAutoencoderKL keys"
    )
    parser.add_argument(
        "--normalize", help="with --pth: the normalisation its images need (e.g. zscore_foreground)"
    )
    parser.add_argument(
        "--patch-size", type=count(1, MAX_IMAGE_SIZE), help="with --pth: the image size it was trained on"
    )
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        type=named_folder,
        reads=lambda groups: [text.partition("=")[2] for text in groups],
        help="a group of TIFs",
    )
    parser.add_argument("--manifest", type=existing_file, reads=True, help="a CSV with one row per image")
    parser.add_argument("--path-column", default="path", help="the manifest's image column (default: path)")
    parser.add_argument("--group-column", help="the manifest's group column")
    parser.add_argument("--val-set", action="store_true", help="encode the run's own validation set")
    parser.add_argument(
        "--label-regex", type=regex, help="label each image by this regex on its name (first group)"
    )
    parser.add_argument("--method", nargs="+", default=["umap"], choices=METHODS, help="one or more maps")
    parser.add_argument("--features", default="flatten", choices=FEATURE_MODES)
    parser.add_argument("--out", type=output_folder, writes=True, required=True, help="output folder")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument(
        "--neighbors", type=count(1, 1000), default=5, help="k of the kNN accuracy and trustworthiness"
    )
    parser.add_argument(
        "--thumbnails", type=count(0, 64), default=8, help="thumbnail panel size on the PNG (0: none)"
    )
    parser.add_argument("--dpi", type=count(1, 2400), default=300)
    parser.add_argument("--batch-size", type=count(1, MAX_BATCH), default=16)
    parser.add_argument("--device", type=device, default=default_device())
    parser.add_argument("--no-progress", action="store_true")
    return parser


def collect_sources(args, run_opt: dict) -> list:
    """The images to encode, from `--group NAME=FOLDER` (repeatable), `--manifest CSV --group-column COL`
    or `--val-set` (the run's own validation set). TIFs are read with the run's normalisation and patch
    size; `--label-regex '^(p\\d+)_'` labels each image by its file name instead (colour by patient)."""
    from scripts.latent_analysis.sources import (
        folder_sources,
        manifest_source,
        network_input_options,
        validation_source,
    )

    if args.pth is not None:
        options = {k: v for k, v in (("normalize", args.normalize), ("patch_size", args.patch_size)) if v}
    else:
        options = network_input_options(run_opt)
    sources = folder_sources(args.group, options)
    if args.manifest:
        if not args.group_column and not args.label_regex:
            raise UserError(
                "--manifest needs --group-column (the column naming each row's group) or --label-regex."
            )
        if args.group_column:
            sources.append(manifest_source(args.manifest, args.path_column, args.group_column, options))
        else:
            from scripts.latent_analysis.sources import Source

            source = manifest_source(args.manifest, args.path_column, None, options)
            sources.append(Source(source.dataset, "gt", group="manifest"))
    if args.val_set:
        if args.run is None:
            raise UserError("--val-set needs --run: a .pth file carries no dataset configuration.")
        sources.append(validation_source(run_opt))
    if not sources:
        raise UserError(
            "Nothing to encode: give --group NAME=FOLDER (repeatable), --manifest CSV or --val-set."
        )
    return sources


def run(args) -> int:
    from scripts.latent_analysis.encoding import encode_sources, load_encoder
    from scripts.latent_analysis.sources import label_by_regex
    from utils.latent_maps.report import write_report

    network = None
    if args.pth is not None:
        if args.network is None:
            raise UserError(
                "--pth needs --network, a YAML file of the MonaiAutoencoderKL keys it was trained with."
            )
        try:
            network = yaml.safe_load(args.network.read_text()) or {}
        except Exception as error:  # not UTF-8, not YAML: one sentence naming the file
            raise as_user_error(error, str(args.network)) or error from None
        if not isinstance(network, dict):
            raise UserError(
                f"--network '{args.network}' holds {type(network).__name__}, not a mapping of "
                "MonaiAutoencoderKL keys (e.g. spatial_dims: 2, latent_channels: 4)."
            )
    names = [text.partition("=")[0] for text in args.group]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"--group {twice[0]!r} is given twice; give each group its own name.")
    vae, run_opt = load_encoder(args.run, args.pth, network)
    sources = collect_sources(args, run_opt)
    encoded = encode_sources(vae, sources, args.batch_size, args.device, progress=not args.no_progress)
    if args.label_regex:
        encoded.groups = label_by_regex(encoded.names, args.label_regex)
    if len(encoded.names) < 3:
        raise UserError(
            f"Only {len(encoded.names)} image{'s' * (len(encoded.names) != 1)} found ({', '.join(encoded.names)}); "
            "a 2-D map needs at least 3: add images or groups."
        )
    metrics = write_report(
        encoded,
        str(args.out),
        methods=list(dict.fromkeys(args.method)),
        features=args.features,
        seed=args.seed,
        k=args.neighbors,
        thumbnail_count=args.thumbnails,
        dpi=args.dpi,
        title=str(args.run or args.pth),
    )
    summary = {k: metrics[k] for k in ("items", "silhouette", "knn_accuracy")}
    summary["trustworthiness"] = {m: e["trustworthiness"] for m, e in metrics["embeddings"].items()}
    print(f"Wrote maps, metrics.json and coords.csv to {args.out}: {json.dumps(summary)}")
    return 0


def main(argv=None) -> int:
    return build_parser().run(run, argv)


if __name__ == "__main__":
    sys.exit(main())
