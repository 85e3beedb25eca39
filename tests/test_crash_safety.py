"""SIGKILL at random moments, checkpoint writes included: `latest` always loads, and the run ends as an
uninterrupted one would."""

import copy
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, run_folder, write_config

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def test_repeated_sigkill_then_resume_ends_with_the_uninterrupted_weights(tiny_config, tmp_path):
    # Long enough that no process can finish between a checkpoint appearing and the kill.
    tiny_config["train"].update(
        max_train_steps=300, checkpointing_steps=1, validation_steps=1000, checkpoints_total_limit=2
    )
    reference = copy.deepcopy(tiny_config)
    reference["experiment_key"] = "uninterrupted"
    reference["train"]["checkpointing_steps"] = 1000  # checkpoints never change the weights
    # Both runs in subprocesses with one thread: a reduction split over two threads rounds differently
    # (3.5e-7 apart after 300 steps), which is not what this test measures.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    trainer_py = os.path.join(ROOT, "trainer.py")
    ref_path = write_config(reference, tmp_path / "ref.yml")
    done = subprocess.run(
        [sys.executable, trainer_py, "-opt", ref_path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    config = copy.deepcopy(tiny_config)
    config["path"]["resume_from_checkpoint"] = "latest"
    path = write_config(config, tmp_path / "crashy.yml")
    run = run_folder(config)
    command = [sys.executable, trainer_py, "-opt", path]
    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        start = len([d for d in os.listdir(run) if d.startswith("checkpoint-")]) if os.path.isdir(run) else 0
        # wait until this process has written a new checkpoint, then kill it at a random moment
        while time.time() < deadline and process.poll() is None:
            names = os.listdir(run) if os.path.isdir(run) else []
            if (
                any(n.endswith(".tmp") for n in names)
                or len([n for n in names if n.startswith("checkpoint-")]) > start
            ):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    assert kills == 3

    final = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    assert not [n for n in os.listdir(run) if n.endswith((".tmp", ".trash"))]
    got = load_file(os.path.join(run, "final", "net_g", "model.safetensors"))
    want = load_file(os.path.join(run_folder(reference), "final", "net_g", "model.safetensors"))
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7)
