"""LDM_model end to end: a tiny stage-1 VAE run, then stage 2 on its final/ folder, then generation."""

import copy
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, read_scalars, run_folder, run_trainer
from tests.helpers import ldm_config

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def test_stage2_loss_falls_uses_the_stored_scale_factor_and_saves_what_generation_needs(stage1, tmp_path):
    vae_weights = load_file(os.path.join(stage1, "model.safetensors"))
    stored = json.load(open(os.path.join(stage1, "config.json")))["scaling_factor"]
    config = ldm_config(tmp_path, stage1)
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    scalars = read_scalars(run)
    assert scalars["val_loss"][40] < 0.8 * scalars["val_loss"][20]
    assert np.isfinite(scalars["val_psnr"][40])
    # the baselines beside the samples: the mean training target, and the samples of shuffled conditions
    from dataset.synthetic_shapes_dataset import SyntheticShapesDataset
    from utils.metrics import compute_metrics

    train = SyntheticShapesDataset({"size": 64, "image_size": 16, "phase": "train"})
    val = SyntheticShapesDataset({"size": 16, "image_size": 16, "phase": "val"})
    mean = torch.stack([train[i]["gt"] for i in range(64)]).double().mean(0).float()
    targets = torch.stack([val[i]["gt"] for i in range(4)])  # val.num_samples: 4
    expected = compute_metrics(
        mean.expand_as(targets).numpy(), targets.numpy(), {"psnr": {"data_range": 1.0}}
    )
    assert scalars["val_mean_target_psnr"][40] == pytest.approx(expected["psnr"], rel=1e-5)
    assert np.isfinite(scalars["val_shuffled_psnr"][40])
    assert scalars["val_shuffled_psnr"][40] != scalars["val_psnr"][40]
    # stage 2 used stage 1's measured factor (not diffusers' 0.18215, not a recomputed one) and saved it
    assert stored != pytest.approx(0.18215)
    assert scalars["latent_scale_factor"][40] == pytest.approx(stored, rel=1e-6)
    final = os.path.join(run, "final")
    description = json.load(open(os.path.join(final, "ldm.json")))
    assert description["scale_factor"] == pytest.approx(stored, rel=1e-12)
    assert description["vae"]["pretrained"] == os.path.abspath(stage1)
    assert sorted(os.listdir(final)) == [
        "config.yml",
        "ldm.json",
        "mean_target.safetensors",
        "metrics.json",
        "projector",
        "scheduler",
        "unet",
    ]
    # the frozen VAE is untouched
    after = load_file(os.path.join(stage1, "model.safetensors"))
    assert all(torch.equal(vae_weights[k], after[k]) for k in vae_weights)
    assert os.listdir(os.path.join(run, "images"))

    # generation from the saved run: same seed, same TIFs; one output per condition, named after it
    import scripts.generate as generate
    from dataset.synthetic_shapes_dataset import SyntheticShapesDataset

    conditions = tmp_path / "conditions"
    conditions.mkdir()
    data = SyntheticShapesDataset({"size": 3, "image_size": 16, "seed": 1})
    for i in range(3):
        tifffile.imwrite(conditions / f"c{i}.tif", data[i]["cond"][0].numpy().astype(np.float32))
    outputs = []
    for out in ("gen_a", "gen_b"):
        args = ["--run", final, "--conditions", str(conditions), "--out", str(tmp_path / out), "--seed", "3"]
        if out == "gen_a":
            assert generate.main([*args, "--steps", "3", "--batch-size", "2"]) == 0
        else:  # as a user runs it: a process of its own, which prints no library noise
            script = os.path.join(ROOT, "scripts", "generate.py")
            done = subprocess.run(
                [sys.executable, script, *args, "--steps", "3", "--batch-size", "2"],
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
            assert "Loading weights" not in done.stderr and "kernels" not in done.stderr, done.stderr
        outputs.append([tifffile.imread(tmp_path / out / f"c{i}.tif") for i in range(3)])
    assert outputs[0][0].shape == (16, 16) and outputs[0][0].dtype == np.float32
    # Same seed, same TIFs; not bit for bit across processes, whose thread counts may differ.
    for a, b in zip(*outputs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert not np.array_equal(outputs[0][0], outputs[0][1])
    assert (tmp_path / "gen_a" / "grid.png").is_file()


def test_minus_test_scores_the_mean_target_saved_with_the_weights(stage1, tmp_path):
    """-test loads no training data: the mean training target comes from the weights folder (final/, best/
    or checkpoint-N/ alike), so the same val_mean_target_* are reported as in training."""
    config = ldm_config(tmp_path, stage1)
    config["train"].update(
        max_train_steps=2, validation_steps=2, checkpointing_steps=2, best_metric="val_psnr"
    )
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    trained = read_scalars(run)["val_mean_target_psnr"][2]
    saved = load_file(os.path.join(run, "final", "mean_target.safetensors"))["mean_target"]
    assert saved.shape == (1, 16, 16)
    assert os.path.isfile(
        os.path.join(run, "checkpoint-2", "config.yml")
    )  # the data settings generate.py reads
    for folder in ("best", "checkpoint-2"):
        assert torch.equal(
            load_file(os.path.join(run, folder, "mean_target.safetensors"))["mean_target"], saved
        )
        assert json.load(open(os.path.join(run, folder, "ldm.json"))) == json.load(
            open(os.path.join(run, "final", "ldm.json"))
        )
    assert json.load(open(os.path.join(run, "final", "ldm.json")))["mean_target"] == "mean_target.safetensors"

    tested = copy.deepcopy(config)
    del tested["datasets"]["train"]
    tested["path"]["pretrained"] = os.path.join(run, "checkpoint-2")
    assert run_trainer(tested, tmp_path, "-test", name="test.yml") == 0
    (summary,) = glob.glob(os.path.join(run, "test", "*", "test_metrics.json"))
    scored = json.load(open(summary))["metrics"]
    assert scored["val_mean_target_psnr"] == pytest.approx(trained, abs=1e-6)
    assert read_scalars(os.path.dirname(summary))["val_mean_target_psnr"][0] == pytest.approx(
        trained, abs=1e-6
    )


def test_vector_conditioning_with_a_latent_cache(stage1, tmp_path):
    config = ldm_config(tmp_path, stage1, condition={"type": "vector", "key": "x", "log_features": []})
    config["train"].update(max_train_steps=6, validation_steps=6, cache_latents=True, snr_gamma=None)
    config["diffusion"]["prediction_type"] = "v"
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    assert len(os.listdir(os.path.join(run, "latent_cache"))) == 1
    projector = json.load(open(os.path.join(run, "final", "projector", "config.json")))
    # x runs over 0..63 in the training set: normalised to [-1, 1] by its stored shift and scale
    assert projector["vector_shift"] == pytest.approx([31.5]) and projector["vector_scale"] == pytest.approx(
        [31.5]
    )

    from models.ldm.pipeline import LDMPipeline

    pipe = LDMPipeline.from_final(os.path.join(run, "final"))
    a = pipe(torch.tensor([[3.0], [40.0]]), seeds=[0, 1], num_inference_steps=2, guidance_scale=1.0)
    b = pipe(torch.tensor([[40.0], [3.0]]), seeds=[1, 0], num_inference_steps=2, guidance_scale=1.0)
    assert a.shape == (2, 1, 16, 16) and torch.allclose(a, b.flip(0), atol=1e-5)


def test_a_vector_injected_into_the_time_embedding_trains_saves_and_generates(stage1, tmp_path):
    # features: the projector sees two numbers computed from the one raw entry, here and in generation
    condition = {"type": "vector", "key": "x", "inject": "time_embedding", "features": ["v0", "1/(1 + v0)"]}
    config = ldm_config(tmp_path, stage1, condition=condition)
    config["train"].update(max_train_steps=6, validation_steps=6, snr_gamma=None)
    config["diffusion"]["prediction_type"] = "sample"
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    final = os.path.join(run, "final")
    assert np.isfinite(read_scalars(run)["val_psnr"][6])
    assert json.load(open(os.path.join(final, "ldm.json")))["condition"]["inject"] == "time_embedding"
    unet = json.load(open(os.path.join(final, "unet", "config.json")))
    assert unet["condition_injection"] == "time_embedding"
    projector = json.load(open(os.path.join(final, "projector", "config.json")))
    assert projector["global_token"] is True and projector["features"] == ["v0", "1/(1 + v0)"]
    assert projector["in_channels"] == 2 and projector["vector_scale"][1] < 1  # 1/(1+x) spans under 1

    from models.ldm.pipeline import LDMPipeline

    pipe = LDMPipeline.from_final(final)
    a = pipe(torch.tensor([[3.0], [40.0]]), seeds=[0, 0], num_inference_steps=2, guidance_scale=1.0)
    assert a.shape == (2, 1, 16, 16) and torch.isfinite(a).all()
    assert (a[0] - a[1]).abs().max() > 1e-4  # same seed, other condition: another sample
    b = pipe(torch.tensor([[40.0], [3.0]]), seeds=[1, 0], num_inference_steps=2, guidance_scale=2.0)
    assert torch.isfinite(b).all()

    import scripts.generate as generate

    out = tmp_path / "gen"
    assert generate.main(["--run", final, "--vector", "3", "--out", str(out), "--steps", "2"]) == 0
    (written,) = [f for f in os.listdir(out) if f.endswith(".tif")]
    assert np.isfinite(tifffile.imread(out / written)).all()


def test_a_monai_checkpoint_gets_its_scale_factor_measured_and_saved(tmp_path):
    from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch, MonaiAutoencoderKL_config

    network = {
        "spatial_dims": 2,
        "channels": [8, 8],
        "latent_channels": 2,
        "num_res_blocks": 1,
        "norm_num_groups": 4,
        "with_encoder_nonlocal_attn": False,
        "with_decoder_nonlocal_attn": False,
    }
    torch.manual_seed(0)
    vae = MonaiAutoencoderKL_arch(MonaiAutoencoderKL_config(**network))
    torch.save(vae.monai_autoencoder.state_dict(), tmp_path / "autoencoder_epoch1.pth")
    config = ldm_config(tmp_path, None, condition={"type": "none"})
    config["vae"] = {"monai_checkpoint": str(tmp_path / "autoencoder_epoch1.pth"), "network": network}
    config["network"] = {**config["network"], "with_conditioning": False}
    config["train"].update(max_train_steps=2, validation_steps=2)
    assert run_trainer(config, tmp_path) == 0
    final = os.path.join(run_folder(config), "final")
    description = json.load(open(os.path.join(final, "ldm.json")))
    assert description["scale_factor"] != pytest.approx(1.0)
    assert "projector" not in os.listdir(final)

    from models.ldm.pipeline import LDMPipeline

    pipe = LDMPipeline.from_final(final)
    assert pipe.vae.config.scaling_factor == description["scale_factor"]
    assert pipe(None, seeds=[0, 1], num_inference_steps=2).shape == (2, 1, 16, 16)


def test_stage2_resumes_mid_epoch_to_the_uninterrupted_weights(stage1, tmp_path):
    """Diffusion noise, timesteps and condition drops all come from torch's global RNG."""
    config = ldm_config(tmp_path, stage1)
    # 64 samples / 8 = 8 batches an epoch: checkpoint-5 is mid-epoch and the run crosses into epoch 2
    config["train"].update(max_train_steps=12, validation_steps=1000, checkpointing_steps=5)
    config["val"]["num_samples"] = 0
    assert run_trainer(config, tmp_path) == 0
    resumed = copy.deepcopy(config)
    resumed["experiment_key"] = "resumed"
    resumed["path"].update(resume_from_path=run_folder(config), resume_from_checkpoint="checkpoint-5")
    assert run_trainer(resumed, tmp_path, name="resumed.yml") == 0
    for net in ("unet", "projector"):
        reference = load_file(os.path.join(run_folder(config), "final", net, "model.safetensors"))
        got = load_file(os.path.join(run_folder(resumed), "final", net, "model.safetensors"))
        for key, value in reference.items():
            torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6)


def test_concat_conditioning_stacks_the_condition_latent(stage1, tmp_path):
    config = ldm_config(tmp_path, stage1, condition={"type": "image", "concat": True})
    config["train"].update(max_train_steps=3, validation_steps=3)
    bad = dict(copy.deepcopy(config), experiment_key="bad")
    assert run_trainer(bad, tmp_path, name="bad.yml") == 2  # in_channels still 2: named in one sentence
    config["network"] = {**config["network"], "in_channels": 4}
    assert run_trainer(config, tmp_path) == 0
    final = os.path.join(run_folder(config), "final")
    assert json.load(open(os.path.join(final, "ldm.json")))["condition"]["concat"] is True

    from models.ldm.pipeline import LDMPipeline

    pipe = LDMPipeline.from_final(final)
    conditions = torch.rand(2, 1, 16, 16)
    # guidance 2: a doubled batch whose unconditional half gets zero condition latents
    a = pipe(conditions, seeds=[0, 1], num_inference_steps=2, guidance_scale=2.0)
    b = pipe(conditions.flip(0), seeds=[1, 0], num_inference_steps=2, guidance_scale=2.0)
    assert torch.allclose(a, b.flip(0), atol=1e-5)
    c = pipe(conditions.flip(0), seeds=[0, 1], num_inference_steps=2, guidance_scale=2.0)
    assert not torch.allclose(a, c, atol=1e-4)  # the condition changes the sample
