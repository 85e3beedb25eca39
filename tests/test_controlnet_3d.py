"""A ControlNet steering a frozen 3D LDM (MONAI's ControlNet, `network.type: MonaiControlNet`): a tiny 3D
MONAI VAE on synthetic mask volumes, a 3D LDM on its latents, a ControlNet on the masks. Its loss at
fixed noise falls below the LDM's own, weight 0 gives the LDM's samples bit for bit, and
`generate.py --control` writes (D, H, W) stacks; a UNet whose condition enters through its time
embedding gives its ControlNet the same class embedding."""

import copy
import json
import os

import numpy as np
import pytest
import tifffile
import torch

from tests.helpers import monai_kl, read_scalars, run_folder, run_trainer
from tests.helpers.scripts import run_generate
from utils.errors import ConfigError

MASKS = {
    "type": "SyntheticMasksDataset",
    "spatial_dims": 3,
    "image_size": 16,
    "num_kinds": 2,
    "max_shapes": 1,
}
DATA = {"train": {**MASKS, "size": 64}, "val": {**MASKS, "size": 4}}
VAE = {
    "name": "vae3d",
    "model_type": "VAE_model",
    "report_to": "tensorboard",
    "seed": 3,
    "experiment_key": "run",
    "datasets": DATA,
    "network": monai_kl(3),
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 8,
        "max_train_steps": 16,
        "validation_steps": 16,
        "checkpointing_steps": 1000,
        "recon_type": "l1",
        "kl_weight": 1e-6,
    },
    "val": {"gt_key": "image", "batch_size": 4, "metrics": {"psnr": {"data_range": 1.0}}},
}
LDM = {
    "name": "ldm3d",
    "model_type": "LDM_model",
    "report_to": "tensorboard",
    "seed": 5,
    "experiment_key": "run",
    "datasets": DATA,
    "vae": {"pretrained": None},
    "condition": {"type": "none"},
    "network": {
        "type": "DiffusionUNet",
        "spatial_dims": 3,
        "in_channels": 2,
        "out_channels": 2,
        "channels": [8, 16],
        "attention_levels": [False, False],
        "num_head_channels": [0, 8],
        "num_res_blocks": 1,
        "with_conditioning": False,
        "norm_num_groups": 4,
    },
    # z0 targets: the mask tells the ControlNet much of the target, so a short run shows it learning
    "diffusion": {"num_train_timesteps": 100, "beta_schedule": "cosine", "prediction_type": "sample"},
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 8,
        "max_train_steps": 16,
        "validation_steps": 16,
        "checkpointing_steps": 1000,
        "cond_drop_prob": 0.0,
    },
    "val": {
        "gt_key": "image",
        "batch_size": 4,
        "sampler": "ddim",
        "num_inference_steps": 2,
        "num_samples": 2,
    },
}
CONTROLNET = {
    "name": "controlnet3d",
    "model_type": "ControlNet_model",
    "report_to": "tensorboard",
    "seed": 9,
    "experiment_key": "run",
    "datasets": DATA,
    "ldm": {"pretrained": None},
    "control": {"key": "mask", "conditioning_scale": 1.0},
    "network": {
        "type": "MonaiControlNet",
        "conditioning_channels": 1,
        "conditioning_embedding_out_channels": [8, 16],
    },
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "batch_size": 8,
        "max_train_steps": 60,
        "validation_steps": 60,
        "checkpointing_steps": 1000,
    },
    "val": {"gt_key": "image", "batch_size": 4, "num_samples": 2, "num_inference_steps": 2},
}


