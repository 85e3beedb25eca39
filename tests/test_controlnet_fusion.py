"""ControlNet fusion modes (`control.fusion`) and several controls at once (`control.key: [mask, edges]`):
at weight 0 every mode is the LDM alone bit for bit, before training it is the LDM at any weight, only
the fusion's own layers learn first, and a short training run lowers the loss in every mode."""

import copy
import glob
import json
import os

import numpy as np
import pytest
import tifffile
import torch

from tests.conftest import read_scalars, run_folder, run_trainer
from tests.helpers import MASK_DATA, TINY_CONTROLNET, TINY_MASK_LDM, TINY_MULTITASK

MODES = ("residual", "gated", "film", "concat")
# The parameters that get a gradient at the first step: the others sit behind a factor that starts at 0.
FIRST_LEARNERS = {
    "residual": ("controlnet_down_blocks", "controlnet_mid_block"),
    "gated": ("gates",),
    "film": ("controlnet_down_blocks", "controlnet_mid_block"),
    "concat": ("input_weights",),
}


def tiny_unet():
    from models.archs import define_network

    torch.manual_seed(0)
    unet = define_network(dict(TINY_MASK_LDM["network"])).eval().requires_grad_(False)
    for p in unet.parameters():  # a trained-looking UNet: no zero layers that would hide a wrong fusion
        torch.nn.init.normal_(p, std=0.1)
    return unet


def controlnet(unet, mode, controls=2):
    from models.archs import define_network

    block = {
        "type": "ControlNet",
        "conditioning_channels": 1,
        "conditioning_embedding_out_channels": [8, 8, 16],
        "unet": dict(unet.unet.config),
        "fusion": {"mode": mode, "controls": controls},
    }
    net = define_network(block)
    net.copy_encoder(unet.unet)
    return net


@pytest.mark.parametrize("mode", MODES)
def test_each_fusion_is_the_ldm_at_weight_zero_and_learns_through_its_own_layers(mode):
    from models.controlnet.pipeline import ControlledUNet

    unet = tiny_unet()
    net = controlnet(unet, mode)
    z, t = torch.randn(3, 4, 4, 4), torch.tensor([5, 400, 900])
    controls = [torch.rand(3, 1, 16, 16), (torch.rand(3, 1, 16, 16) > 0.5).float()]
    alone = unet(z, t)
    assert torch.equal(ControlledUNet(unet, net, controls, 1.0)(z, t), alone)  # before training
    ControlledUNet(unet, net, controls, 1.0)(z, t).pow(2).mean().backward()
    learning = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    firsts = FIRST_LEARNERS[mode]
    assert learning and all(any(part in firsts for part in n.split(".")) for n in learning), learning
    with torch.no_grad():  # one sign step (as Adam's first) on what learns first
        for p in net.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad.sign()
    steered = ControlledUNet(unet, net, controls, [1.0, 0.5])(z, t)
    assert (steered - alone).abs().max() > 1e-3
    assert torch.equal(ControlledUNet(unet, net, controls, [0.0, 0.0])(z, t), alone)
    # each control has its own weight: the second at 0 leaves what the first alone gives
    first_only = ControlledUNet(unet, net, controls, [1.0, 0.0])(z, t)
    assert (first_only - steered).abs().max() > 1e-4


def test_film_shifts_the_same_skips_that_residual_addition_adds_to():
    """FiLM with gamma = 0 and beta = b is residual addition of b: the hooks modulate the skips in the
    order diffusers pairs them with its residuals (each level its own width), and the mid block's output."""
    from models.controlnet.pipeline import ControlledUNet

    unet = tiny_unet()
    film, residual = controlnet(unet, "film", 1), controlnet(unet, "residual", 1)
    convs = [*film.controlnet.controlnet_down_blocks, film.controlnet.controlnet_mid_block]
    plain = [*residual.controlnet.controlnet_down_blocks, residual.controlnet.controlnet_mid_block]
    assert len(convs) == len(plain) > 3
    with torch.no_grad():
        for level, (f, r) in enumerate(zip(convs, plain)):
            shift = torch.linspace(-1, 1, r.out_channels) * (level + 1) / 10
            f.bias[r.out_channels :] = shift  # beta; gamma stays 0
            r.bias.copy_(shift)
    z, t, control = torch.randn(2, 4, 4, 4), torch.tensor([10, 700]), torch.rand(2, 1, 16, 16)
    by_film = ControlledUNet(unet, film, control)(z, t)
    by_residual = ControlledUNet(unet, residual, control)(z, t)
    assert torch.allclose(by_film, by_residual, atol=1e-5)
    assert not torch.allclose(by_film, unet(z, t), atol=1e-3)


