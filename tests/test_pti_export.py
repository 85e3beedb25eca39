"""scripts/export_pti.py: a run's weights as PTI-LDM-VAE's files, loaded by MONAI's own networks
(`load_state_dict(strict=True)`) with the project's outputs, and its checkpoint.pth continued again."""

import os

import pytest
import torch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet, PatchDiscriminator

from scripts import export_pti
from tests.helpers import ldm_config, run_folder, run_trainer
from tests.helpers.pti import DISCRIMINATOR, NETWORK, UNET, closed, started, vae_config


def exported(folder, out):
    assert export_pti.main(["--run", str(folder), "--out", str(out)]) == 0
    return {p.name: torch.load(p, weights_only=True) for p in out.iterdir() if p.suffix in (".pt", ".pth")}


def vae_run(tmp_path):
    """Two steps of a MonaiAutoencoderKL run with a discriminator, checkpointed at step 2."""
    config = vae_config(tmp_path, None, max_train_steps=2, validation_steps=2, checkpointing_steps=2)
    config["train"].update(monai_checkpoint=None, disc_start=0)
    assert run_trainer(config, tmp_path) == 0
    return config, os.path.join(run_folder(config), "checkpoint-2")


@pytest.mark.e2e
def test_a_vae_checkpoint_exports_to_monai_and_continues_from_the_export(tmp_path):
    from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch
    from models.archs.patch_discriminator_arch import PatchDiscriminator_arch

    config, checkpoint = vae_run(tmp_path)
    files = exported(checkpoint, tmp_path / "pti")
    assert set(files) == {"autoencoder.pt", "checkpoint.pth"}
    saved = files["checkpoint.pth"]
    assert set(saved) == {
        "epoch",
        "autoencoder_state_dict",
        "discriminator_state_dict",
        "optimizer_g_state_dict",
        "optimizer_d_state_dict",
        "best_val_loss",
        "total_step",
    }
    assert saved["total_step"] == 2 and saved["best_val_loss"] == pytest.approx(saved["best_val_loss"])

    monai_vae = AutoencoderKL(**NETWORK).eval()
    monai_vae.load_state_dict(files["autoencoder.pt"], strict=True)
    ours = MonaiAutoencoderKL_arch.from_pretrained(os.path.join(checkpoint, "net_g")).eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            monai_vae.reconstruct(x), ours(x, sample_posterior=False).reconstruction, rtol=0, atol=1e-5
        )
        monai_d = PatchDiscriminator(out_channels=1, **DISCRIMINATOR).eval()
        monai_d.load_state_dict(saved["discriminator_state_dict"], strict=True)
        our_d = PatchDiscriminator_arch.from_pretrained(os.path.join(checkpoint, "net_d")).eval()
        torch.testing.assert_close(monai_d(x)[-1], our_d(x), rtol=0, atol=1e-5)

    # PTI-LDM-VAE's own optimizer takes the exported state; the moments are the run's
    ours_g = torch.load(os.path.join(checkpoint, "optimizer.bin"), weights_only=True)
    adam = torch.optim.Adam(monai_vae.parameters())
    adam.load_state_dict(saved["optimizer_g_state_dict"])
    for index, param in enumerate(monai_vae.parameters()):
        assert torch.equal(adam.state[param]["exp_avg"], ours_g["state"][index]["exp_avg"])

    # ... and continuing the exported checkpoint.pth here restores the same moments, step and discriminator
    again = vae_config(tmp_path, tmp_path / "pti" / "checkpoint.pth")
    again["experiment_key"] = "again"
    model = started(again, tmp_path)
    try:
        assert model.global_step == 2
        state = model.optimizers[0].optimizer.state
        for index, param in enumerate(model.net_g.arch.monai_autoencoder.parameters()):
            assert torch.equal(state[param]["exp_avg"], ours_g["state"][index]["exp_avg"])
        for key, value in saved["discriminator_state_dict"].items():
            assert torch.equal(model.net_d.arch.monai_discriminator.state_dict()[key], value)
    finally:
        closed(model)


