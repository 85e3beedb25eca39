"""A VAE trained through the trainer on real TIF files: the split lives in the run folder and survives resume."""

import copy
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, read_scalars, run_folder, run_trainer
from tests.helpers import TINY_VAE

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def test_tif_folder_vae_run_writes_and_reuses_its_split(tmp_path):
    out = tmp_path / "sample"
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "make_sample_tifs.py"),
            "--out",
            str(out),
            "--patients",
            "4",
            "--slices",
            "3",
            "--size",
            "32",
        ],
        check=True,
        cwd=ROOT,
    )
    config = copy.deepcopy(TINY_VAE)
    config["path"]["root"] = str(tmp_path / "experiments")
    data = {
        "type": "TIFFolderDataset",
        "dir": str(out / "tif"),
        "normalize": "minmax",
        "patch_size": 16,
        "train_split": 0.5,
        "split_by": r"^(p\d+)_",
        "seed": 0,
    }
    config["datasets"] = {"train": dict(data), "val": dict(data)}
    config["train"].update(batch_size=2, max_train_steps=4, checkpointing_steps=2, validation_steps=4)
    config["val"]["batch_size"] = 2
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    split_files = [f for f in os.listdir(run) if f.startswith("split_")]
    assert split_files, os.listdir(run)
    split = json.load(open(os.path.join(run, split_files[0])))
    text = json.dumps(split)
    patients = {f"p0{i}" for i in range(1, 5)}
    assert all(p in text for p in patients)
    assert "val_psnr" in read_scalars(run)

    resumed = copy.deepcopy(config)
    resumed["path"]["resume_from_checkpoint"] = "checkpoint-2"
    resumed["train"]["max_train_steps"] = 6
    before = open(os.path.join(run, split_files[0])).read()
    assert run_trainer(resumed, tmp_path, name="resume.yml") == 0
    assert open(os.path.join(run, split_files[0])).read() == before

    # scripts/vae_reconstruct.py on the trained run: float32 TIFs, a metrics CSV and a grid PNG
    import csv

    import tifffile

    recon = tmp_path / "recon"
    done = subprocess.run(  # as a user runs it: a process of its own, which prints no library noise
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "vae_reconstruct.py"),
            *("--run", os.path.join(run, "final"), "--input", str(out / "tif"), "--out", str(recon)),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "Loading weights" not in done.stderr and "kernels" not in done.stderr, done.stderr
    written = sorted(p.name for p in recon.glob("*.tif"))
    assert written == sorted(p.name for p in (out / "tif").glob("*.tif"))
    image = tifffile.imread(recon / written[0])
    assert image.dtype == "float32" and image.shape == (16, 16)
    rows = list(csv.DictReader(open(recon / "metrics.csv")))
    assert len(rows) == len(written) + 1 and rows[-1]["name"] == "mean" and float(rows[-1]["psnr"]) > 5
    from PIL import Image

    width, height = Image.open(
        recon / "grid_input_recon_diff.png"
    ).size  # 16-px images, upscaled and labelled
    assert width >= 3 * 128 and height >= 8 * 128