# ---------------------------------------------------------------------------------------- end to end

EDGE_DATA = {phase: {**block, "edges": True} for phase, block in MASK_DATA.items()}


@pytest.fixture(scope="module")
def ldm(tmp_path_factory):
    """A tiny LDM final/ over a tiny multi-task autoencoder (short: only the ControlNets are judged)."""
    tmp = tmp_path_factory.mktemp("fusion")
    stage1 = copy.deepcopy(TINY_MULTITASK)
    stage1["path"]["root"] = str(tmp / "experiments")
    stage1["datasets"] = copy.deepcopy(MASK_DATA)
    stage1["train"].update(max_train_steps=60, validation_steps=60)
    assert run_trainer(stage1, tmp, name="stage1.yml") == 0
    config = copy.deepcopy(TINY_MASK_LDM)
    config["path"]["root"] = str(tmp / "experiments")
    config["vae"]["pretrained"] = os.path.join(run_folder(stage1), "final", "net_g")
    config["train"].update(max_train_steps=60, validation_steps=60)
    assert run_trainer(config, tmp, name="ldm.yml") == 0
    return tmp, os.path.join(run_folder(config), "final")


@pytest.fixture(scope="module")
def trained(ldm):
    """fusion mode -> a ControlNet final/ steered by masks and their edge maps."""
    tmp, ldm_final = ldm
    runs = {}
    for mode in MODES:
        config = copy.deepcopy(TINY_CONTROLNET)
        config.update(name=f"controlnet_{mode}", datasets=copy.deepcopy(EDGE_DATA))
        config["path"]["root"] = str(tmp / "experiments")
        config["ldm"]["pretrained"] = ldm_final
        config["control"] = {"key": ["mask", "edges"], "conditioning_scale": [1.0, 0.5], "fusion": mode}
        config["train"].update(max_train_steps=60, validation_steps=60, checkpointing_steps=60)
        config["val"]["num_samples"] = 2
        assert run_trainer(config, tmp, name=f"{mode}.yml") == 0
        runs[mode] = os.path.join(run_folder(config), "final")
        runs[f"{mode}_config"] = config
    return runs


def held_out(count=64):
    from dataset.synthetic_masks_dataset import SyntheticMasksDataset

    data = SyntheticMasksDataset({**EDGE_DATA["val"], "size": count, "seed": 77})
    items = [data[i] for i in range(count)]
    return {key: torch.stack([item[key] for item in items]) for key in ("image", "mask", "edges")}


