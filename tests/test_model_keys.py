"""A model declares its keys once (`config_keys`, as `Key`s): the config check validates them, fills
their defaults and names the nearest key on a typo, and docs/keys.md is printed from them."""

import os

import pytest

from tests.conftest import ROOT
from tests.helpers import load_experiment
from utils.errors import ConfigError


def keys_page_on_disk() -> str:
    with open(os.path.join(ROOT, "docs", "keys.md")) as f:
        return f.read()


def test_docs_keys_page_is_what_the_script_generates():
    from scripts.key_reference import KEYS_PAGE, keys_page

    assert os.path.samefile(KEYS_PAGE, os.path.join(ROOT, "docs", "keys.md"))
    assert keys_page_on_disk() == keys_page(), (
        "docs/keys.md is out of date: run python -m scripts.key_reference"
    )


def test_key_reference_check_fails_on_a_stale_page(tmp_path, monkeypatch):
    import scripts.key_reference as key_reference

    stale = tmp_path / "keys.md"
    stale.write_text(keys_page_on_disk().replace("| `seed` | `42` |", "| `seed` | `7` |"))
    monkeypatch.setattr(key_reference, "KEYS_PAGE", str(stale))
    assert key_reference.main(["--check"]) == 1
    assert key_reference.main([]) == 0  # writes the page from the declarations
    assert key_reference.main(["--check"]) == 0 and stale.read_text() == keys_page_on_disk()


def test_keys_page_holds_every_models_key_table_as_printed():
    from scripts.key_reference import model_reference_markdown

    tables = model_reference_markdown()
    for model in (
        "VAE_model",
        "LDM_model",
        "PSF_model",
        "PSF_Emb_model",
        "MultiTask_model",
        "ControlNet_model",
    ):
        assert f"#### `model_type: {model}`" in tables
    assert tables.strip() in keys_page_on_disk(), (
        "docs/keys.md is out of date: run python -m scripts.key_reference"
    )


def test_model_keys_get_their_declared_defaults():
    # None of these keys is in the YAML files: each value is its declared default.
    opt = load_experiment("checkpoints/VAE/exp.yml")
    assert opt.train.kl_reduction == "batchmean" and opt.train.focal_gamma == 2.0
    opt = load_experiment("checkpoints/LDM/exp.yml")
    assert opt.condition.stats_batches == 8 and opt.vae.scale_batches == 8 and opt.condition.hidden_dim == 128
    opt = load_experiment("checkpoints/PSF/psf_emb.yml")
    assert opt.train.focus_depth is None and opt.val.batch_size >= 1
    opt = load_experiment("checkpoints/ControlNet/exp.yml")
    assert opt.val.num_images == 8 and opt.val.sampler is None and opt.val.guidance_scale is None
    opt = load_experiment("checkpoints/MultiTask/exp.yml")
    assert opt.train.compute_scale_factor is True


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
    assert tables.strip() in keys_page_on_disk(), (
        "docs/keys.md is out of date: run python -m scripts.key_reference"
    )
    opt = load_experiment("checkpoints/example/denoise.yml")
    assert opt.datasets.train.num_shapes == 3  # filled from the declaration
    with pytest.raises(ConfigError, match=r"'datasets.train.noise_sdt' \(did you mean 'noise_std'\?\)"):
        load_experiment("checkpoints/example/denoise.yml", "datasets.train.noise_sdt=0.2")
    with pytest.raises(ConfigError, match="'datasets.train.spatial_dims' is 4; it must be at most 3"):
        load_experiment("checkpoints/example/denoise.yml", "datasets.train.spatial_dims=4")


def test_every_shipped_dataset_declares_its_keys_and_reads_their_defaults():
    from dataset import DATASET_REGISTRY
    from dataset.synthetic_masks_dataset import SyntheticMasksDataset
    from scripts.key_reference import dataset_reference_markdown
    from utils.config.schema import Key

    tables = dataset_reference_markdown()
    for name in sorted(DATASET_REGISTRY.names()):
        keys = DATASET_REGISTRY.get(name).config_keys
        assert all(isinstance(key, Key) for key in keys.values()), name
        assert f"#### `datasets.*.type: {name}`" in tables
    opt = load_experiment("checkpoints/LDM/tif.yml")
    assert opt.datasets.train.unmatched == "error" and opt.datasets.train.cache_rate is not None
    # Built without the trainer, a dataset reads the same declaration: defaults and ranges.
    data = SyntheticMasksDataset({"size": 2})
    assert (data.image_size, data.num_kinds, data.max_shapes, data.seed) == (32, 2, 2, 0)
    with pytest.raises(
        ConfigError, match="'num_kinds' in datasets.train .* is 5; it must be between 1 and 3"
    ):
        SyntheticMasksDataset({"size": 2, "num_kinds": 5, "phase": "train"})
