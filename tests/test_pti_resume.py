"""Continuing a PTI-LDM-VAE training checkpoint restores what it holds: the discriminator, both Adam
optimizers' moments, the step (the run counts on from it), the epoch and the best validation loss
(best/ is written only by a better validation)."""

import copy
import json
import os

import pytest
import torch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet, PatchDiscriminator

from tests.helpers import (
    TINY_VAE,
    ldm_config,
    read_scalars,
    reset_accelerate,
    run_folder,
    run_trainer,
    write_config,
)

NETWORK = {
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [8, 16],
    "latent_channels": 2,
    "num_res_blocks": 1,
    "norm_num_groups": 4,
    "attention_levels": [False, False],
    "with_encoder_nonlocal_attn": False,
    "with_decoder_nonlocal_attn": False,
}
DISCRIMINATOR = {"spatial_dims": 2, "in_channels": 1, "channels": 8, "num_layers_d": 2, "norm": "INSTANCE"}
STEP, EPOCH = 10, 4


def _train_a_little(networks, optimizer):
    """Two Adam steps, so that the moments differ from zero and from each other."""
    for _ in range(2):
        loss = sum(
            (p.float() ** 2).sum() * (i + 1)
            for i, p in enumerate(q for n in networks for q in n.parameters())
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def pti_vae_checkpoint(tmp_path, best_val_loss: float):
    """A VAE checkpoint as PTI-LDM-VAE's trainer writes it."""
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(**NETWORK)
    discriminator = PatchDiscriminator(out_channels=1, **DISCRIMINATOR)
    optimizer_g = torch.optim.Adam(autoencoder.parameters(), lr=1e-4)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    _train_a_little([autoencoder], optimizer_g)
    _train_a_little([discriminator], optimizer_d)
    content = {
        "epoch": EPOCH,
        "autoencoder_state_dict": autoencoder.state_dict(),
        "discriminator_state_dict": discriminator.state_dict(),
        "optimizer_g_state_dict": optimizer_g.state_dict(),
        "optimizer_d_state_dict": optimizer_d.state_dict(),
        "best_val_loss": best_val_loss,
        "total_step": STEP,
    }
    path = tmp_path / f"checkpoint_epoch{EPOCH}.pth"
    torch.save(content, path)
    return path, content, autoencoder, discriminator


def vae_config(tmp_path, path, **train):
    config = copy.deepcopy(TINY_VAE)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["network"] = {"type": "MonaiAutoencoderKL", **NETWORK}
    config["network_d"] = {"type": "PatchDiscriminator", **DISCRIMINATOR}
    config["train"].update(
        {
            "monai_checkpoint": str(path),
            "max_train_steps": STEP + 2,
            "validation_steps": STEP + 2,
            "checkpointing_steps": STEP + 2,
            "best_metric": "val_loss",
            "best_mode": "min",
            **train,
        }
    )
    return config


def started(config, tmp_path):
    """The model as the trainer builds it, started (weights, optimizers, restored state), not trained."""
    import trainer
    from engine.start import start_run

    model, _ = trainer.build(trainer.parse_args(["-opt", write_config(config, tmp_path / "c.yml")]))
    start_run(model, training=True)
    return model


def closed(model):
    from engine.run.shutdown import end_processes

    end_processes(model.accelerator, clean=True)
    model.run_folder.rollback()
    model.run_folder.close()
    reset_accelerate()


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
    unet_keys = {
        "spatial_dims": 2,
        "in_channels": 2,
        "out_channels": 2,
        "channels": [16, 32],
        "attention_levels": [False, True],
        "num_head_channels": [0, 16],
        "num_res_blocks": 1,
        "norm_num_groups": 8,
        "with_conditioning": True,
        "cross_attention_dim": 32,
    }
    unet = DiffusionModelUNet(**unet_keys)
    projector = torch.nn.Linear(2, 32)
    optimizer = torch.optim.Adam(list(unet.parameters()) + list(projector.parameters()))
    _train_a_little([unet, projector], optimizer)
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
    config["network"] = {"type": "DiffusionUNet", "backend": "monai", **unet_keys}
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
