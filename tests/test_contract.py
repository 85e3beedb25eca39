"""A plugin written only from BaseModel's contract table (eight names) trains, resumes exactly and
validates: its metrics, scalars and images reach TensorBoard and `<run>/images`."""

import copy
import glob
import os

import pytest
import torch
from safetensors.torch import load_file

import models
from tests.conftest import read_scalars, run_folder, run_trainer
from utils.registry import Registry

# The table's names and nothing else of BaseModel: config_keys, feed_data, optimize_parameters,
# validate_step, add_network, step, log, log_images.
CONTRACT_PLUGIN = """
import torch

from engine import BaseModel
from models.archs import define_network
from utils.config.schema import Key


class Contract_model(BaseModel):
    config_keys = {"train": {"noise_scale": Key(1.0, "float", "Scales the input noise.", minimum=0)}}

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        self.net = self.add_network("net", define_network(opt["network"]))
        self.noise_scale = float(opt["train"]["noise_scale"])

    def feed_data(self, data, is_train=True):
        self.inp, self.gt = data["cond"] * self.noise_scale, data["gt"]

    def optimize_parameters(self):
        loss = torch.nn.functional.mse_loss(self.net(self.inp), self.gt)
        self.step(loss)
        return {"all": loss}

    def validate_step(self, batch):
        self.feed_data(batch, is_train=False)
        pred = self.net(self.inp)
        self.log({"mse": torch.nn.functional.mse_loss(pred, self.gt), "batch_size": len(pred)})
        self.log(pred=pred, target=self.gt)
        self.log_images("val_pred_target", torch.cat([pred, self.gt], dim=-1))
"""


@pytest.fixture
def contract_config(tiny_config, tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "Contract_model.py").write_text(CONTRACT_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        models, "MODEL_REGISTRY", Registry("plugins", "_model.py", kind="model", root=tmp_path)
    )
    tiny_config["model_type"] = "Contract_model"
    del tiny_config["train"]["loss"]  # read by the example model, not by this one
    tiny_config["train"].update(max_train_steps=6, checkpointing_steps=3, checkpoints_total_limit=None)
    tiny_config["val"]["batch_size"] = 6  # 16 samples: batches of 6, 6 and 4
    return tiny_config


def final_weights(config):
    return load_file(os.path.join(run_folder(config), "final", "net", "model.safetensors"))


@pytest.mark.e2e
def test_a_plugin_from_the_contract_table_trains_resumes_and_validates(contract_config, tmp_path):
    assert run_trainer(contract_config, tmp_path) == 0
    run = run_folder(contract_config)
    scalars = read_scalars(run)
    assert scalars["train/all"][6] < scalars["train/all"][1]

    # Validation: each logged name once per pass, at the validation steps, as val_<name>.
    for name in ("val_mse", "val_psnr", "val_ssim", "val_batch_size"):
        assert sorted(scalars[name]) == [3, 6], name
    # Averaged over the pass, weighted by each batch's samples: (6*6 + 6*6 + 4*4) / 16, not the last
    # batch's 4 nor the mean of batch means.
    assert scalars["val_batch_size"][6] == pytest.approx(5.5)
    # One grid per pass (the first batch's), in TensorBoard and as a PNG per validation step.
    pngs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run, "images", "*.png")))
    assert pngs == ["val_pred_target_0000003.png", "val_pred_target_0000006.png"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = []
    for path in glob.glob(os.path.join(run, "**", "events.out.tfevents.*"), recursive=True):
        events = EventAccumulator(path, size_guidance={"images": 0})
        events.Reload()
        images += [(tag, e.step) for tag in events.Tags()["images"] for e in events.Images(tag)]
    assert sorted(images) == [("val_pred_target", 3), ("val_pred_target", 6)]

    # Resuming from checkpoint-3 ends at the uninterrupted run's weights.
    reference = final_weights(contract_config)
    resumed = copy.deepcopy(contract_config)
    resumed["experiment_key"] = "resumed"
    resumed["path"].update(resume_from_path=run, resume_from_checkpoint="checkpoint-3")
    assert run_trainer(resumed, tmp_path, name="resumed.yml") == 0
    for key, value in final_weights(resumed).items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=1e-6)


@pytest.mark.e2e
def test_a_misspelt_declared_key_is_refused_with_the_declared_name(contract_config, tmp_path, capsys):
    contract_config["train"]["noise_scal"] = 0.5
    assert run_trainer(contract_config, tmp_path) != 0
    captured = capsys.readouterr()
    assert "noise_scal" in captured.err and "noise_scale" in captured.err


def test_an_arch_names_the_methods_routed_through_ddp_and_autocast():
    """`routed_methods` on the arch names them; without it, the methods of the arch's own code are."""
    from torch import nn

    from engine.prepared_network import MethodDispatch, PreparedNetwork, routes
    from models.archs import find_arch

    class Counting(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, []

        def forward(self, method, *args, **kwargs):
            self.calls.append(method)
            return self.inner(method, *args, **kwargs)

    _, vae_cls = find_arch("AutoencoderKL")
    assert routes(vae_cls, "encode") and routes(vae_cls, "decode") and routes(vae_cls, "scale_latents")
    assert not routes(vae_cls, "parameters") and not routes(vae_cls, "save_pretrained")

    class OnlyForward(vae_cls):
        routed_methods = ("forward",)

    assert routes(OnlyForward, "forward") and not routes(OnlyForward, "encode")
    config_cls, arch_cls = find_arch("TinyDenoiser")
    arch = arch_cls(config_cls(hidden_channels=4, num_layers=2))
    prepared = Counting(MethodDispatch(arch))
    net = PreparedNetwork(prepared, arch)
    net(torch.rand(1, 1, 8, 8))
    net.forward(torch.rand(1, 1, 8, 8))
    net.train()
    assert prepared.calls == ["__call__", "forward"]
