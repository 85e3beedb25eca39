"""Each model's `validation_metric_names()`, which `train.best_metric` is checked against at start, is
exactly what its first validation reports."""

import copy

import pytest

from tests.helpers import (
    TINY_DENOISE,
    TINY_LDM,
    TINY_MULTITASK,
    TINY_PSF,
    TINY_VAE,
    emb_config,
    in_folder,
    record_validations,
    run_trainer,
)

ONE_STEP = {"max_train_steps": 1, "validation_steps": 1, "checkpointing_steps": 1000}


@pytest.fixture
def reported(monkeypatch):
    return record_validations(monkeypatch)


def tiny(base, tmp_path, **train):
    config = in_folder(base, tmp_path)
    config["train"].update(ONE_STEP, **train)
    config["val"]["max_batches"] = 1
    for block in config["datasets"].values():
        if "size" in block:
            block["size"] = min(block["size"], 16)
    return config


def patched_vae(tmp_path):
    return tiny(TINY_VAE, tmp_path, patched=True, patch_size=8)


def psf(tmp_path):
    config = tiny(TINY_PSF, tmp_path)
    config["val"]["batch_size"] = 4
    return config


CONFIGS = {
    "Denoise": lambda tmp_path: tiny(TINY_DENOISE, tmp_path),
    "VAE": lambda tmp_path: tiny(TINY_VAE, tmp_path),
    "VAE patched": patched_vae,
    "MultiTask": lambda tmp_path: tiny(TINY_MULTITASK, tmp_path),
    "PSF": psf,
    "PSF_Emb": lambda tmp_path: emb_config(psf(tmp_path)),
}


def assert_declared_as_reported(seen):
    assert seen, "no validation ran"
    for declared, logged in seen:
        assert declared == logged


@pytest.mark.e2e
@pytest.mark.parametrize("model", list(CONFIGS))
def test_declared_metric_names_are_what_validation_reports(model, tmp_path, reported):
    assert run_trainer(CONFIGS[model](tmp_path), tmp_path) == 0
    assert_declared_as_reported(reported)


@pytest.mark.e2e
@pytest.mark.parametrize("condition", ["image", "none"])
def test_an_ldm_declares_its_baselines_as_it_reports_them(condition, stage1, tmp_path, reported):
    config = tiny(TINY_LDM, tmp_path)
    config.update(vae={"pretrained": stage1}, condition={"type": condition})
    config["val"].update(num_inference_steps=2, num_samples=2, batch_size=4)
    if condition == "none":
        config["network"].update(with_conditioning=False, cross_attention_dim=None)
    assert run_trainer(copy.deepcopy(config), tmp_path) == 0
    assert_declared_as_reported(reported)
