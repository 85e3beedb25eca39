"""The speed options end to end on the tiny VAE: `train.channels_last`, `train.compile`,
`train.optim.implementation` (engine/speed.py, engine/optimization.py)."""

import copy
import os

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import read_scalars, run_folder, run_trainer

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def _run(config, tmp_path, key, **train):
    """A 2-step run of `config` with `train` changed, as experiment `key`; returns its scalars and folder."""
    config = copy.deepcopy(config)
    config["experiment_key"] = key
    config["train"].update(max_train_steps=2, validation_steps=2, checkpointing_steps=2, **train)
    assert run_trainer(config, tmp_path, name=f"{key}.yml") == 0
    return read_scalars(run_folder(config)), run_folder(config)


def _spatial_convs(arch):
    """The conv weights whose layout channels-last changes (a 1x1 kernel is both layouts at once)."""
    return [m.weight for m in arch.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]


def test_channels_last_steps_in_nhwc_to_the_default_losses_and_saves(vae_config, tmp_path, monkeypatch):
    from models.vae.VAE_model import VAE_model

    layouts = []
    original = VAE_model.optimize_parameters

    def spy(self):
        weights = _spatial_convs(self.net_g.arch)
        layouts.append(
            all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in weights)
        )
        return original(self)

    monkeypatch.setattr(VAE_model, "optimize_parameters", spy)
    plain, plain_dir = _run(vae_config, tmp_path, "plain")
    assert layouts == [False, False]  # off: the weights stay in torch's default layout
    fast, fast_dir = _run(vae_config, tmp_path, "nhwc", channels_last=True)
    assert layouts[2:] == [True, True]
    for step in (1, 2):
        assert fast["train/all"][step] == pytest.approx(plain["train/all"][step], rel=1e-5, abs=1e-6)
    assert fast["val_psnr"][2] == pytest.approx(plain["val_psnr"][2], abs=1e-3)
    # Saved contiguous (safetensors refuses other layouts), the same tensors as the default run's.
    saved = load_file(os.path.join(fast_dir, "final", "net_g", "model.safetensors"))
    reference = load_file(os.path.join(plain_dir, "final", "net_g", "model.safetensors"))
    assert saved.keys() == reference.keys()
    assert all(torch.allclose(saved[k], reference[k], atol=1e-5) for k in saved)


def test_compile_trains_and_saves_weights_that_load_without_prefix(vae_config, tmp_path):
    from torch._dynamo.utils import counters

    from models.archs import find_arch

    counters.clear()
    plain, _ = _run(vae_config, tmp_path, "eager")
    assert not counters["stats"]["unique_graphs"]
    compiled, run = _run(vae_config, tmp_path, "compiled", compile=True)
    assert counters["stats"]["unique_graphs"] >= 2  # the training encode and decode at least
    assert compiled["train/all"][2] == pytest.approx(plain["train/all"][2], rel=1e-4)
    saved = load_file(os.path.join(run, "final", "net_g", "model.safetensors"))
    assert not [k for k in saved if "_orig_mod" in k]
    _, arch_cls = find_arch("AutoencoderKL")
    arch_cls.from_pretrained(os.path.join(run, "final", "net_g"))  # loads strictly: every key fits


@pytest.mark.parametrize("kernel", ["foreach", "fused"])
def test_adamw_kernel_is_used_and_trains_as_the_default(vae_config, tmp_path, monkeypatch, kernel):
    from models.vae.VAE_model import VAE_model

    flags = []
    original = VAE_model.optimize_parameters

    def spy(self):
        defaults = self.optimizers[0].optimizer.defaults
        flags.append((defaults["foreach"], defaults["fused"]))
        return original(self)

    monkeypatch.setattr(VAE_model, "optimize_parameters", spy)
    plain, _ = _run(vae_config, tmp_path, "auto")
    fast, _ = _run(vae_config, tmp_path, kernel, optim={"learning_rate": 2e-3, "implementation": kernel})
    assert flags[0] == (None, None)  # auto: torch's own choice
    assert flags[-1] == ((True, None) if kernel == "foreach" else (None, True))
    assert fast["train/all"][2] == pytest.approx(plain["train/all"][2], rel=1e-5)


def test_a_kernel_with_8bit_adam_is_refused(vae_config, tmp_path, capsys):
    vae_config["train"]["optim"].update(use_8bit_adam=True, implementation="fused")
    assert run_trainer(vae_config, tmp_path) != 0
    assert "'train.optim.implementation' is 'fused' but 'train.optim.use_8bit_adam' is true" in (
        capsys.readouterr().err
    )