def in_folder(config, tmp, **changes):
    config = copy.deepcopy(config)
    config["path"]["root"] = str(tmp / "experiments")
    config.update(copy.deepcopy(changes))
    return config


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(tmp, LDM final/, ControlNet run folder), trained once for the module."""
    tmp = tmp_path_factory.mktemp("cn3d")
    vae = in_folder(VAE, tmp)
    assert run_trainer(vae, tmp, name="vae.yml") == 0
    ldm = in_folder(LDM, tmp, vae={"pretrained": os.path.join(run_folder(vae), "final", "net_g")})
    assert run_trainer(ldm, tmp, name="ldm.yml") == 0
    ldm_final = os.path.join(run_folder(ldm), "final")
    control = in_folder(CONTROLNET, tmp, ldm={"pretrained": ldm_final})
    assert run_trainer(control, tmp, name="controlnet.yml") == 0
    return tmp, ldm_final, run_folder(control)


def held_out(count=8):
    from dataset.synthetic_masks_dataset import SyntheticMasksDataset

    data = SyntheticMasksDataset({**MASKS, "size": count, "seed": 77})
    items = [data[i] for i in range(count)]
    return {key: torch.stack([item[key] for item in items]) for key in ("image", "mask")}


def fixed_noise_loss(pipe, batch, scale) -> float:
    """The training loss on held-out volumes at fixed noise and timesteps; at weight 0 the LDM's own."""
    from diffusers import DDPMScheduler

    from models.controlnet.pipeline import ControlledUNet, as_control
    from models.ldm.frozen_vae import encode_latents
    from models.ldm.schedules import training_target

    scheduler = DDPMScheduler.from_config(pipe.ldm.noise_scheduler_config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        latents = encode_latents(pipe.ldm.vae, batch["image"]).float().repeat(4, 1, 1, 1, 1)
        noise = torch.randn(latents.shape, generator=generator)
        steps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, steps)
        control = as_control(batch["mask"], 3).repeat(4, 1, 1, 1, 1)
        prediction = ControlledUNet(pipe.ldm.unet, pipe.controlnet, control, scale)(noisy, steps, None)
        return float((prediction - training_target(scheduler, latents, noise, steps)).pow(2).mean())


@pytest.mark.e2e
def test_a_3d_controlnet_learns_keeps_the_ldm_at_weight_0_and_generates_stacks(chain):
    from models.controlnet.pipeline import ControlNetPipeline
    from models.ldm.pipeline import LDMPipeline

    tmp, ldm_final, run = chain
    final = os.path.join(run, "final")
    assert (
        json.load(open(os.path.join(final, "controlnet", "config.json")))["model_type"] == "MonaiControlNet"
    )
    pipe = ControlNetPipeline.from_final(final)
    batch = held_out()
    before, after = fixed_noise_loss(pipe, batch, 0.0), fixed_noise_loss(pipe, batch, 1.0)
    assert after < 0.8 * before, (before, after)
    assert "val_loss" in read_scalars(run)

    masks = batch["mask"][:2]
    controlled = pipe(masks, seeds=[3, 4], conditioning_scale=0.0, num_inference_steps=3)
    base = LDMPipeline.from_final(ldm_final)(None, seeds=[3, 4], num_inference_steps=3)
    assert controlled.shape == (2, 1, 16, 16, 16)
    assert torch.equal(controlled, base)
    assert not torch.equal(pipe(masks, seeds=[3, 4], num_inference_steps=3), base)

    folder = tmp / "masks"
    folder.mkdir()
    for i, mask in enumerate(masks):
        tifffile.imwrite(folder / f"mask_{i}.tif", mask.numpy().astype(np.uint8))
    out = tmp / "gen"
    assert run_generate("--run", final, "--control", folder, "--steps", 2, "--out", out) == 0
    stack = tifffile.imread(out / "mask_0.tif")
    assert stack.shape == (16, 16, 16) and stack.dtype == np.float32
    assert sorted(p.name for p in out.glob("*.tif")) == ["mask_0.tif", "mask_1.tif"]


