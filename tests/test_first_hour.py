"""What a new user sees in the first hour: start-up lines, progress in a file, the -test folder, the
stage-1 -> stage-2 chain, one TensorBoard run per run folder, and pictures that are readable."""

import copy
import glob
import io
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, TINY_DENOISE, run_folder, run_trainer, write_config
from tests.helpers import TINY_LDM, TINY_VAE


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


@pytest.mark.e2e
def test_a_run_into_a_file_talks_at_start_prints_plain_lines_and_keeps_one_tensorboard_run(tmp_path):
    config = copy.deepcopy(TINY_DENOISE)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=40, validation_steps=20, checkpointing_steps=20)
    path = write_config(config, tmp_path / "exp.yml")
    with open(tmp_path / "out.txt", "w") as out:  # not a terminal, as in a cluster job
        subprocess.run(
            [sys.executable, "trainer.py", "-opt", path],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    printed = (tmp_path / "out.txt").read_text()
    run = run_folder(config)
    lines = printed.splitlines()
    # start-up lines, before the first step
    first_step = next(i for i, line in enumerate(lines) if line.startswith("step 2/40"))
    head = "\n".join(lines[:first_step])
    assert f"Training tiny in {os.path.abspath(run)}" in head
    assert "Device: cpu, 1 process, mixed precision no" in head
    from models.archs import define_network

    params = sum(p.numel() for p in define_network(config["network"]).parameters())
    assert f"Model: Denoise_model; net_g TinyDenoiser_arch {params} parameters" in head
    assert "Data: train 64 items (SyntheticShapesDataset), batch 8 per process, 8 batches per process" in head
    # a plain line every 2 steps (40 / 20), no bar: no carriage returns, log lines on their own lines
    assert "\r" not in printed
    progress = [line for line in lines if line.startswith("step ") and "/40 (" in line]
    assert [line.split()[1] for line in progress] == [f"{s}/40" for s in range(2, 41, 2)]
    assert any(line.startswith(f"Saved {run}") for line in lines)
    # train.log has the same start-up lines, first
    logged = open(os.path.join(run, "train.log")).read().splitlines()
    assert logged[0].endswith(f"Training tiny in {os.path.abspath(run)}")
    assert any("Model: Denoise_model" in line for line in logged[:4])
    # one TensorBoard run: one folder with event files and nothing else beside it (no hparams sub-runs)
    event_dirs = {
        os.path.dirname(p) for p in glob.glob(os.path.join(run, "logs", "**", "events.*"), recursive=True)
    }
    assert len(event_dirs) == 1
    (event_dir,) = event_dirs
    assert all(name.startswith("events.") for name in os.listdir(event_dir))
    # the summary figure of the curves: there, readable size, not blank
    figure = _png(os.path.join(run, "training_summary.png"))
    assert figure.shape[0] >= 300 and figure.shape[1] >= 600
    assert figure.std() > 0.05


def test_summary_figure_reads_the_curves_and_keeps_the_last_value_of_a_replayed_step(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from engine.run.curves import panels, read_scalars, write_training_summary

    folder = tmp_path / "logs" / "proj"
    with SummaryWriter(str(folder)) as writer:  # the first launch
        for step in range(1, 6):
            writer.add_scalar("train/all", 1.0 / step, step)
            writer.add_scalar("train/lr", 1e-3, step)
    with SummaryWriter(str(folder)) as writer:  # a resume that replays step 5
        writer.add_scalar("train/all", 0.1, 5)
        writer.add_scalar("val_psnr", 30.0, 5)
    scalars = read_scalars(str(tmp_path))
    steps, values = scalars["train/all"]
    assert steps.tolist() == [1, 2, 3, 4, 5] and values[-1] == pytest.approx(0.1)
    assert [title for title, _, _ in panels(scalars)] == ["training losses", "learning rate", "val_psnr"]
    assert write_training_summary(str(tmp_path)) == str(tmp_path / "training_summary.png")


def test_progress_on_a_terminal_gives_log_lines_their_own_line(monkeypatch):
    from utils.cli.console import TrainingProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)  # the console the bar and the log handler share
    handler = logging.StreamHandler(sys.stderr)
    logging.root.addHandler(handler)
    logger = logging.getLogger("trainer")
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        progress = TrainingProgress(10, 0, True, logger, stream=stream)
        progress.update(1, 0.5, 1e-3, 20.3)
        logger.info("Saved checkpoint-1")
        progress.update(2, 0.4, 1e-3, 20.3)
        progress.close()
        progress.close()  # twice is harmless (the loop and its error path both close)
    finally:
        logging.root.removeHandler(handler)
        logger.setLevel(previous)
    text = stream.getvalue()
    assert "samples_s=20.3" in text
    assert "]Saved" not in text and "\nSaved checkpoint-1\n" in text.replace("\r", "\n")


@pytest.mark.e2e
def test_test_results_go_beside_the_weights_in_a_new_folder_each_time(tmp_path, capsys):
    config = copy.deepcopy(TINY_DENOISE)
    config["path"]["root"] = str(tmp_path / "experiments")
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    test_config = copy.deepcopy(config)
    test_config["experiment_key"] = None
    test_config["path"]["pretrained"] = os.path.join(run, "final", "net_g")  # a network folder also works
    assert run_trainer(test_config, tmp_path, "-test", name="test.yml") == 0
    import time

    time.sleep(1.1)  # the stamp has one-second resolution
    test_config["path"]["pretrained"] = os.path.join(run, "checkpoint-6")
    assert run_trainer(test_config, tmp_path, "-test", name="test.yml") == 0
    tests = sorted(glob.glob(os.path.join(run, "test", "*")))
    assert len(tests) == 2
    for folder, weights in zip(tests, ("final", "checkpoint-6")):
        summary = json.load(open(os.path.join(folder, "test_metrics.json")))
        assert summary["weights"].startswith(os.path.join(run, weights))
        assert summary["metrics"]["val_psnr"] > 0
        assert glob.glob(os.path.join(folder, "images", "*.png"))
    assert f"Metrics written to {os.path.join(tests[-1], 'test_metrics.json')}" in capsys.readouterr().out
    # `-test` of the resume setting scores the run's newest checkpoint, into the same test/ folder
    time.sleep(1.1)
    resumed = copy.deepcopy(config)
    resumed["path"]["resume_from_checkpoint"] = "latest"
    assert run_trainer(resumed, tmp_path, "-test", name="resume_test.yml") == 0
    newest = sorted(glob.glob(os.path.join(run, "test", "*")))[-1]
    summary = json.load(open(os.path.join(newest, "test_metrics.json")))
    assert summary["weights"] == os.path.join(run, "checkpoint-6")
    # nothing was written elsewhere
    assert sorted(os.listdir(os.path.dirname(run))) == ["run"]


@pytest.mark.e2e
def test_stage2_chains_to_the_newest_finished_stage1_run_and_the_report_shows_both(tmp_path, caplog):
    root = tmp_path / "experiments"
    for key in ("older", "newer"):
        vae = copy.deepcopy(TINY_VAE)
        vae["path"]["root"] = str(root)
        vae["experiment_key"] = key
        vae["train"].update(max_train_steps=4, validation_steps=4, checkpointing_steps=100)
        assert run_trainer(vae, tmp_path, name=f"vae_{key}.yml") == 0
    os.makedirs(root / "vae" / "unfinished" / "checkpoint-2")  # newest folder, but no final/: never chosen
    ldm = copy.deepcopy(TINY_LDM)
    ldm["path"]["root"] = str(root)
    ldm["experiment_key"] = "newer"
    ldm["vae"]["pretrained"] = str(root / "vae" / "latest" / "final" / "net_g")
    ldm["train"].update(max_train_steps=4, validation_steps=4)
    ldm["val"].update(num_samples=2)
    with caplog.at_level(logging.INFO, logger="trainer"):
        assert run_trainer(ldm, tmp_path, name="ldm.yml") == 0
    chosen = str(root / "vae" / "newer" / "final" / "net_g")
    assert f"vae.pretrained: {ldm['vae']['pretrained']} -> {chosen}" in caplog.text
    description = json.load(open(os.path.join(run_folder(ldm), "final", "ldm.json")))
    assert description["vae"]["pretrained"] == os.path.abspath(chosen)

    import scripts.demo_report as demo_report

    out = tmp_path / "report"
    assert (
        demo_report.main(
            ["--root", str(root), "--key", "newer", "--stage1", "vae", "--stage2", "ldm", "--out", str(out)]
        )
        == 0
    )
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4  # curves and a grid of each stage, embedded
    assert "http" not in page  # opens offline


def test_comparison_grid_is_large_labelled_and_shows_the_difference_in_colour():
    from utils.images.comparison import MIN_PANEL, comparison_grid

    rng = np.random.default_rng(0)
    x = np.zeros((2, 3, 32, 32), np.float32)
    x[:, :, 14:18, 14:18] = 1.0
    x[:, :, 10:22, 10:22] += 1e-3  # a halo, invisible on a linear scale
    y = x + 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    grid = comparison_grid(x, y)
    assert grid.shape[0] >= 2 * MIN_PANEL and grid.shape[1] >= 3 * MIN_PANEL and grid.shape[2] == 3
    assert grid.std() > 0.1
    colourful = np.abs(grid[..., 0] - grid[..., 2]) > 0.2  # magma: red differs from blue; grey panels do not
    assert colourful[:, grid.shape[1] * 2 // 3 :].mean() > 0.05
    assert colourful[:, : grid.shape[1] // 3].mean() < 0.01
    logged = comparison_grid(x, x, log_scale=True)
    assert not np.allclose(logged, comparison_grid(x, x))  # the halo shows on a log scale
