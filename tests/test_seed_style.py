"""Plugin code written the seed's way (`self.models.append`, its own `zero_grad()` / `backward` /
`step`, direct calls of the bare attribute) trains exactly like a model using `add_network` and
`self.step`, gradient accumulation included (engine/seed_style.py)."""

import copy
import os

import pytest
import torch
from safetensors.torch import load_file

from models.base_model import BaseModel
from models.example.Denoise_model import Denoise_model
from tests.conftest import run_folder, run_trainer

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def seed_style_init(self, opt, logger):
    BaseModel.__init__(self, opt, logger)
    from models.archs import define_network
    from utils.loss import Loss

    self.net_g = define_network(opt.network)
    self.models.append(self.net_g)
    self.criterion = Loss(self.opt["train"].loss)


def seed_style_step(self):
    for optimizer in self.optimizers:
        optimizer.zero_grad()  # on every micro-batch, the last of a window included
    pred = self.net_g(self.sample["inp"])
    loss = self.criterion(pred, self.sample["gt"])
    self.accelerator.backward(loss["all"])
    for optimizer in self.optimizers:
        optimizer.step()
    return loss


def weights(config):
    return load_file(os.path.join(run_folder(config), "final", "net_g", "model.safetensors"))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_seed_style_model_trains_like_the_step_helper(tiny_config, tmp_path, monkeypatch, accumulation):
    tiny_config["train"].update(
        batch_size=2, gradient_accumulation_steps=accumulation, max_train_steps=3, checkpointing_steps=100
    )
    tiny_config["datasets"]["train"]["use_shuffle"] = False
    del tiny_config["datasets"]["val"]
    helper = copy.deepcopy(tiny_config)
    helper["experiment_key"] = "helper"
    assert run_trainer(helper, tmp_path, name="helper.yml") == 0

    seen = {}
    monkeypatch.setattr(Denoise_model, "__init__", seed_style_init)

    def recording_step(self):
        seen["net_g"] = type(self.net_g).__name__
        return seed_style_step(self)

    monkeypatch.setattr(Denoise_model, "optimize_parameters", recording_step)
    seed = copy.deepcopy(tiny_config)
    seed["experiment_key"] = "seed"
    assert run_trainer(seed, tmp_path, name="seed.yml") == 0
    # The appended network is named after its attribute, and that attribute now calls through the
    # prepared (DDP / autocast) module.
    assert seen["net_g"] == "PreparedNetwork"
    reference, got = weights(helper), weights(seed)
    for key, value in reference.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7)
