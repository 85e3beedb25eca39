"""Fingerprints a tiny training run of every shipped experiment, so a refactor can show that nothing moved.

    python bench/fingerprint.py --out fingerprints.json                  # record
    python bench/fingerprint.py --out after.json --compare before.json   # re-run, diff, exit 1 on a change

Each experiment (`checkpoints/**/*.yml`) trains for two steps on tiny data in a fresh subprocess, through
the public CLI only (`python trainer.py -opt FILE key=value ...`, run from the root of the checkout this
script lives in, on the CPU with one thread). Stage-2 experiments chain to the tiny stage-1 run they need,
and the TIF experiments read a small sample written by `scripts/make_sample_tifs.py`. The fingerprint of a
run is the sha256 of every tensor of every `*.safetensors` under its `final/` folder (name, dtype, shape
and bytes, sorted by path and name) and its last validation metrics (`final/metrics.json`, else the
TensorBoard event files), rounded to 6 significant digits. The script imports no project module: it
relies only on the CLIs, the YAML files and the files a run leaves on disk
(`<path.root>/<name>/<experiment_key>/final/`).
"""

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
KEY = "fp"  # experiment_key of every tiny run
TIFS = "sample_tifs"  # folder under the run root that make_sample_tifs.py writes
TIF_ARGS = ["--patients", "4", "--slices", "2", "--size", "64"]
TINY = [
    "train.max_train_steps=2", "train.validation_steps=2", "train.checkpointing_steps=2",
    "train.batch_size=2", "val.batch_size=2", "val.max_batches=1", f"experiment_key={KEY}",
]  # fmt: skip
STAGE2_TINY = ["val.num_inference_steps=2", "val.num_samples=2"]  # diffusion sampling at validation


@dataclass
class Experiment:
    """One shipped YAML, the runs it needs first and its extra overrides (`{phase}`, once per dataset
    block, `{tifs}` and `{run:FILE}`, the run folder of another experiment, are filled in at launch)."""

    config: str
    needs: tuple[str, ...] = ()
    extra: list[str] = field(default_factory=list)
    tifs: bool = False  # reads the sample TIFs


TIF_PAIRS = ["datasets.{phase}.gt_dir={tifs}/edente", "datasets.{phase}.cond_dir={tifs}/dente"]
EXPERIMENTS = [  # dependencies first; the longest chains first, so that two runs at a time overlap best
    Experiment("checkpoints/MultiTask/exp.yml"),
    Experiment(
        "checkpoints/ControlNet/ldm.yml",
        needs=("checkpoints/MultiTask/exp.yml",),
        extra=["vae.pretrained={run:checkpoints/MultiTask/exp.yml}/final/net_g"],
    ),
    Experiment(
        "checkpoints/ControlNet/exp.yml",
        needs=("checkpoints/ControlNet/ldm.yml",),
        extra=["ldm.pretrained={run:checkpoints/ControlNet/ldm.yml}/final"],
    ),
    Experiment("checkpoints/VAE/tif.yml", tifs=True, extra=["datasets.{phase}.dir={tifs}/tif"]),
    Experiment(
        "checkpoints/LDM/tif.yml",
        needs=("checkpoints/VAE/tif.yml",),
        tifs=True,
        extra=[*TIF_PAIRS, "vae.pretrained={run:checkpoints/VAE/tif.yml}/final/net_g"],
    ),
    Experiment("checkpoints/VAE/exp.yml"),
    Experiment(
        "checkpoints/LDM/exp.yml",
        needs=("checkpoints/VAE/exp.yml",),
        extra=["vae.pretrained={run:checkpoints/VAE/exp.yml}/final/net_g"],
    ),
    Experiment(
        # train.monai_checkpoint stays null (from scratch): a MONAI .pth is not among the files this script
        # may make (only the CLIs and the runs' own files)
        "checkpoints/VAE/pti_ldm_vae.yml",
        tifs=True,
        extra=["datasets.{phase}.dir={tifs}/tif", "datasets.{phase}.patch_size=64"],
    ),
    Experiment("checkpoints/VAE/3d.yml", extra=["train.disc_start=1"]),  # the discriminator trains too
    Experiment("checkpoints/VAE/vq.yml"),
    Experiment("checkpoints/VAE/vq3d.yml", extra=["train.disc_start=1"]),
    Experiment("checkpoints/VAE/3d_psf.yml", extra=["datasets.{phase}.size=4", "datasets.{phase}.spp=256"]),
    Experiment(
        "checkpoints/LDM/3d.yml",
        needs=("checkpoints/VAE/3d_psf.yml",),
        extra=[
            "datasets.{phase}.size=4",
            "datasets.{phase}.spp=256",
            "vae.pretrained={run:checkpoints/VAE/3d_psf.yml}/final/net_g",
        ],
    ),
    Experiment("checkpoints/ControlNet/3d_vae.yml", extra=["datasets.{phase}.size=4"]),
    Experiment(
        "checkpoints/ControlNet/3d_ldm.yml",
        needs=("checkpoints/ControlNet/3d_vae.yml",),
        extra=[
            "datasets.{phase}.size=4",
            "vae.pretrained={run:checkpoints/ControlNet/3d_vae.yml}/final/net_g",
        ],
    ),
    Experiment(
        "checkpoints/ControlNet/3d.yml",
        needs=("checkpoints/ControlNet/3d_ldm.yml",),
        extra=["datasets.{phase}.size=4", "ldm.pretrained={run:checkpoints/ControlNet/3d_ldm.yml}/final"],
    ),
    Experiment("checkpoints/PSF/psf_mlp.yml", extra=["deeplens.spp=256"]),
    Experiment("checkpoints/PSF/psf_emb.yml", extra=["deeplens.spp=256"]),
    Experiment("checkpoints/example/denoise.yml"),
]
# Shipped YAMLs this script cannot run, each with the reason.
UNRUNNABLE = {
    "checkpoints/LDM/pti_ldm_vae.yml": "it samples from PTI-LDM-VAE's own .pth files, which this script "
    "may not make (only the CLIs and the runs' own files)",
}
# Parts of a fingerprint left out of the comparison because they differ between two identical runs:
# {config: {"weights" or "metrics": why}}. Every experiment gave the same numbers twice in a row.
NONDETERMINISTIC: dict[str, dict[str, str]] = {}


