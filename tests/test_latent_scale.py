"""The latent scale factor travels with every saved VAE; stage 2 never diffuses with a silent placeholder."""

import copy
import json
import logging
import os

import pytest

from tests.conftest import read_scalars, run_folder, run_trainer
from tests.helpers import TINY_VAE, ldm_config

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def vae_run(tmp_path, **train):
    config = copy.deepcopy(TINY_VAE)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=4, validation_steps=4, checkpointing_steps=2, **train)
    assert run_trainer(config, tmp_path) == 0
    return run_folder(config)


def saved_config(folder):
    return json.load(open(os.path.join(folder, "net_g", "config.json")))


def test_every_checkpoint_carries_the_scale_factor_measured_on_its_weights(tmp_path):
    run = vae_run(tmp_path)
    factors = read_scalars(run)["latent_scaling_factor"]
    for folder, step in (("checkpoint-2", 2), ("checkpoint-4", 4), ("final", 4)):
        config = saved_config(os.path.join(run, folder))
        assert config["scaling_factor_measured_at"] == step
        assert config["scaling_factor"] == pytest.approx(factors[step], rel=1e-6)
        assert config["scaling_factor"] != pytest.approx(0.18215, rel=1e-3)


def test_stage2_measures_the_factor_when_the_vae_holds_the_placeholder_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="trainer")
    run = vae_run(tmp_path, compute_scale_factor=False)
    assert saved_config(os.path.join(run, "checkpoint-2"))["scaling_factor"] == 0.18215
    config = ldm_config(tmp_path, os.path.join(run, "checkpoint-2", "net_g"), condition={"type": "none"})
    config["network"] = {**config["network"], "with_conditioning": False}
    config["train"].update(max_train_steps=1, validation_steps=1)
    config["val"]["num_samples"] = 0
    assert run_trainer(config, tmp_path, name="ldm.yml") == 0
    stage2 = run_folder(config)
    measured = json.load(open(os.path.join(stage2, "final", "ldm.json")))["scale_factor"]
    assert measured != pytest.approx(0.18215, rel=1e-3)
    log = caplog.text
    lines = [line for line in log.splitlines() if "placeholder scaling_factor 0.18215" in line]
    assert len(lines) == 1 and "checkpoint-2" in lines[0]
    assert f"Measured the latent scale factor: {measured:.5g}" in log
