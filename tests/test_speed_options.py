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
    """A run of `config` (2 steps unless `train` says) with `train` changed, as experiment `key`; returns
    its scalars and folder."""
    config = copy.deepcopy(config)
    config["experiment_key"] = key
    config["train"].update({"max_train_steps": 2, "validation_steps": 2, "checkpointing_steps": 2, **train})
    assert run_trainer(config, tmp_path, name=f"{key}.yml") == 0
    return read_scalars(run_folder(config)), run_folder(config)


def _spatial_convs(arch):
    """The conv weights whose layout channels-last changes (a 1x1 kernel or one input channel is both
    layouts at once)."""
    convs = [m for m in arch.modules() if isinstance(m, torch.nn.Conv2d)]
    return [m.weight for m in convs if m.kernel_size != (1, 1) and m.in_channels > 1]


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
    # Saved contiguous (safetensors refuses other layouts), in the arch's own element order: the default
    # run's tensors up to what 2 Adam steps of 2e-3 can move a weight (a layout written as raw memory
    # would scramble them far beyond that).
    saved = load_file(os.path.join(fast_dir, "final", "net_g", "model.safetensors"))
    reference = load_file(os.path.join(plain_dir, "final", "net_g", "model.safetensors"))
    assert saved.keys() == reference.keys()
    assert all(saved[k].is_contiguous() and torch.allclose(saved[k], reference[k], atol=5e-3) for k in saved)


def test_compile_trains_and_saves_weights_that_load_without_prefix(vae_config, tmp_path, monkeypatch):
    from torch._dynamo.utils import counters

    from models.archs import find_arch

    # Dynamo captures the graphs and AOTAutograd their backward as under the default backend; inductor's
    # C++ code generation (minutes on 2 cores) is left out, it is torch's part, not the trainer's.
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self: compile_module(self, backend="aot_eager"))
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


def _poison_step(monkeypatch, at_call):
    """The total loss of the `at_call`-th training step (counted from 1) is NaN; records whether each
    step changed the generator's weights."""
    from models.vae.VAE_model import VAE_model

    changed = []
    original = VAE_model.optimize_parameters

    def optimize(self):
        before = [p.detach().clone() for p in self.net_g.parameters()]
        if len(changed) + 1 == at_call:
            self.sample = {"gt": self.sample["gt"] * float("nan")}
        losses = original(self)
        changed.append(any(not torch.equal(b, p) for b, p in zip(before, self.net_g.parameters())))
        return losses

    monkeypatch.setattr(VAE_model, "optimize_parameters", optimize)
    return changed


LAZY = {"log_every": 3, "max_train_steps": 6, "optim": {"learning_rate": 2e-3, "implementation": "fused"}}


def test_log_every_reads_back_and_logs_means_every_n_steps(vae_config, tmp_path, monkeypatch):
    from models.vae.VAE_model import VAE_model

    norms = []
    original = VAE_model.optimize_parameters

    def spy(self):
        losses = original(self)
        norms.append(self.gradient_guard._norm)
        return losses

    monkeypatch.setattr(VAE_model, "optimize_parameters", spy)
    train = {**LAZY, "validation_steps": 6, "checkpointing_steps": 6}
    every, _ = _run(vae_config, tmp_path, "every1", **{**train, "log_every": 1})
    assert all(isinstance(n, float) for n in norms)  # log_every 1: read back at every step
    norms.clear()
    lazy, _ = _run(vae_config, tmp_path, "lazy", **train)
    assert all(torch.is_tensor(n) for n in norms)  # the fused AdamW's check stays on the device
    assert sorted(lazy["train/all"]) == [3, 6]
    for step in (3, 6):
        mean = sum(every["train/all"][s] for s in range(step - 2, step + 1)) / 3
        assert lazy["train/all"][step] == pytest.approx(mean, rel=1e-5)


def test_log_every_reports_a_nan_naming_its_own_step(vae_config, tmp_path, monkeypatch, capsys):
    _poison_step(monkeypatch, at_call=2)
    vae_config["train"].update(LAZY, validation_steps=6, checkpointing_steps=6)
    assert run_trainer(vae_config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "not finite at step 2" in err and "all=nan" in err and "nan_policy: skip" in err


@pytest.mark.parametrize("every", [1, 3])
def test_a_nan_at_the_first_step_undoes_the_start_with_any_log_every(
    vae_config, tmp_path, monkeypatch, capsys, every
):
    vae_config["train"].update(LAZY, log_every=every, validation_steps=6, checkpointing_steps=6)
    with monkeypatch.context() as poisoned:
        _poison_step(poisoned, at_call=1)
        assert run_trainer(vae_config, tmp_path) == 2
    assert "not finite at step 1" in capsys.readouterr().err
    assert not os.path.exists(run_folder(vae_config))  # nothing kept, so the rerun is no second run
    assert run_trainer(vae_config, tmp_path) == 0
    assert os.path.isdir(os.path.join(run_folder(vae_config), "final"))


def test_log_every_skips_a_nan_step_with_the_weights_untouched(vae_config, tmp_path, monkeypatch):
    changed = _poison_step(monkeypatch, at_call=2)
    vae_config["train"].update(LAZY, nan_policy="skip", validation_steps=6, checkpointing_steps=6)
    assert run_trainer(vae_config, tmp_path) == 0
    assert changed == [True, False, True, True, True, True]  # the fused kernel skipped step 2 on found_inf
    scalars = read_scalars(run_folder(vae_config))
    assert scalars["train/skipped_steps"][3] == 1
    assert scalars["train/all"][6] == scalars["train/all"][6]  # finite again after the skipped step
