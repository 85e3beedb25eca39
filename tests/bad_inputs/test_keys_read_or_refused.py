"""Every key a run is given is declared by a part of that run (trainer blocks, the model, its datasets,
its arch blocks) or refused in one sentence naming the key, who would read it and the nearest name."""

import copy
import json
import os

import pytest

from tests.conftest import run_trainer, write_config
from utils.errors import ConfigError


def load(config: dict, tmp_path, *overrides):
    import trainer

    return trainer.load_config(write_config(config, tmp_path / "exp.yml"), list(overrides))


def test_another_models_key_is_refused_naming_that_model(tiny_config, tmp_path):
    tiny_config["train"]["kl_weight"] = 1e-4
    with pytest.raises(ConfigError, match=r"'train\.kl_weight'.*read by .*VAE_model.*not by Denoise_model"):
        load(tiny_config, tmp_path)


def test_a_key_only_some_models_read_is_refused_by_the_others(tiny_config, tmp_path):
    vae = copy.deepcopy(tiny_config)
    vae.update(model_type="VAE_model", network={"type": "AutoencoderKL"})
    # train.loss is Denoise_model's (and the PSF models'), never VAE_model's
    with pytest.raises(ConfigError, match=r"'train\.loss'.*read by Denoise_model.*not by VAE_model"):
        load(vae, tmp_path)
    tiny_config["train"]["patched"] = True  # Denoise_model has no patch support
    with pytest.raises(ConfigError, match=r"'train\.patched'.*read by .*VAE_model.*not by Denoise_model"):
        load(tiny_config, tmp_path)


def test_another_datasets_key_is_refused_naming_that_dataset(tiny_config, tmp_path):
    tiny_config["datasets"]["val"]["csv"] = "items.csv"
    with pytest.raises(
        ConfigError,
        match=r"'datasets\.val\.csv': it is read by ManifestDataset, not by SyntheticShapesDataset",
    ):
        load(tiny_config, tmp_path)


def test_another_models_block_is_refused(tiny_config, tmp_path):
    tiny_config["vae"] = {"pretrained": "somewhere"}
    with pytest.raises(
        ConfigError, match=r"Unknown key 'vae' .*: it is read by LDM_model, not by Denoise_model"
    ):
        load(tiny_config, tmp_path)


def test_a_top_level_block_nothing_reads_is_refused(tiny_config, tmp_path):
    tiny_config["psf"] = {"lens_file": "x.json", "spp": 64}
    with pytest.raises(ConfigError, match=r"Unknown key 'psf'.*must start with '_', e\.g\. '_psf'"):
        load(tiny_config, tmp_path)


