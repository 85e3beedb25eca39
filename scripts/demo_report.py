"""Gather the demo's two stages into one report: `report.html` (training curves, the last validation
grids and the final metrics of both stages, images embedded so the file opens offline and can be mailed
on its own), the grids as PNGs and `report.json`.

    python scripts/demo_report.py [--root experiments] [--key demo] [--out experiments/demo_report]

Reads `<root>/VAE_PSF/<key>/` (stage 1) and `<root>/LDM_PSF/<key>/` (stage 2), as `make demo` writes them.
"""

import base64
import glob
import html
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.run.curves import SUMMARY_NAME, write_training_summary  # noqa: E402
from utils.cli.args import existing_folder, output_folder  # noqa: E402
from utils.cli.script import ScriptParser  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.outputs import check_output  # noqa: E402

STAGES = {"stage1_vae": "VAE_PSF", "stage2_ldm": "LDM_PSF"}


def latest_images(run: str) -> list[str]:
    """The PNGs of the last step that logged images, one per image name."""
    by_name = {}
    for path in sorted(glob.glob(os.path.join(run, "images", "*.png"))):
        name = os.path.basename(path).rsplit("_", 1)[0]
        by_name[name] = path  # sorted by step: the last one wins
    return sorted(by_name.values())


def _embedded(path: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(os.path.basename(path))}">'


def write_html(report: dict, path: str) -> None:
    """One self-contained page: per stage, the metrics table, the curves and the grids."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Demo report</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%;image-rendering:pixelated;"
        "border:1px solid #ddd;margin:4px 0}table{border-collapse:collapse}td,th{padding:2px 10px;"
        "border-bottom:1px solid #eee;text-align:left}</style></head><body><h1>Demo report</h1>"
    ]
    for stage, content in report.items():
        parts.append(f"<h2>{html.escape(stage)}</h2><p>run: <code>{html.escape(content['run'])}</code></p>")
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
            for k, v in sorted(content["metrics"].items())
        )
        parts.append(f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>")
        if content.get("curves"):
            parts.append(f"<h3>training curves</h3>{_embedded(content['curves'])}")
        for image in content["images"]:
            parts.append(f"<h3>{html.escape(os.path.basename(image))}</h3>{_embedded(image)}")
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts))


def build_parser() -> ScriptParser:
    parser = ScriptParser(description=__doc__)
    parser.add_argument("--root", type=existing_folder, default="experiments")
    parser.add_argument("--key", default="demo")
    parser.add_argument(
        "--out", type=output_folder, writes=True, default=os.path.join("experiments", "demo_report")
    )
    parser.add_argument("--stage1", default=STAGES["stage1_vae"], help="the stage-1 experiment's name")
    parser.add_argument("--stage2", default=STAGES["stage2_ldm"], help="the stage-2 experiment's name")
    return parser


def main(argv=None) -> int:
    return build_parser().run(write_report, argv)


def write_report(args) -> int:
    runs = {
        stage: os.path.join(args.root, name, args.key)
        for stage, name in {"stage1_vae": args.stage1, "stage2_ldm": args.stage2}.items()
    }
    for run in runs.values():
        metrics_path = os.path.join(run, "final", "metrics.json")
        if not os.path.isfile(metrics_path):
            raise UserError(f"No finished run in '{run}' (expected {metrics_path}); run `make demo` first.")
    check_output("--out", args.out, {f"the {stage} run": run for stage, run in runs.items()})
    os.makedirs(args.out, exist_ok=True)
    report = {}
    for stage, run in runs.items():
        metrics_path = os.path.join(run, "final", "metrics.json")
        with open(metrics_path) as f:
            report[stage] = {"run": run, "metrics": json.load(f), "images": []}
        for path in latest_images(run):
            target = os.path.join(args.out, f"{stage}_{os.path.basename(path)}")
            shutil.copyfile(path, target)
            report[stage]["images"].append(target)
        curves = os.path.join(args.out, f"{stage}_{SUMMARY_NAME}")
        if os.path.isfile(os.path.join(run, SUMMARY_NAME)):
            shutil.copyfile(os.path.join(run, SUMMARY_NAME), curves)
        else:  # a run from before the summary figure existed: draw it from its event files
            curves = write_training_summary(run, out=curves)
        report[stage]["curves"] = curves
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    write_html(report, os.path.join(args.out, "report.html"))
    for stage, content in report.items():
        values = ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(content["metrics"].items()) if "psnr" in k or "ssim" in k
        )
        print(f"{stage}: {values}")
    print(
        f"Report written to {os.path.join(args.out, 'report.html')} (open it in a browser; offline) and "
        f"report.json, with {sum(len(c['images']) for c in report.values())} grids."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
