"""Every YAML the project ships loads and validates against its model and datasets."""

import glob
import os

import pytest

from tests.conftest import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "checkpoints", "**", "*.yml"), recursive=True))


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_shipped_config_validates(path):
    import trainer

    opt, model_cls = trainer.load_config(path)
    assert model_cls.__name__ == opt.model_type
    assert opt.train.max_train_steps or opt.train.num_train_epochs


@pytest.mark.e2e
def test_main_job_runs_a_few_steps(tmp_path):
    """`make train`'s experiment, shortened: PSFs ray-traced on the fly into a KL autoencoder."""
    import trainer
    from tests.conftest import read_scalars, reset_accelerate

    overrides = [
        f"path.root={tmp_path}",
        "experiment_key=smoke",
        "train.max_train_steps=3",
        "train.validation_steps=3",
        "train.checkpointing_steps=3",
        "datasets.train.spp=256",
        "datasets.val.spp=256",
        "datasets.val.size=8",
        "datasets.train.num_workers=0",
        "datasets.train.size=16",  # the cache is ray-traced up front: keep it small
        "val.batch_size=8",
        "train.batch_size=4",
    ]
    try:
        assert trainer.main(["-opt", os.path.join(ROOT, "checkpoints", "VAE", "exp.yml"), *overrides]) == 0
    finally:
        reset_accelerate()
    run = os.path.join(tmp_path, "VAE_PSF", "smoke")
    assert "val_psnr" in read_scalars(run)
    assert os.path.isfile(os.path.join(run, "final", "net_g", "model.safetensors"))
