"""The run folder never loses a run: branches on resume, failed starts and resumes leave the disk as
it was, names cannot leave `path.root`, one trainer per folder; `-test` works before any training."""

import copy
import hashlib
import json
import logging
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from tests.conftest import run_folder, run_trainer


def tree_hashes(folder) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256 of its bytes)."""
    hashes = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return hashes


@pytest.fixture
def info_logs(caplog):
    """The trainer's INFO lines reach `train.log` (pytest's root logger would hold them back)."""
    caplog.set_level(logging.INFO, logger="trainer")


def train_log(config) -> str:
    with open(os.path.join(run_folder(config), "train.log")) as f:
        return f.read()


@pytest.mark.e2e
def test_resume_from_an_earlier_checkpoint_branches_and_keeps_the_abandoned_one(
    tiny_config, tmp_path, info_logs
):
    # 6 steps: checkpoint-3 and checkpoint-6.
    assert run_trainer(tiny_config, tmp_path) == 0
    run = run_folder(tiny_config)
    abandoned_weights = tree_hashes(os.path.join(run, "checkpoint-6"))

    branch = copy.deepcopy(tiny_config)
    branch["path"]["resume_from_checkpoint"] = "checkpoint-3"
    branch["train"].update(max_train_steps=5, checkpointing_steps=1, checkpoints_total_limit=2)
    assert run_trainer(branch, tmp_path, name="branch.yml") == 0

    # The branch's new checkpoints survive rotation; the abandoned checkpoint-6 (and the final weights
    # it led to) moved aside, byte for byte.
    checkpoints = sorted(d for d in os.listdir(run) if d.startswith("checkpoint-"))
    assert checkpoints == ["checkpoint-4", "checkpoint-5"]
    (moved,) = os.listdir(os.path.join(run, "abandoned"))
    aside = os.path.join(run, "abandoned", moved)
    assert sorted(os.listdir(aside)) == ["checkpoint-6", "final"]
    assert tree_hashes(os.path.join(aside, "checkpoint-6")) == abandoned_weights
    log = train_log(branch)
    assert log.count("this run branches: moved checkpoint-6, final to") == 1

    # `latest` is now the newest checkpoint of this branch.
    again = copy.deepcopy(branch)
    again["path"]["resume_from_checkpoint"] = "latest"
    again["train"]["max_train_steps"] = 6
    assert run_trainer(again, tmp_path, name="again.yml") == 0
    assert f"Resumed from {os.path.join(run, 'checkpoint-5')} at step 5" in train_log(again)
    assert sorted(os.listdir(os.path.join(run, "abandoned"))) == [moved]  # nothing newer to abandon


def test_rotation_never_deletes_the_checkpoint_it_just_wrote(tmp_path):
    from engine.checkpoints.store import COMPLETE_MARKER, rotate

    for step in (2, 9):
        os.makedirs(tmp_path / f"checkpoint-{step}")
        (tmp_path / f"checkpoint-{step}" / COMPLETE_MARKER).write_text("ok\n")
    removed = rotate(str(tmp_path), 1, keep_path=str(tmp_path / "checkpoint-2"))
    assert removed == [] and sorted(os.listdir(tmp_path)) == ["checkpoint-2", "checkpoint-9"]


@pytest.mark.e2e
def test_a_failed_start_leaves_nothing_and_the_corrected_run_starts(tiny_config, tmp_path, capsys):
    root = tiny_config["path"]["root"]
    typo = copy.deepcopy(tiny_config)
    typo["network"]["type"] = "TinyDenoser"
    assert run_trainer(typo, tmp_path) == 2
    assert "TinyDenoiser" in capsys.readouterr().err  # the nearest name is offered
    assert not os.path.exists(root)

    # A failure found while loading (weights that are not there) is undone too.
    missing = copy.deepcopy(tiny_config)
    missing["path"]["pretrained"] = str(tmp_path / "nowhere")
    assert run_trainer(missing, tmp_path) == 2
    assert not os.path.exists(root)

    assert run_trainer(tiny_config, tmp_path) == 0
    assert os.path.isdir(os.path.join(run_folder(tiny_config), "final", "net_g"))


@pytest.mark.e2e
@pytest.mark.parametrize(
    "damage",
    ["truncated_weights", "corrupt_state", "other_arch"],
)
def test_a_failed_resume_changes_no_byte_of_the_run_folder(tiny_config, tmp_path, capsys, damage):
    tiny_config["train"].update(max_train_steps=3, checkpointing_steps=3, validation_steps=3)
    assert run_trainer(tiny_config, tmp_path) == 0
    run = run_folder(tiny_config)
    checkpoint = os.path.join(run, "checkpoint-3")
    resume = copy.deepcopy(tiny_config)
    resume["path"]["resume_from_checkpoint"] = "latest"
    resume["train"].update(max_train_steps=6, optim={"learning_rate": 1e-3})
    if damage == "truncated_weights":
        path = os.path.join(checkpoint, "model.safetensors")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    elif damage == "corrupt_state":
        with open(os.path.join(checkpoint, "trainer_state.json"), "w") as f:
            f.write('{"loop": ')
    else:
        resume["network"]["hidden_channels"] = 12
    before = tree_hashes(run)
    capsys.readouterr()
    assert run_trainer(resume, tmp_path, name="resume.yml") == 2
    assert "Cannot resume from" in capsys.readouterr().err
    assert tree_hashes(run) == before


@pytest.mark.e2e
def test_separators_in_names_become_one_folder(tiny_config, tmp_path):
    tiny_config["name"] = "../../outside"
    tiny_config["train"].update(max_train_steps=1, checkpointing_steps=1, validation_steps=1)
    assert run_trainer(tiny_config, tmp_path) == 0
    root = tiny_config["path"]["root"]
    assert os.listdir(root) == [".._.._outside"]
    assert sorted(os.listdir(tmp_path)) == ["exp.yml", "experiments"]


@pytest.mark.e2e
def test_a_stale_lock_of_a_dead_process_is_taken_over(tiny_config, tmp_path):
    tiny_config["train"].update(max_train_steps=2, checkpointing_steps=2, validation_steps=2)
    assert run_trainer(tiny_config, tmp_path) == 0
    run = run_folder(tiny_config)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    with open(os.path.join(run, "run.lock"), "w") as f:
        f.write(f"{dead.pid} {socket.gethostname()}\n")
    tiny_config["path"]["resume_from_checkpoint"] = "latest"
    tiny_config["train"]["max_train_steps"] = 3
    assert run_trainer(tiny_config, tmp_path, name="resume.yml") == 0
    assert not os.path.exists(os.path.join(run, "run.lock"))
    assert os.path.isdir(os.path.join(run, "checkpoint-2"))


@pytest.mark.e2e
def test_dash_test_without_weights_validates_the_fresh_networks(tiny_config, tmp_path, info_logs):
    tiny_config["experiment_key"] = "smoke"
    assert run_trainer(tiny_config, tmp_path, "-test") == 0
    run = run_folder(tiny_config)
    (stamp,) = os.listdir(os.path.join(run, "test"))  # a -test writes into <run>/test/<stamp>/
    test_dir = os.path.join(run, "test", stamp)
    with open(os.path.join(test_dir, "test_metrics.json")) as f:
        summary = json.load(f)
    assert summary["weights"] is None
    # An untrained denoiser is far from the 20 dB of the noisy input: the metrics are real, of fresh weights.
    assert 0 < summary["metrics"]["val_psnr"] < 20
    with open(os.path.join(test_dir, "train.log")) as f:
        assert f.read().count("validating the freshly initialised networks") == 1
    assert not [d for d in os.listdir(run) if d.startswith("checkpoint") or d == "final"]


@pytest.mark.e2e
def test_checkpoint_weights_equal_the_final_save(tiny_config, tmp_path):
    """The branch's checkpoints are real training state: the last equals the final weights."""
    assert run_trainer(tiny_config, tmp_path) == 0
    run = run_folder(tiny_config)
    last = load_file(os.path.join(run, "checkpoint-6", "net_g", "model.safetensors"))
    final = load_file(os.path.join(run, "final", "net_g", "model.safetensors"))
    assert all(last[k].equal(final[k]) for k in final)
