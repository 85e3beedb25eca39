"""A catalogue of bad inputs: each gives one sentence naming the culprit, exit 2, no traceback, and
leaves every existing file as it was."""

import copy
import json
import os
import textwrap

import pytest

from tests.conftest import TINY_DENOISE, run_trainer
from tests.test_vae_model import TINY_VAE


def denoise(**changes):
    return _changed(TINY_DENOISE, changes)


def vae(**changes):
    return _changed(TINY_VAE, changes)


def _changed(base, changes):
    config = copy.deepcopy(base)
    for dotted, value in changes.items():
        block = config
        *parents, last = dotted.split("__")
        for part in parents:
            block = block.setdefault(part, {})
        if value is DELETE:
            block.pop(last, None)
        else:
            block[last] = value
    return config


DELETE = object()

# (id, config, extra CLI arguments, text the one-line error must contain)
CASES = [
    ("top-level typo", denoise(seeed=1), [], "Unknown key 'seeed' (did you mean 'seed'?)"),
    (
        "optim typo",
        denoise(train__optim__lerning_rate=1e-3),
        [],
        "'train.optim.lerning_rate' (did you mean 'learning_rate'?)",
    ),
    ("path typo", denoise(path__resume_from_checkpont="latest"), [], "did you mean 'resume_from_checkpoint'"),
    ("val typo", denoise(val__batch_szie=4), [], "'val.batch_szie' (did you mean 'batch_size'?)"),
    ("scheduler typo", denoise(train__scheduler__lr_warmup_step=3), [], "did you mean 'lr_warmup_steps'"),
    ("ema typo", denoise(train__ema={"decy": 0.9}), [], "'train.ema.decy' (did you mean 'decay'?)"),
    (
        "batch size type",
        denoise(train__batch_size="eight"),
        [],
        "'train.batch_size' must be an int, got 'eight'",
    ),
    ("batch size range", denoise(train__batch_size=0), [], "'train.batch_size' is 0; it must be at least 1"),
    (
        "negative learning rate",
        denoise(train__optim__learning_rate=-1.0),
        [],
        "'train.optim.learning_rate' is -1.0",
    ),
    (
        "beta above 1",
        denoise(train__optim__adam_beta1=1.5),
        [],
        "'train.optim.adam_beta1' is 1.5; it must be at most 1.0",
    ),
    (
        "checkpoint limit 0",
        denoise(train__checkpoints_total_limit=0),
        [],
        "'train.checkpoints_total_limit' is 0",
    ),
    (
        "mixed precision",
        denoise(mixed_precision="fp32"),
        [],
        "'mixed_precision' is 'fp32'; allowed: no, fp16, bf16",
    ),
    ("tracker", denoise(report_to="wandb"), [], "'report_to' is 'wandb'"),
    ("scheduler type", denoise(train__scheduler__type="cosin"), [], "did you mean 'cosine'"),
    (
        "nan policy",
        denoise(train__nan_policy="ignore"),
        [],
        "'train.nan_policy' is 'ignore'; allowed: raise, skip",
    ),
    (
        "validation steps type",
        denoise(train__validation_steps=2.5),
        [],
        "'train.validation_steps' must be an int",
    ),
    (
        "no steps",
        denoise(train__max_train_steps=None, train__num_train_epochs=None),
        [],
        "Set 'train.max_train_steps' or 'train.num_train_epochs'",
    ),
    ("missing model_type", denoise(model_type=DELETE), [], "'model_type' is missing"),
    ("missing datasets", denoise(datasets=DELETE), [], "'datasets' is missing"),
    ("missing dataset type", denoise(datasets__train__type=DELETE), [], "'datasets.train.type' is missing"),
    (
        "dataset block typo",
        denoise(datasets__trian={"type": "DummyDataset", "size": 2}),
        [],
        "'datasets.trian' (did you mean 'train'?)",
    ),
    ("missing network type", denoise(network__type=DELETE), [], "The 'network' block needs a 'type'"),
    ("unknown model", denoise(model_type="Denoise_modle"), [], "Did you mean 'Denoise_model'?"),
    ("unknown arch", denoise(network__type="TinyDenoizer"), [], "Did you mean 'TinyDenoiser_arch'?"),
    (
        "unknown dataset",
        denoise(datasets__train__type="SyntheticShapeDataset"),
        [],
        "Did you mean 'SyntheticShapesDataset'?",
    ),
    (
        "network key typo",
        denoise(network__hiden_channels=4),
        [],
        "'network.hiden_channels' for TinyDenoiser_config (did you mean 'hidden_channels'?)",
    ),
    (
        "dataset key typo",
        denoise(datasets__train__image_sise=8),
        [],
        "'datasets.train.image_sise' (did you mean 'image_size'?)",
    ),
    ("loss name", denoise(train__loss="1*MSE+0.1*LPIPS"), [], "unknown loss 'LPIPS'"),
    ("loss syntax", denoise(train__loss="MSE*0.5"), [], "is not of the form 'weight*Name'"),
    (
        "metric name",
        denoise(val__metrics={"psrn": {}}),
        [],
        "Unknown metric 'val.metrics.psrn' (did you mean 'psnr'?)",
    ),
    (
        "metric option",
        denoise(val__metrics={"psnr": {"crp": 1}}),
        [],
        "'val.metrics.psnr.crp' (did you mean 'crop'?)",
    ),
    ("token in yaml", denoise(hub_token="hf_x"), [], "looks like a secret"),
    ("push without repo", denoise(push_to_hub=True), [], "'hub_model_id' is empty"),
    (
        "-test of a run without checkpoints",
        denoise(path__resume_from_checkpoint="latest"),
        ["-test"],
        "-test: no checkpoint found",
    ),
    (
        "-test with a missing folder",
        denoise(path__pretrained="/nonexistent/final"),
        ["-test"],
        "'path.pretrained' is '/nonexistent/final'",
    ),
    (
        "resume a missing checkpoint",
        denoise(path__resume_from_checkpoint="checkpoint-99"),
        [],
        "'path.resume_from_checkpoint' is 'checkpoint-99'",
    ),
    ("override without =", denoise(), ["train.batch_size"], "must have the form key=value"),
    ("bad interpolation", denoise(train__batch_size="${train.nothing}"), [], "cannot be resolved"),
    ("VAE recon type", vae(train__recon_type="l2"), [], "'train.recon_type' is 'l2'"),
    ("VAE disc loss", vae(train__disc_loss="wgan"), [], "'train.disc_loss' is 'wgan'"),
    ("VAE train key typo", vae(train__kl_weigth=1e-4), [], "'train.kl_weigth' (did you mean 'kl_weight'?)"),
    (
        "VAE perceptual without weights",
        vae(train__perceptual_weight=0.1),
        [],
        "'train.perceptual_weights_path' is empty",
    ),
    ("VAE batch key", vae(val__gt_key="image"), [], "The batch has no key 'image' (val.gt_key)"),
    (
        "MONAI checkpoint on the wrong arch",
        vae(train__monai_checkpoint="x.pth"),
        [],
        "needs 'network.type: MonaiAutoencoderKL'",
    ),
    (
        "empty TIF folder",
        vae(datasets={"train": {"type": "TIFFolderDataset", "dir": "@EMPTY@"}}),
        [],
        "@EMPTY@",
    ),
    (
        "missing TIF folder",
        vae(datasets={"train": {"type": "TIFFolderDataset", "dir": "/nonexistent/tifs"}}),
        [],
        "/nonexistent/tifs",
    ),
    (
        "unknown lens file",
        vae(datasets={"train": {"type": "PSFDataset", "lens_file": "cooke_tripplet.json"}}),
        [],
        "cooke_tripplet.json",
    ),
    (
        "malformed lens file",
        vae(datasets={"train": {"type": "PSFDataset", "lens_file": "@BADLENS@"}}),
        [],
        "bad_lens.json",
    ),
]


