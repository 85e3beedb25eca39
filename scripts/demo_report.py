"""Gather the demo's two stages into one report: the last validation grids and a metrics JSON.

    python scripts/demo_report.py [--root experiments] [--key demo] [--out experiments/demo_report]

Reads `<root>/VAE_PSF/<key>/` (stage 1) and `<root>/LDM_PSF/<key>/` (stage 2), as `make demo` writes them.
"""

import argparse
import glob
import json
import os
import shutil
import sys

STAGES = {"stage1_vae": "VAE_PSF", "stage2_ldm": "LDM_PSF"}


def latest_images(run: str) -> list[str]:
    """The PNGs of the last step that logged images, one per image name."""
    by_name = {}
    for path in sorted(glob.glob(os.path.join(run, "images", "*.png"))):
        name = os.path.basename(path).rsplit("_", 1)[0]
        by_name[name] = path  # sorted by step: the last one wins
    return sorted(by_name.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default="experiments")
    parser.add_argument("--key", default="demo")
    parser.add_argument("--out", default=os.path.join("experiments", "demo_report"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    report = {}
    for stage, name in STAGES.items():
        run = os.path.join(args.root, name, args.key)
        metrics_path = os.path.join(run, "final", "metrics.json")
        if not os.path.isfile(metrics_path):
            print(
                f"error: no finished run in '{run}' (expected {metrics_path}); run `make demo` first.",
                file=sys.stderr,
            )
            return 2
        with open(metrics_path) as f:
            report[stage] = {"run": run, "metrics": json.load(f), "images": []}
        for path in latest_images(run):
            target = os.path.join(args.out, f"{stage}_{os.path.basename(path)}")
            shutil.copyfile(path, target)
            report[stage]["images"].append(target)
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    for stage, content in report.items():
        values = ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(content["metrics"].items()) if "psnr" in k or "ssim" in k
        )
        print(f"{stage}: {values}")
    print(
        f"Report written to {os.path.join(args.out, 'report.json')} with {sum(len(c['images']) for c in report.values())} grids."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
