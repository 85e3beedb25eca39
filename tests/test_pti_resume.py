"""Continuing a PTI-LDM-VAE training checkpoint restores what it holds: the discriminator, both Adam
optimizers' moments, the step (the run counts on from it), the epoch and the best validation loss
(best/ is written only by a better validation)."""

import json
import os

import pytest
import torch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

from tests.helpers import ldm_config, read_scalars, run_folder, run_trainer
from tests.helpers.pti import (
    EPOCH,
    NETWORK,
    STEP,
    UNET,
    closed,
    pti_vae_checkpoint,
    started,
    train_a_little,
    vae_config,
)


def test_the_vae_run_starts_where_the_checkpoint_stopped(tmp_path):
    path, content, _, discriminator = pti_vae_checkpoint(tmp_path, 0.25)
    model = started(vae_config(tmp_path, path), tmp_path)
    try:
        assert model.global_step == STEP and model.state.epoch == EPOCH + 1
        assert [s.last_epoch for s in model.schedulers] == [STEP, STEP]  # the LR schedules at that step
        assert model.restored_best == {"metric": "val_loss", "mode": "min", "value": 0.25}
        for optimizer, network, key in (
            (model.optimizers[0], model.net_g.arch.monai_autoencoder, "optimizer_g_state_dict"),
            (model.optimizers[1], model.net_d.arch.monai_discriminator, "optimizer_d_state_dict"),
        ):
            saved = content[key]["state"]
            state = optimizer.optimizer.state
            params = list(network.parameters())
            assert len(saved) == len(params) and len(state) == len(params)
            for index, param in enumerate(params):
                assert torch.equal(state[param]["exp_avg"], saved[index]["exp_avg"])
                assert torch.equal(state[param]["exp_avg_sq"], saved[index]["exp_avg_sq"])
                assert float(state[param]["step"]) == 2.0
            assert optimizer.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3)  # the YAML's rate
        for key, value in discriminator.state_dict().items():
            assert torch.equal(model.net_d.arch.monai_discriminator.state_dict()[key], value), key
    finally:
        closed(model)


@pytest.mark.e2e
@pytest.mark.parametrize("best_in_file, writes_best", [(1e-9, False), (1e9, True)])
def test_the_step_continues_and_best_is_replaced_only_by_a_better_loss(
    tmp_path, caplog, best_in_file, writes_best
):
    caplog.set_level("INFO", logger="trainer")  # the trainer's INFO lines then reach train.log
    path, *_ = pti_vae_checkpoint(tmp_path, best_in_file)
    config = vae_config(tmp_path, path)
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    assert sorted(n for n in os.listdir(run) if n.startswith("checkpoint-")) == [f"checkpoint-{STEP + 2}"]
    with open(os.path.join(run, f"checkpoint-{STEP + 2}", "trainer_state.json")) as f:
        loop = json.load(f)["loop"]
    assert loop["global_step"] == STEP + 2 and loop["epoch"] >= EPOCH + 1
    assert sorted(read_scalars(run)["train/all"]) == [STEP + 1, STEP + 2]
    assert os.path.isdir(os.path.join(run, "best")) == writes_best
    with open(os.path.join(run, "train.log")) as f:
        restored = [line for line in f if "Restored from" in line]
    assert len(restored) == 1 and f"step {STEP}" in restored[0] and "optimizer 2 of 2" in restored[0]


@pytest.mark.e2e
def test_a_step_beyond_max_train_steps_is_one_sentence(tmp_path, capsys):
    path, *_ = pti_vae_checkpoint(tmp_path, 0.5)
    config = vae_config(tmp_path, path)
    config["train"]["max_train_steps"] = STEP
    assert run_trainer(config, tmp_path) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and f"'train.max_train_steps' is {STEP}" in err[0] and f"above {STEP}" in err[0]
    assert not os.path.exists(run_folder(config))  # a refused start leaves no run folder


def test_the_ldm_run_restores_its_optimizer_epoch_and_best(tmp_path):
    """Stage 2: Adam over the UNet's and the projector's parameters; the null token starts fresh."""
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(**NETWORK)
    torch.save(autoencoder.state_dict(), tmp_path / "autoencoder.pt")
    unet = DiffusionModelUNet(**UNET)
    projector = torch.nn.Linear(2, 32)
    optimizer = torch.optim.Adam(list(unet.parameters()) + list(projector.parameters()))
    train_a_little([unet, projector], optimizer)
    path = tmp_path / "checkpoint_epoch7.pth"
    saved = {
        "epoch": 7,
        "unet_state_dict": unet.state_dict(),
        "condition_projector_state_dict": projector.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "best_val_loss": torch.tensor(0.125),
        "total_step": 30,
    }
    torch.save(saved, path)
    config = ldm_config(tmp_path, None, condition={"type": "image", "position_embedding": False})
    config["vae"] = {"monai_checkpoint": str(tmp_path / "autoencoder.pt"), "network": NETWORK}
    config["network"] = {"type": "DiffusionUNet", "backend": "monai", **UNET}
    config["train"].update(
        monai_checkpoint=str(path), max_train_steps=40, best_metric="val_loss", best_mode="min"
    )
    model = started(config, tmp_path)
    try:
        assert model.global_step == 30 and model.state.epoch == 8
        assert model.restored_best["value"] == pytest.approx(0.125)
        state = model.optimizers[0].optimizer.state
        params = list(unet.parameters()) + list(projector.parameters())
        ours = list(model.unet.arch.unet.parameters()) + [
            model.projector.arch.proj.weight,
            model.projector.arch.proj.bias,
        ]
        for index, param in enumerate(ours):
            assert torch.equal(
                state[param]["exp_avg"], saved["optimizer_state_dict"]["state"][index]["exp_avg"]
            )
            assert param.shape == params[index].shape
        assert model.projector.arch.null_token not in state
    finally:
        closed(model)
