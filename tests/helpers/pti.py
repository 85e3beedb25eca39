"""PTI-LDM-VAE's files as its trainers write them, tiny, and the runs that read them (tests/test_pti_*.py)."""

import copy

import torch
from monai.networks.nets import AutoencoderKL, PatchDiscriminator

from tests.helpers.configs import TINY_MONAI_KL, TINY_VAE
from tests.helpers.runs import reset_accelerate, write_config

NETWORK = {"spatial_dims": 2, **TINY_MONAI_KL}
DISCRIMINATOR = {"spatial_dims": 2, "in_channels": 1, "channels": 8, "num_layers_d": 2, "norm": "INSTANCE"}
STEP, EPOCH = 10, 4


def train_a_little(networks, optimizer):
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
    train_a_little([autoencoder], optimizer_g)
    train_a_little([discriminator], optimizer_d)
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


UNET = {
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
