import os

import pytest

from tests.helpers import opt_with
from utils.config.check import validate_options
from utils.config.load import Opt, load_options, save_options

SEED_003_TEMPLATE = os.path.join(os.path.dirname(__file__), "data", "seed003_template.yml")


def test_opt_attribute_item_get_hasattr_and_dict():
    opt = Opt({"train": {"optim": {"learning_rate": 1e-4}, "batch_size": 4}, "name": "x"})
    assert opt.train.optim.learning_rate == opt["train"]["optim"]["learning_rate"] == 1e-4
    assert opt.train.get("kl_weight", 0.5) == 0.5
    assert hasattr(opt.train, "batch_size") and not hasattr(opt.train, "kl_weight")
    assert dict(opt)["name"] == "x" and set(dict(opt)) == {"train", "name"}
    opt.train.batch_size = 8  # views share the underlying dict
    assert opt["train"]["batch_size"] == 8


def test_interpolation_and_cli_overrides(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("name: a\nroot: /tmp/r\npath:\n  root: ${root}/runs\ntrain:\n  batch_size: 2\n")
    opt = load_options(str(path), ["train.batch_size=8", "train.optim.learning_rate=1e-3"])
    assert opt.path.root == "/tmp/r/runs"
    assert opt.train.batch_size == 8 and opt.train.optim.learning_rate == 1e-3


def test_defaults_are_filled():
    opt = validate_options(opt_with())
    assert opt.train.optim.learning_rate == 1e-4 and opt.train.scheduler.type == "constant"
    assert opt.path.root == "experiments" and opt.mixed_precision == "no"


def test_seed_003_template_loads_and_validates_unchanged():
    from models.PSFlatent.PSF_model import PSF_model

    # The roadmap's YourVAE_model subclasses PSF_model without declaring its own keys (kl_weight).
    opt = validate_options(load_options(SEED_003_TEMPLATE), PSF_model.config_keys, declares_every_key=False)
    assert opt.mixed_precision == "no" and opt.train.optim.learning_rate == 1e-4
    assert opt.deeplens.wavelength_set_m[1] == pytest.approx(550e-9)
    assert opt.train.kl_weight == 1e-4 and opt.train.scheduler.lr_num_cycles == 3


def test_saved_config_has_no_secrets(tmp_path):
    opt = Opt({"name": "x", "comet": {"api_key": "SECRET"}})
    save_options(opt, tmp_path / "c.yml")
    assert "SECRET" not in (tmp_path / "c.yml").read_text()


def test_keys_page_documents_every_key():
    from utils.config.schema import BLOCKS, DATASET

    page = open(os.path.join(os.path.dirname(__file__), "..", "docs", "keys.md")).read()
    for keys in [*BLOCKS.values(), DATASET]:
        for name in keys:
            assert f"`{name}`" in page, f"docs/keys.md lacks the key {name}"
