"""The config check on its own: a typo, a bad value or bad YAML is one sentence naming the key and the
nearest valid name, from the declarations of the trainer, the models and the datasets."""

import pytest
import torch

from tests.helpers.configs import load_experiment, opt_with
from utils.config.check import validate_options
from utils.config.load import Opt, load_options
from utils.errors import ConfigError
from utils.losses import Loss
from utils.losses.keyed import KeyedLoss
from utils.losses.vae import recon_loss


def test_missing_key_names_key_and_nearest():
    opt = Opt({"train": {"learning_rate": 1e-4, "batch_size": 4}})
    with pytest.raises(ConfigError, match=r"'train.lerning_rate'.*'learning_rate'"):
        _ = opt.train.lerning_rate
    with pytest.raises(KeyError):
        _ = opt["train"]["nothing"]


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("name: a\ntrain:\n  batch_size: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yml.*line"):
        load_options(str(path))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"train__optim__lerning_rate": 1e-4}, r"'train.optim.lerning_rate'.*did you mean 'learning_rate'"),
        ({"train__batch_size": "big"}, r"'train.batch_size' must be an int, got 'big'"),
        ({"train__batch_size": 0}, r"'train.batch_size' is 0; it must be at least 1"),
        ({"mixed_precision": "fp32"}, r"'mixed_precision' is 'fp32'; allowed: no, fp16, bf16"),
        ({"report_to": "tensorbord"}, r"did you mean 'tensorboard'"),
        ({"train__scheduler__type": "cosin"}, r"did you mean 'cosine'"),
        ({"val__metrics": {"psrn": {}}}, r"Unknown metric 'val.metrics.psrn'.*did you mean 'psnr'"),
        ({"val__metrics": {"psnr": {"crp": 0}}}, r"'val.metrics.psnr.crp'.*did you mean 'crop'"),
        ({"train__loss": "1*MSE+0.1*L2"}, r"unknown loss 'L2'.*did you mean 'L1'"),
        ({"datasets": {"trian": {"type": "DummyDataset"}}}, r"'datasets.trian'.*did you mean 'train'"),
        ({"seeed": 3}, r"Unknown key 'seeed'.*did you mean 'seed'"),
        ({"push_to_hub": True}, r"'hub_model_id' is empty"),
        ({"hf_token": "abc"}, r"looks like a secret"),
    ],
)
def test_bad_values_get_one_sentence_naming_key(changes, message):
    from models.shared_keys import LOSS_KEYS

    with pytest.raises(ConfigError, match=message):
        validate_options(opt_with(**changes), model_config_keys={"train": LOSS_KEYS})


def test_model_declared_keys_are_checked_for_typos():
    from models.vae.VAE_model import TRAIN_KEYS

    opt = opt_with(train__kl_weigth=1e-4)
    with pytest.raises(ConfigError, match="did you mean 'kl_weight'"):
        validate_options(opt, model_config_keys={"train": TRAIN_KEYS})
    # Undeclared by the run's model: refused (utils/config/check.py), unless the model is seed-style.
    with pytest.raises(ConfigError, match="Unknown key 'train.kl_weight'"):
        validate_options(opt_with(train__kl_weight=1e-4))
    validate_options(opt_with(train__kl_weight=1e-4), declares_every_key=False)


def test_dataset_declared_keys_are_checked():
    from dataset.dummy_dataset import DummyDataset

    opt = opt_with(datasets={"train": {"type": "DummyDataset", "sise": 4}})
    with pytest.raises(ConfigError, match=r"'datasets.train.sise'.*did you mean 'size'"):
        validate_options(opt, dataset_classes={"train": DummyDataset})


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
            "checkpoints/ControlNet/exp.yml",
            "control.conditioning_sacle=2",
            "'control.conditioning_sacle' (did you mean 'conditioning_scale'?)",
        ),
        (
            "checkpoints/ControlNet/exp.yml",
            "val.sampler=ddmi",
            "'val.sampler' is 'ddmi'; allowed: ddpm, ddim",
        ),
        (
            "checkpoints/MultiTask/exp.yml",
            "train.compute_scale_factor=maybe",
            "'train.compute_scale_factor' must be a bool",
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
        load_experiment(path, override)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "path, override, expected",
    [
        (
            "checkpoints/MultiTask/exp.yml",
            "datasets.train.max_shape=3",
            "'datasets.train.max_shape' (did you mean 'max_shapes'?)",
        ),
        (
            "checkpoints/MultiTask/exp.yml",
            "datasets.train.num_kinds=4",
            "'datasets.train.num_kinds' is 4; it must be at most 3",
        ),
        (
            "checkpoints/LDM/tif.yml",
            "datasets.train.cache_rat=1",
            "'datasets.train.cache_rat' (did you mean 'cache_rate'?)",
        ),
        (
            "checkpoints/LDM/tif.yml",
            "datasets.train.unmatched=ignore",
            "'datasets.train.unmatched' is 'ignore'; allowed: error, skip",
        ),
    ],
)
def test_a_bad_dataset_key_is_one_sentence_from_its_declaration(path, override, expected):
    with pytest.raises(ConfigError) as error:
        load_experiment(path, override)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "terms, message",
    [
        ([{"type": "MSEE", "key": "rgb", "target": "image"}], "did you mean 'MSE'"),
        ([{"type": "MSE", "key": "rgb"}], "needs 'target'"),
        ([{"type": "MSE", "key": "rgb", "target": "image", "wieght": 1}], "did you mean 'weight'"),
        ([{"type": "MSE", "key": "rgb", "target": "image", "weight": -1}], "give a number >= 0"),
        ([{"type": "KLD"}, {"type": "KLD"}], "repeats the term KLD"),
        ([], "must be a list of loss terms"),
    ],
)
def test_a_bad_term_is_one_sentence_naming_it(terms, message):
    with pytest.raises(ConfigError, match=message):
        KeyedLoss(terms)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("1*MSE+0.1*LPIPS", r"unknown loss 'LPIPS'.*known: MSE, L1"),
        ("1*MSE+", "not of the form"),
        ("__import__('os')", "not of the form"),
        ("MSE+MSE", "twice"),
    ],
)
def test_bad_loss_strings(spec, message):
    with pytest.raises(ConfigError, match=message):
        Loss(spec)


def test_unknown_recon_type_suggests_the_nearest():
    with pytest.raises(ConfigError, match="'l1'"):
        recon_loss(torch.zeros(1), torch.zeros(1), "L1_")
