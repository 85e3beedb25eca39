"""VAE_model end to end on tiny configs: losses, the GAN warm-up, 2D and 3D runs, the scale factor."""

import os

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import TINY_MONAI_KL, monai_kl, read_scalars, run_folder, run_trainer

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def test_vae_psnr_rises_above_a_bar_and_the_scale_factor_is_stored(vae_config, tmp_path):
    vae_config["train"].update(max_train_steps=150, validation_steps=50, checkpointing_steps=150)
    assert run_trainer(vae_config, tmp_path) == 0
    run = run_folder(vae_config)
    scalars = read_scalars(run)
    assert scalars["val_psnr"][150] > scalars["val_psnr"][50] + 1.0
    assert scalars["val_psnr"][150] > 20.0
    from models.archs import find_arch

    _, arch_cls = find_arch("AutoencoderKL")
    vae = arch_cls.from_pretrained(os.path.join(run, "final", "net_g"))
    # 1 / std of the validation latents, saved with the weights for stage 2
    assert vae.config.scaling_factor == pytest.approx(scalars["latent_scaling_factor"][150], rel=1e-5)
    assert vae.config.scaling_factor != pytest.approx(0.18215)
    assert scalars["val_latent_std"][150] > 0


def test_no_discriminator_gradient_before_disc_start(vae_config, tmp_path, monkeypatch):
    from models.vae.VAE_model import VAE_model

    vae_config["network_d"] = {
        "type": "PatchDiscriminator",
        "spatial_dims": 2,
        "in_channels": 1,
        "channels": 8,
        "num_layers_d": 2,
    }
    vae_config["train"].update(disc_start=3, max_train_steps=5, disc_loss="hinge")
    seen = []
    original = VAE_model.optimize_parameters

    def spy(self):
        before = [p.detach().clone() for p in self.net_d.parameters()]
        losses = original(self)
        changed = any(not torch.equal(b, p) for b, p in zip(before, self.net_d.parameters()))
        has_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in self.net_d.parameters())
        seen.append((self.global_step, changed, has_grad, "d" in losses, "g_adv" in losses))
        return losses

    monkeypatch.setattr(VAE_model, "optimize_parameters", spy)
    assert run_trainer(vae_config, tmp_path) == 0
    # global_step counts finished updates: calls at steps 0, 1, 2 are before disc_start
    for step, changed, has_grad, d_loss, g_adv in seen:
        if step < 3:
            assert not changed and not has_grad and not d_loss and not g_adv, step
        else:
            assert changed and d_loss and g_adv, step
    scalars = read_scalars(run_folder(vae_config))
    assert sorted(scalars["train/d"]) == [4, 5] and "train/adv_weight" in scalars


def test_vq_vae_logs_codebook_usage(vae_config, tmp_path):
    vae_config["network"] = {
        "type": "VQVAE",
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "latent_channels": 4,
        "num_vq_embeddings": 32,
        "norm_num_groups": 4,
        "sample_size": 16,
    }
    assert run_trainer(vae_config, tmp_path) == 0
    scalars = read_scalars(run_folder(vae_config))
    assert 1.0 <= scalars["train/perplexity"][6] <= 32.0
    assert scalars["train/quant"][6] > 0


def test_3d_monai_vae_trains_and_validates(vae_config, tmp_path):
    for phase in ("train", "val"):
        vae_config["datasets"][phase].update(spatial_dims=3, image_size=16)
    vae_config["network"] = monai_kl(3)
    vae_config["train"].update(batch_size=4, max_train_steps=4, validation_steps=4, checkpointing_steps=4)
    vae_config["val"]["batch_size"] = 4
    assert run_trainer(vae_config, tmp_path) == 0
    run = run_folder(vae_config)
    scalars = read_scalars(run)
    assert scalars["train/all"][4] < scalars["train/all"][1]
    assert "val_psnr" in scalars and os.path.isfile(
        os.path.join(run, "images", "val_input_recon_diff_0000004.png")
    )
    assert load_file(os.path.join(run, "final", "net_g", "model.safetensors"))


def test_pti_ldm_vae_checkpoint_is_loaded_and_trained_on(vae_config, tmp_path):
    from monai.networks.nets import AutoencoderKL

    network = {"spatial_dims": 2, **TINY_MONAI_KL}
    torch.manual_seed(11)
    monai_vae = AutoencoderKL(**network)
    path = tmp_path / "checkpoint_epoch7.pth"
    torch.save({"epoch": 7, "autoencoder_state_dict": monai_vae.state_dict()}, path)
    vae_config["network"] = {"type": "MonaiAutoencoderKL", **network}
    vae_config["train"].update(
        monai_checkpoint=str(path), max_train_steps=2, validation_steps=2, checkpointing_steps=2
    )
    vae_config["train"]["optim"]["learning_rate"] = 0.0  # the loaded weights must come out unchanged
    vae_config["train"]["optim"]["adam_weight_decay"] = 0.0
    assert run_trainer(vae_config, tmp_path) == 0
    saved = load_file(os.path.join(run_folder(vae_config), "final", "net_g", "model.safetensors"))
    original = monai_vae.state_dict()
    matched = sum(
        1
        for k in saved
        if k.split(".", 1)[1] in original and torch.equal(saved[k], original[k.split(".", 1)[1]])
    )
    assert matched == len(original)
