"""A model declares its keys once (`config_keys`, as `Key`s): the config check validates them, fills
their defaults and names the nearest key on a typo, and the README's tables are printed from them."""

import os

import pytest

from tests.conftest import ROOT
from utils.errors import ConfigError


def load(path, *overrides):
    import trainer

    return trainer.load_config(os.path.join(ROOT, path), list(overrides))[0]


def test_readme_holds_every_models_key_table_as_printed():
    from scripts.key_reference import model_reference_markdown

    tables = model_reference_markdown()
    for model in ("VAE_model", "LDM_model", "PSF_model", "PSF_Emb_model"):
        assert f"#### `model_type: {model}`" in tables
    with open(os.path.join(ROOT, "README.md")) as f:
        assert tables.strip() in f.read(), "README is out of date: run python -m scripts.key_reference"


def test_model_keys_get_their_declared_defaults():
    # None of these keys is in the YAML files: each value is its declared default.
    opt = load("checkpoints/VAE/exp.yml")
    assert opt.train.kl_reduction == "batchmean" and opt.train.focal_gamma == 2.0
    opt = load("checkpoints/LDM/exp.yml")
    assert opt.condition.stats_batches == 8 and opt.vae.scale_batches == 8 and opt.condition.hidden_dim == 128
    opt = load("checkpoints/PSF/psf_emb.yml")
    assert opt.train.focus_depth is None and opt.val.batch_size >= 1


@pytest.mark.parametrize(
    "path, override, expected",
    [
        (
            "checkpoints/LDM/exp.yml",
            "diffusion.beta_schedul=linear",
            "'diffusion.beta_schedul' (did you mean 'beta_schedule'?)",
        ),
        (
            "checkpoints/LDM/exp.yml",
            "condition.type=imag",
            "'condition.type' is 'imag'; allowed: image, vector, class, none (did you mean 'image'?)",
        ),
        (
            "checkpoints/LDM/exp.yml",
            "train.cond_drop_prob=1.5",
            "'train.cond_drop_prob' is 1.5; it must be at most 1.0",
        ),
        ("checkpoints/VAE/exp.yml", "train.disc_start=soon", "'train.disc_start' must be an int, got 'soon'"),
        (
            "checkpoints/PSF/psf_emb.yml",
            "train.psf_normalize=max",
            "'train.psf_normalize' is 'max'; allowed: peak, sum",
        ),
        (
            "checkpoints/PSF/psf_emb.yml",
            "train.interp_distanse=0.1",
            "'train.interp_distanse' (did you mean 'interp_distance'?)",
        ),
    ],
)
def test_a_bad_model_key_is_one_sentence_from_its_declaration(path, override, expected):
    with pytest.raises(ConfigError) as error:
        load(path, override)
    assert expected in str(error.value)


@pytest.mark.parametrize("arch_type", ["AutoencoderKL", "MonaiAutoencoderKL", "VQVAE", "TinyDenoiser"])
def test_arch_config_keys_come_from_one_signature_and_round_trip(arch_type, tmp_path):
    from models.archs import find_arch
    from models.archs.config_signature import signature_keys

    config_cls, _ = find_arch(arch_type)
    keys = signature_keys(config_cls)
    config = config_cls()
    saved = config.to_dict()
    # Every key of the signature is stored, once, with its default (tuples as lists).
    for key in keys:
        assert key in saved, key
    config.save_pretrained(tmp_path)
    again = config_cls.from_pretrained(tmp_path)
    assert {k: getattr(again, k) for k in keys} == {k: getattr(config, k) for k in keys}


def test_a_body_normalisation_wins_over_the_raw_argument():
    from models.archs import find_arch

    config_cls, _ = find_arch("AutoencoderKL")
    config = config_cls(block_out_channels=(8, 16), norm_num_groups=4, latent_channels=2, in_channels=5)
    assert config.block_out_channels == [8, 16] and config.in_channels == 5
    assert config.down_block_types == ["DownEncoderBlock2D", "DownEncoderBlock2D"]


def test_dataset_keys_are_declared_once_too():
    from scripts.key_reference import dataset_reference_markdown

    tables = dataset_reference_markdown()
    assert "#### `datasets.*.type: SyntheticShapesDataset`" in tables
    with open(os.path.join(ROOT, "README.md")) as f:
        assert tables.strip() in f.read(), "README is out of date: run python -m scripts.key_reference"
    opt = load("checkpoints/example/denoise.yml")
    assert opt.datasets.train.num_shapes == 3  # filled from the declaration
    with pytest.raises(ConfigError, match=r"'datasets.train.noise_sdt' \(did you mean 'noise_std'\?\)"):
        load("checkpoints/example/denoise.yml", "datasets.train.noise_sdt=0.2")
    with pytest.raises(ConfigError, match="'datasets.train.spatial_dims' is 4; it must be at most 3"):
        load("checkpoints/example/denoise.yml", "datasets.train.spatial_dims=4")