def test_an_underscore_anchor_block_is_accepted_and_never_read(tmp_path):
    path = tmp_path / "exp.yml"
    path.write_text(
        "name: a\nmodel_type: Denoise_model\n"
        "_shapes: &shapes\n  type: SyntheticShapesDataset\n  image_size: 16\n"
        "datasets:\n  train:\n    <<: *shapes\n    size: 8\n"
        "network: {type: TinyDenoiser}\ntrain: {max_train_steps: 1}\n"
    )
    import trainer

    opt, _ = trainer.load_config(str(path))
    assert "_shapes" not in opt and opt.datasets.train.image_size == 16


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_sise=4", r"Unknown key 'train\.batch_sise'.*did you mean 'batch_size'"),
        ("train.optim.lerning_rate=1", r"'train\.optim\.lerning_rate'.*did you mean 'learning_rate'"),
        (
            "datasets.train.image_sise=4",
            r"'datasets\.train\.image_sise' \(did you mean 'image_size'\?\).*SyntheticShapesDataset",
        ),
        (
            "network.hiden_channels=4",
            r"'network\.hiden_channels' for TinyDenoiser_config \(did you mean 'hidden_channels'\?\)",
        ),
    ],
)
def test_a_misspelled_key_gets_its_nearest_name(tiny_config, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load(tiny_config, tmp_path, override)


@pytest.mark.parametrize(
    "override, key",
    [
        ("datasets.train.image_size='16'", "datasets.train.image_size"),
        ("train.batch_size='8'", "train.batch_size"),
        ("network.num_layers='3'", "network.num_layers"),
        ("val.max_batches='2'", "val.max_batches"),
    ],
)
def test_a_quoted_number_is_refused_not_split(tiny_config, tmp_path, override, key):
    with pytest.raises(
        ConfigError, match=rf"^'{key}' (must be an? \w+|is '\d+' \(str\);)[^.]*without quotes\.$"
    ):
        load(tiny_config, tmp_path, override)


def test_a_quoted_patch_size_is_refused(tiny_config, tmp_path):
    vae = copy.deepcopy(tiny_config)
    del vae["train"]["loss"]
    vae.update(model_type="VAE_model", network={"type": "AutoencoderKL"})
    vae["train"].update(patched=True, patch_size="8")
    with pytest.raises(
        ConfigError,
        match=r"'train\.patch_size' must be an int or a list of ints, got '8' \(str\); write it without quotes",
    ):
        load(vae, tmp_path)
    vae["train"]["patch_size"] = [8, "8"]
    with pytest.raises(ConfigError, match=r"'train\.patch_size'.*without quotes"):
        load(vae, tmp_path)


def test_piecewise_constant_is_not_offered(tiny_config, tmp_path):
    tiny_config["train"]["scheduler"]["type"] = "piecewise_constant"
    with pytest.raises(
        ConfigError, match=r"'train\.scheduler\.type' is 'piecewise_constant'; allowed: linear"
    ):
        load(tiny_config, tmp_path)


def test_every_shipped_experiment_loads():
    import glob

    import trainer

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in sorted(glob.glob(os.path.join(root, "checkpoints", "**", "*.yml"), recursive=True)):
        trainer.load_config(path)


def _scored(config, tmp_path, name):
    config = copy.deepcopy(config)
    config["experiment_key"] = name
    assert run_trainer(config, tmp_path, "-test", name=f"{name}.yml") == 0
    (summary,) = [
        os.path.join(d, "test_metrics.json")
        for d, _, files in os.walk(config["path"]["root"])
        if "test_metrics.json" in files and name in d
    ]
    return json.load(open(summary))


@pytest.mark.e2e
def test_minus_test_scores_the_test_block_and_says_so(tiny_config, tmp_path, capsys):
    on_val = _scored(tiny_config, tmp_path, "valonly")
    assert on_val["dataset"] == "datasets.val" and "val_psnr" in on_val["metrics"]
    assert "no datasets.test block" in capsys.readouterr().out
    # a test set drawn with another seed and noise: a score that differs from val's
    tiny_config["datasets"]["test"] = {
        "type": "SyntheticShapesDataset",
        "size": 16,
        "image_size": 16,
        "seed": 5,
        "noise_std": 0.3,
    }
    on_test = _scored(tiny_config, tmp_path, "withtest")
    assert on_test["dataset"] == "datasets.test" and "val_psnr" not in on_test["metrics"]
    assert "Scored datasets.test:" in capsys.readouterr().out
    assert on_test["metrics"]["test_psnr"] < on_val["metrics"]["val_psnr"] - 3.0  # 3x the noise: ~9.5 dB less


def test_a_schedule_key_its_type_ignores_is_refused(tiny_config, tmp_path):
    tiny_config["train"]["scheduler"] = {"type": "constant", "lr_warmup_steps": 10}
    with pytest.raises(ConfigError, match=r"'train\.scheduler\.lr_warmup_steps' is 10, but 'type: constant'"):
        load(tiny_config, tmp_path)
    tiny_config["train"]["scheduler"] = {"type": "cosine", "lr_num_cycles": 3}
    with pytest.raises(
        ConfigError, match=r"'train\.scheduler\.lr_num_cycles' is 3, .* read by cosine_with_restarts\.$"
    ):
        load(tiny_config, tmp_path)