def fixed_noise_loss(pipe, batch, scale) -> float:
    """The training loss on held-out items at fixed noise and timesteps. Every mode starts as the LDM,
    so the loss at weight 0 is the loss before training."""
    from diffusers import DDPMScheduler

    from models.controlnet.pipeline import ControlledUNet, as_control
    from models.ldm.frozen_vae import encode_latents
    from models.ldm.schedules import training_target

    scheduler = DDPMScheduler.from_config(pipe.ldm.noise_scheduler_config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        latents = encode_latents(pipe.ldm.vae, batch["image"]).float()
        latents = latents.repeat(4, 1, 1, 1)  # four timesteps per item
        noise = torch.randn(latents.shape, generator=generator)
        steps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, steps)
        controls = [as_control(batch[key]).repeat(4, 1, 1, 1) for key in ("mask", "edges")]
        prediction = ControlledUNet(pipe.ldm.unet, pipe.controlnet, controls, scale)(noisy, steps, None)
        return float((prediction - training_target(scheduler, latents, noise, steps)).pow(2).mean())


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_a_short_training_lowers_the_loss_and_weight_zero_stays_the_ldm(trained, ldm, mode):
    from models.controlnet.pipeline import ControlNetPipeline
    from models.ldm.pipeline import LDMPipeline

    pipe = ControlNetPipeline.from_final(trained[mode])
    assert pipe.controlnet.config.fusion == {"mode": mode, "controls": 2}
    assert pipe.control_keys == ["mask", "edges"]
    batch = held_out()
    before, after = fixed_noise_loss(pipe, batch, 0.0), fixed_noise_loss(pipe, batch, 1.0)
    assert after < 0.97 * before, (mode, before, after)
    masks = [batch["mask"][:3], batch["edges"][:3]]
    base = LDMPipeline.from_final(ldm[1])(None, seeds=[3, 4, 5], num_inference_steps=4)
    zero = pipe(masks, seeds=[3, 4, 5], conditioning_scale=[0.0, 0.0], num_inference_steps=4)
    assert torch.equal(zero, base)
    assert not torch.equal(pipe(masks, seeds=[3, 4, 5], num_inference_steps=4), base)


@pytest.mark.e2e
def test_test_mode_rebuilds_a_film_run_as_trained(trained, tmp_path):
    """`-test` over a run's final/ gives the validation score of the end of training: the FiLM layers and
    the two controls are rebuilt from the saved config, not a default residual ControlNet."""
    run = os.path.dirname(trained["film"])
    at_the_end = read_scalars(run)["val_dice"][60]
    tested = copy.deepcopy(trained["film_config"])
    del tested["datasets"]["train"]
    tested["path"]["pretrained"] = trained["film"]
    assert run_trainer(tested, tmp_path, "-test", name="test.yml") == 0
    (summary,) = glob.glob(os.path.join(run, "test", "*", "test_metrics.json"))
    assert json.load(open(summary))["metrics"]["val_dice"] == pytest.approx(at_the_end, abs=1e-6)


@pytest.mark.e2e
def test_generate_takes_one_control_folder_per_key_with_its_own_weight(trained, tmp_path, capsys):
    import scripts.generate as generate

    batch = held_out(3)
    folders = {key: tmp_path / key for key in ("mask", "edges", "edges_plus")}
    for key, folder in folders.items():
        folder.mkdir()
        for i, array in enumerate(batch[key.split("_")[0]]):
            tifffile.imwrite(folder / f"c{i}.tif", array.numpy().astype(np.float32))
    # an extra edge map sorting first: the folders pair by file name, not by position
    tifffile.imwrite(folders["edges_plus"] / "a.tif", np.ones((16, 16), np.float32))

    def generate_into(name, *extra, edges="edges"):
        args = [
            "--run",
            trained["gated"],
            "--control",
            str(folders["mask"]),
            "--control",
            str(folders[edges]),
        ]
        assert generate.main([*args, "--steps", "3", "--out", str(tmp_path / name), *extra]) == 0
        return np.stack([tifffile.imread(tmp_path / name / f"c{i}.tif") for i in range(3)])

    both = generate_into("both")
    assert both.shape == (3, 16, 16)
    assert np.array_equal(generate_into("plus", edges="edges_plus"), both)
    zero = generate_into("zero", "--conditioning-scale", "0")
    edges_off = generate_into("edges_off", "--conditioning-scale", "1", "--conditioning-scale", "0")
    assert not np.array_equal(both, zero) and not np.array_equal(both, edges_off)
    assert not np.array_equal(edges_off, zero)
    capsys.readouterr()
    one = ["--run", trained["gated"], "--control", str(folders["mask"]), "--out", str(tmp_path / "one")]
    assert generate.main(one) == 2
    assert "takes 2 controls (mask, edges) but got 1 --control folders" in capsys.readouterr().err
    three = ["--run", trained["gated"], "--control", str(folders["mask"]), "--control", str(folders["edges"])]
    assert generate.main([*three, "--out", str(tmp_path / "three"), *["--conditioning-scale", "1"] * 3]) == 2
    assert "3 --conditioning-scale values for 2 controls" in capsys.readouterr().err
