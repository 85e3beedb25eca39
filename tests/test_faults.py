"""Preemption and numerical faults, in real tiny runs."""

import copy
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import read_scalars, run_folder, run_trainer

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def final_weights(config):
    return load_file(os.path.join(run_folder(config), "final", "net_g", "model.safetensors"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_at_the_step_boundary_and_resume_matches(
    tiny_config, tmp_path, monkeypatch, caplog, signum
):
    from models.example.Denoise_model import Denoise_model

    tiny_config["train"].update(max_train_steps=8, checkpointing_steps=100, validation_steps=100)
    reference = copy.deepcopy(tiny_config)
    reference["experiment_key"] = "uninterrupted"
    assert run_trainer(reference, tmp_path, name="ref.yml") == 0

    original = Denoise_model.optimize_parameters
    calls = {"n": 0}

    def preempted(self):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signum)  # arrives in the middle of step 3
        return original(self)

    monkeypatch.setattr(Denoise_model, "optimize_parameters", preempted)
    with caplog.at_level("INFO", logger="trainer"):
        assert run_trainer(tiny_config, tmp_path) == 0
    monkeypatch.setattr(Denoise_model, "optimize_parameters", original)
    run = run_folder(tiny_config)
    assert sorted(d for d in os.listdir(run) if d.startswith("checkpoint")) == ["checkpoint-3"]
    assert not os.path.isdir(os.path.join(run, "final"))
    stop_lines = [r.message for r in caplog.records if "Stopped by" in r.message]
    assert len(stop_lines) == 1 and signal.Signals(signum).name in stop_lines[0] and "step 3" in stop_lines[0]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers are put back

    resumed = copy.deepcopy(tiny_config)
    resumed["path"]["resume_from_checkpoint"] = "latest"
    assert run_trainer(resumed, tmp_path, name="resume.yml") == 0
    for key, value in final_weights(reference).items():
        torch.testing.assert_close(final_weights(resumed)[key], value, rtol=1e-6, atol=1e-7)


def _poison_step(monkeypatch, at_call: int):
    from models.example.Denoise_model import Denoise_model

    calls = {"n": 0}

    def optimize(self):
        calls["n"] += 1
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        loss = self.criterion(self.net_g(self.sample["inp"]), self.sample["gt"])
        if calls["n"] == at_call:
            loss = {k: v * float("nan") for k, v in loss.items()}
        self.accelerator.backward(loss["all"])
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    monkeypatch.setattr(Denoise_model, "optimize_parameters", optimize)


def test_nan_loss_raises_naming_step_and_terms(tiny_config, tmp_path, monkeypatch, capsys):
    _poison_step(monkeypatch, at_call=3)
    assert run_trainer(tiny_config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "not finite at step 3" in err and "MSE=nan" in err and "nan_policy: skip" in err


def test_nan_loss_is_skipped_and_counted(tiny_config, tmp_path, monkeypatch):
    _poison_step(monkeypatch, at_call=3)
    tiny_config["train"]["nan_policy"] = "skip"
    assert run_trainer(tiny_config, tmp_path) == 0
    scalars = read_scalars(run_folder(tiny_config))
    assert scalars["train/skipped_steps"][6] == 1
    assert all(torch.isfinite(w).all() for w in final_weights(tiny_config).values())
    assert scalars["train/all"][6] == scalars["train/all"][6]  # finite again after the skipped step


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_as_latest(
    tiny_config, tmp_path, monkeypatch, capsys
):
    """On a real 4 MB tmpfs, filled up right after checkpoint-3: checkpoint-6 cannot be written."""
    import hashlib
    import subprocess

    from engine.base_model import BaseModel
    from engine.checkpoints.store import list_checkpoints

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        tiny_config["path"]["root"] = str(disk / "experiments")
        tiny_config["network"]["hidden_channels"] = 64  # a checkpoint of about 0.6 MB
        tiny_config["train"].update(max_train_steps=9, checkpointing_steps=3, validation_steps=100)
        original = BaseModel.save_checkpoint
        kept = {}

        def save_then_fill_the_disk(self):
            final = original(self)
            if not kept:
                kept.update({p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in _files(final)})
                with open(disk / "filler", "wb") as filler:  # leave 64 KB: logs fit, a checkpoint does not
                    filler.write(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - 64 * 1024))
            return final

        monkeypatch.setattr(BaseModel, "save_checkpoint", save_then_fill_the_disk)
        status = run_trainer(tiny_config, tmp_path)
        err = capsys.readouterr().err
        error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert status == 2 and len(error_lines) == 1 and "Traceback" not in err, err[-2000:]
        assert "The disk is full while writing" in error_lines[0] and "checkpoint-6" in error_lines[0]
        assert "MB is needed" in error_lines[0] or "KB is needed" in error_lines[0]
        run = run_folder(tiny_config)
        assert [os.path.basename(p) for _, p in list_checkpoints(run)] == ["checkpoint-3"]  # still `latest`
        assert not any(name.startswith("checkpoint-6") for name in os.listdir(run))  # no half-written folder
        for path, digest in kept.items():
            assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest, path
        assert load_file(os.path.join(run, "checkpoint-3", "net_g", "model.safetensors"))

        # With space again, the run resumes from checkpoint-3 and finishes.
        monkeypatch.setattr(BaseModel, "save_checkpoint", original)
        os.remove(disk / "filler")
        tiny_config["path"]["resume_from_checkpoint"] = "latest"
        assert run_trainer(tiny_config, tmp_path, name="resume.yml") == 0
        assert os.path.isfile(os.path.join(run, "final", "net_g", "model.safetensors"))
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _files(folder):
    return [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