@pytest.mark.e2e
def test_a_fusion_other_than_residual_or_a_diffusers_type_is_refused_over_a_3d_ldm(chain, tmp_path, capsys):
    _, ldm_final, _ = chain
    for changes, match in (
        ({"control": {"key": "mask", "fusion": "film"}}, "only by 'residual'"),
        (
            {"network": {"type": "ControlNet", "conditioning_embedding_out_channels": [8, 16]}},
            "MonaiControlNet",
        ),
    ):
        config = in_folder(CONTROLNET, tmp_path, ldm={"pretrained": ldm_final}, **changes)
        assert run_trainer(config, tmp_path) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and match in errors[0] and "Traceback" not in err, err


@torch.no_grad()
def test_a_time_embedded_condition_reaches_the_controlnet_through_the_same_class_embedding():
    from models.archs.diffusion_unet_arch import DiffusionUNet_arch, DiffusionUNet_config
    from models.archs.monai_controlnet_arch import MonaiControlNet_arch, MonaiControlNet_config
    from models.controlnet.pipeline import ControlledUNet

    torch.manual_seed(0)
    unet = DiffusionUNet_arch(
        DiffusionUNet_config(
            spatial_dims=3,
            in_channels=2,
            out_channels=2,
            channels=[8, 16],
            attention_levels=[False, False],
            num_head_channels=[0, 8],
            num_res_blocks=1,
            cross_attention_dim=8,
            norm_num_groups=4,
            condition_injection="time_embedding",
        )
    ).eval()
    for p in unet.parameters():  # a stand-in for trained weights
        p.add_(0.05 * torch.randn_like(p))
    config = MonaiControlNet_config(conditioning_embedding_out_channels=[4, 8], unet=unet.config.to_dict())
    controlnet = MonaiControlNet_arch(config).eval()
    controlnet.copy_encoder(unet)
    own = controlnet.controlnet.class_embedding.state_dict()
    assert all(torch.equal(v, unet.unet.class_embedding.state_dict()[k]) for k, v in own.items())
    latents, t = torch.randn(2, 2, 8, 8, 8), torch.tensor([5, 60])
    control, context = torch.rand(2, 1, 16, 16, 16), torch.randn(2, 3, 8)
    assert torch.equal(
        ControlledUNet(unet, controlnet, control)(latents, t, context), unet(latents, t, context)
    )
    # (MONAI's ControlNet refuses to run without its class embedding input, so ControlledUNet gave it.)
    token = context[:, -1]
    down, mid = controlnet.residuals(latents, t, control, 1.0, class_labels=token)
    for conv in [*controlnet.controlnet.controlnet_down_blocks, controlnet.controlnet.controlnet_mid_block]:
        getattr(conv, "conv", conv).weight.normal_(
            0.0, 0.1
        )  # as after training: the residuals are not zero any more
    down, mid = controlnet.residuals(latents, t, control, 1.0, class_labels=token)
    _, moved = controlnet.residuals(latents, t, control, 1.0, class_labels=token + 1.0)
    assert (mid - moved).abs().mean() > 1e-4  # the summary token reaches the ControlNet


def test_3d_mask_volumes_have_solid_shapes_and_2d_items_are_unchanged():
    from dataset.synthetic_masks_dataset import SyntheticMasksDataset

    volumes = SyntheticMasksDataset({**MASKS, "size": 4, "num_kinds": 3, "edges": True})
    item = volumes[0]
    assert item["image"].shape == (1, 16, 16, 16) and item["mask"].shape == (16, 16, 16)
    assert item["edges"].shape == (1, 16, 16, 16)
    inside = item["mask"] > 0
    assert torch.equal(item["image"][0] > 0, inside) and 0.01 < inside.float().mean() < 0.5
    assert (item["edges"][0].bool() <= inside).all() and item["edges"].sum() < inside.sum()
    flat = SyntheticMasksDataset({**MASKS, "spatial_dims": 2, "size": 4})[0]
    assert flat["mask"].shape == (16, 16)
    with pytest.raises(ConfigError, match="spatial_dims"):
        SyntheticMasksDataset({**MASKS, "spatial_dims": 4, "size": 4})