@pytest.mark.e2e
def test_an_ldm_checkpoint_exports_to_monai(tmp_path):
    from models.archs.condition_projector_arch import ConditionProjector_arch
    from models.archs.diffusion_unet_arch import DiffusionUNet_arch

    torch.manual_seed(0)
    torch.save(AutoencoderKL(**NETWORK).state_dict(), tmp_path / "autoencoder.pt")
    config = ldm_config(tmp_path, None, condition={"type": "image", "position_embedding": False})
    config["vae"] = {
        "monai_checkpoint": str(tmp_path / "autoencoder.pt"),
        "network": NETWORK,
        "scale_factor": 1.0,
    }
    config["network"] = {"type": "DiffusionUNet", "backend": "monai", **UNET}
    config["train"].update(max_train_steps=2, validation_steps=2, checkpointing_steps=2)
    config["val"].update(num_samples=1, num_inference_steps=2, baselines=False, max_batches=1)
    assert run_trainer(config, tmp_path) == 0
    checkpoint = os.path.join(run_folder(config), "checkpoint-2")
    files = exported(checkpoint, tmp_path / "pti")
    assert set(files) == {"diffusion_unet.pt", "checkpoint.pth"}
    saved = files["checkpoint.pth"]
    assert set(saved) == {
        "epoch",
        "unet_state_dict",
        "condition_projector_state_dict",
        "optimizer_state_dict",
        "best_val_loss",
        "total_step",
    }

    unet = DiffusionModelUNet(**UNET).eval()
    unet.load_state_dict(files["diffusion_unet.pt"], strict=True)
    projector = torch.nn.Linear(2, 32)
    projector.load_state_dict(saved["condition_projector_state_dict"], strict=True)
    our_unet = DiffusionUNet_arch.from_pretrained(os.path.join(checkpoint, "unet")).eval()
    our_projector = ConditionProjector_arch.from_pretrained(os.path.join(checkpoint, "projector")).eval()
    z, cond, t = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8), torch.tensor([3, 70])
    with torch.no_grad():
        context = projector(cond.permute(0, 2, 3, 1).reshape(2, 64, 2))  # PTI-LDM-VAE's tokens
        torch.testing.assert_close(context, our_projector(cond), rtol=0, atol=1e-5)
        torch.testing.assert_close(
            unet(z, timesteps=t, context=context), our_unet(z, t, our_projector(cond)), rtol=0, atol=1e-5
        )
    adam = torch.optim.Adam(list(unet.parameters()) + list(projector.parameters()))
    adam.load_state_dict(saved["optimizer_state_dict"])  # the null token has no counterpart: left out
    ours = torch.load(os.path.join(checkpoint, "optimizer.bin"), weights_only=True)
    assert len(adam.state) == len(ours["state"]) - 1
    # the run's optimizer order: the UNet's parameters, then the projector's (null token, weight, bias)
    n = len(list(unet.parameters()))
    for param, index in zip([*unet.parameters(), *projector.parameters()], [*range(n), n + 1, n + 2]):
        assert torch.equal(adam.state[param]["exp_avg"], ours["state"][index]["exp_avg"])
    assert sum(float(ours["state"][i]["exp_avg"].abs().sum()) for i in range(n)) > 0


def test_what_has_no_pti_counterpart_is_refused_in_one_sentence(tmp_path, capsys):
    from models.archs.condition_projector_arch import ConditionProjector_arch, ConditionProjector_config
    from models.archs.diffusion_unet_arch import DiffusionUNet_arch, DiffusionUNet_config

    folder = tmp_path / "final"
    DiffusionUNet_arch(DiffusionUNet_config(backend="monai", **UNET)).save_pretrained(folder / "unet")
    config = ConditionProjector_config(
        mode="image", in_channels=2, cross_attention_dim=32
    )  # position embedding
    ConditionProjector_arch(config).save_pretrained(folder / "projector")
    (folder / "ldm.json").write_text(
        '{"unet": "unet", "projector": "projector", "condition": {"type": "image"}}'
    )
    (tmp_path / "empty").mkdir()
    for run, expected in (
        (folder, "position_embedding: false"),
        (tmp_path / "empty", "neither a VAE's net_g/"),
    ):
        assert export_pti.main(["--run", str(run), "--out", str(tmp_path / "out")]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out").exists()