def load_yaml(repo: Path, config: str) -> dict:
    with open(repo / config) as f:
        return yaml.safe_load(f)


def run_folder(repo: Path, root: Path, config: str) -> Path:
    """`<path.root>/<name>/<experiment_key>`; the trainer maps a name's other characters to `_`."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", str(load_yaml(repo, config)["name"]))
    return root / name / KEY


def overrides(repo: Path, root: Path, experiment: Experiment) -> list[str]:
    opt = load_yaml(repo, experiment.config)
    args = [*TINY, f"path.root={root}"]
    phases = [p for p, block in (opt.get("datasets") or {}).items() if isinstance(block, dict)]
    for phase in phases:
        block = opt["datasets"][phase]
        if "size" in block:
            args.append(f"datasets.{phase}.size={16 if phase == 'train' else 4}")
        if "spp" in block:  # ray-traced PSFs: fewer rays each
            args.append(f"datasets.{phase}.spp=256")
        if "cache" in block:
            args.append(f"datasets.{phase}.cache=false")
    if "vae" in opt or "ldm" in opt:  # stage 2
        args += STAGE2_TINY

    def fill(text: str, phase: str = "") -> str:
        text = re.sub(r"\{run:([^}]+)\}", lambda m: str(run_folder(repo, root, m.group(1))), text)
        return text.replace("{tifs}", str(root / TIFS)).replace("{phase}", phase)

    for arg in experiment.extra:
        args += [fill(arg, p) for p in phases] if "{phase}" in arg else [fill(arg)]
    return args


def environment() -> dict:
    env = dict(os.environ)
    env.update(
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONHASHSEED="0",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PYTHONPATH", None)
    return env


def launch(argv: list[str], repo: Path, log: Path) -> float:
    """Run `argv` from `repo`, its output into `log`; returns the seconds it took; raises on failure."""
    start = time.monotonic()
    with open(log, "w") as out:
        done = subprocess.run(argv, cwd=repo, env=environment(), stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"`{' '.join(argv)}` exited with {done.returncode}:\n{tail}")
    return time.monotonic() - start


def weights_hash(final: Path) -> str:
    import torch
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    files = sorted(final.rglob("*.safetensors"), key=lambda p: p.relative_to(final).as_posix())
    if not files:
        raise RuntimeError(f"no *.safetensors under {final}")
    for path in files:
        digest.update(path.relative_to(final).as_posix().encode() + b"\0")
        tensors = load_file(path)
        for name in sorted(tensors):
            tensor = tensors[name].contiguous()
            digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rounded(value) -> float | str:
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return float(f"{value:.6g}")


def last_metrics(run: Path) -> dict:
    """The run's last validation metrics: `final/metrics.json`, else the last `val*` scalars of its
    TensorBoard event files."""
    summary = run / "final" / "metrics.json"
    if summary.exists():
        metrics = json.loads(summary.read_text())
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        metrics = {}
        for events in sorted((run / "logs").rglob("events.out.tfevents.*")):
            accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
            accumulator.Reload()
            for tag in accumulator.Tags()["scalars"]:
                if tag.split("/")[-1].startswith("val"):
                    metrics[tag] = accumulator.Scalars(tag)[-1].value
    return {k: rounded(v) for k, v in sorted(metrics.items()) if isinstance(v, int | float)}


def fingerprint(run: Path, config: str) -> dict:
    entry = {"weights": weights_hash(run / "final"), "metrics": last_metrics(run)}
    for part, why in NONDETERMINISTIC.get(config, {}).items():
        entry[part] = None
        entry.setdefault("note", []).append(f"{part} left out: {why}")
    return entry


def run_all(repo: Path, root: Path, python: str, selected: list[Experiment], jobs: int) -> dict:
    logs = root / "fingerprint_logs"
    logs.mkdir(parents=True, exist_ok=True)
    if any(e.tifs for e in selected):
        script = [python, "scripts/make_sample_tifs.py", "--out", str(root / TIFS), *TIF_ARGS]
        launch(script, repo, logs / "make_sample_tifs.log")
    results, done, running = {}, set(), {}

    def train(experiment: Experiment) -> tuple[dict, float]:
        argv = [python, "trainer.py", "-opt", experiment.config, *overrides(repo, root, experiment)]
        seconds = launch(argv, repo, logs / (experiment.config.replace("/", "_") + ".log"))
        return fingerprint(run_folder(repo, root, experiment.config), experiment.config), seconds

    pending = list(selected)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for experiment in [e for e in pending if set(e.needs) <= done][: jobs - len(running)]:
                pending.remove(experiment)
                running[pool.submit(train, experiment)] = experiment
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                experiment = running.pop(future)
                results[experiment.config], seconds = future.result()
                done.add(experiment.config)
                print(f"{experiment.config}: {seconds:.1f} s", flush=True)
    return {e.config: results[e.config] for e in selected}


def differences(old: dict, new: dict) -> list[str]:
    lines = []
    for config in sorted(set(old) | set(new)):
        if config not in new:
            lines.append(f"{config}: missing from the new fingerprints")
            continue
        if config not in old:
            lines.append(f"{config}: not in the old fingerprints")
            continue
        before, after = old[config], new[config]
        if before.get("weights") != after.get("weights"):
            lines.append(f"{config}: weights {before.get('weights')} -> {after.get('weights')}")
        old_metrics, new_metrics = before.get("metrics") or {}, after.get("metrics") or {}
        if (before.get("metrics") is None) != (after.get("metrics") is None):
            lines.append(f"{config}: metrics {before.get('metrics')} -> {after.get('metrics')}")
            continue
        for name in sorted(set(old_metrics) | set(new_metrics)):
            if old_metrics.get(name) != new_metrics.get(name):
                lines.append(f"{config}: {name} {old_metrics.get(name)} -> {new_metrics.get(name)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="fingerprints.json", help="JSON to write (default: fingerprints.json)"
    )
    parser.add_argument(
        "--compare", metavar="OLD.json", help="print every difference from OLD.json; exit 1 if any"
    )
    parser.add_argument("--root", help="folder for the runs, kept (default: a temporary folder, removed)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the subprocesses")
    parser.add_argument(
        "--jobs", type=int, default=2, help="runs at a time, one CPU thread each (default: 2)"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="YML", help="these experiments only (and the runs they need)"
    )
    args = parser.parse_args(argv)

    selected = EXPERIMENTS
    if args.only:
        wanted = set(args.only)
        unknown = wanted - {e.config for e in EXPERIMENTS}
        if unknown:
            parser.error(f"not a shipped experiment: {', '.join(sorted(unknown))}")
        for experiment in reversed(EXPERIMENTS):
            if experiment.config in wanted:
                wanted |= set(experiment.needs)
        selected = [e for e in EXPERIMENTS if e.config in wanted]
    shipped = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "checkpoints").rglob("*.yml"))
    unlisted = sorted(set(shipped) - {e.config for e in EXPERIMENTS} - set(UNRUNNABLE))
    if unlisted:
        print(f"warning: shipped experiments without a fingerprint: {', '.join(unlisted)}", file=sys.stderr)

    root = Path(args.root).resolve() if args.root else Path(tempfile.mkdtemp(prefix="fingerprint_"))
    start = time.monotonic()
    try:
        result = run_all(REPO, root, args.python, selected, max(1, args.jobs))
    except RuntimeError as error:
        print(f"error: {error}\n(runs in {root})", file=sys.stderr)
        return 2
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"Fingerprinted {len(result)} experiments in {time.monotonic() - start:.0f} s -> {args.out}")

    if args.compare:
        old = json.loads(Path(args.compare).read_text())
        if args.only:
            old = {k: v for k, v in old.items() if k in result}
        lines = differences(old, result)
        for line in lines:
            print(line)
        print(f"{len(lines)} difference(s) from {args.compare}")
        return 1 if lines else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