@pytest.mark.parametrize("config, extra, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_sentence(config, extra, expected, tmp_path, capsys):
    config = copy.deepcopy(config)
    root = tmp_path / "experiments"
    (root / "earlier_run").mkdir(parents=True)
    sentinel = root / "earlier_run" / "weights.txt"
    sentinel.write_text("trained weights")
    if "path" in config:
        config["path"]["root"] = str(root)
    text = json.dumps(config)
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_lens = tmp_path / "bad_lens.json"
    bad_lens.write_text(
        json.dumps({"r_sensor": 2.0, "surfaces": [{"type": "Spheric", "r": 5.0, "d_next": 3.0}]})
    )
    text = text.replace("@EMPTY@", str(empty)).replace("@BADLENS@", str(bad_lens))
    config = json.loads(text)
    expected = expected.replace("@EMPTY@", str(empty))
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file())

    status = run_trainer(config, tmp_path, *extra)

    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2, err[-2000:]
    assert len(error_lines) == 1 and expected in error_lines[0], err[-2000:]
    assert "Traceback" not in err
    for path, mtime in before:  # nothing that was on disk was changed or removed
        assert path.is_file() and path.stat().st_mtime_ns == mtime, path
    assert sentinel.read_text() == "trained weights"


def test_the_catalogue_is_large():
    assert len(CASES) >= 40


def test_plugin_import_error_names_the_file_and_the_module(tmp_path, monkeypatch, capsys):
    import models

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken_model.py").write_text(
        "import torchvision_is_not_here\n\nclass Broken_model:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        models, "MODEL_REGISTRY", models.Registry("plugins", "_model.py", kind="model", root=tmp_path)
    )
    config = denoise(model_type="Broken_model")
    config["path"]["root"] = str(tmp_path / "experiments")
    assert run_trainer(config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "plugins/broken_model.py" in err and "'torchvision_is_not_here'" in err and "Traceback" not in err


def test_arch_without_config_class_is_one_sentence(tmp_path, monkeypatch, capsys):
    import models.archs as archs

    folder = tmp_path / "archplugins"
    folder.mkdir()
    (folder / "noconf_arch.py").write_text(
        textwrap.dedent(
            """
            from transformers import PretrainedConfig, PreTrainedModel

            class NoConf_config(PretrainedConfig):
                model_type = "NoConf"

            class NoConf_arch(PreTrainedModel):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        archs, "ARCH_REGISTRY", archs.Registry("archplugins", "_arch.py", kind="arch", root=tmp_path)
    )
    config = denoise(network={"type": "NoConf"})
    config["path"]["root"] = str(tmp_path / "experiments")
    assert run_trainer(config, tmp_path) == 2
    assert "must set `config_class = NoConf_config`" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    import trainer
    from tests.conftest import write_config

    path = write_config(denoise(seeed=1), tmp_path / "x.yml")
    with pytest.raises(Exception, match="seeed"):
        trainer.main(["-opt", path, "--debug"])
    assert os.path.isfile(path)
