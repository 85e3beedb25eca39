"""End-to-end runs of the trainer on the example plugin, in this process, on tiny configs."""

import copy
import glob
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import read_scalars, run_folder, run_trainer

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def final_weights(config):
    return load_file(os.path.join(run_folder(config), "final", "net_g", "model.safetensors"))


def test_train_checkpoints_rotation_final_and_test(tiny_config, tmp_path, capsys):
    assert run_trainer(tiny_config, tmp_path) == 0
    run = run_folder(tiny_config)
    # checkpoints every 3 steps of 6, at most 2 kept; only complete ones, no staging left over
    assert sorted(os.listdir(run)) == [
        "checkpoint-3",
        "checkpoint-6",
        "config.yml",
        "final",
        "images",
        "logs",
        "train.log",
        "training_summary.png",
    ]
    assert os.path.isfile(os.path.join(run, "checkpoint-6", "checkpoint_complete"))
    assert os.path.isfile(os.path.join(run, "checkpoint-6", "net_g", "model.safetensors"))
    # scalars read back from the TensorBoard event files
    scalars = read_scalars(run)
    assert sorted(scalars["train/all"]) == [1, 2, 3, 4, 5, 6]
    assert sorted(scalars["val_psnr"]) == [3, 6]
    assert scalars["train/lr"][1] == pytest.approx(1e-3)  # warm-up: 1 of 2 steps of 2e-3
    assert os.path.isfile(os.path.join(run, "images", "val_input_pred_target_0000006.png"))
    # the final folder loads back with from_pretrained and matches the last checkpoint's weights
    from models.archs import find_arch

    _, arch_cls = find_arch("TinyDenoiser")
    net = arch_cls.from_pretrained(os.path.join(run, "final", "net_g"))
    assert torch.equal(net.body[0].weight, final_weights(tiny_config)["body.0.weight"])
    metrics = json.load(open(os.path.join(run, "final", "metrics.json")))
    assert metrics["val_psnr"] == pytest.approx(scalars["val_psnr"][6], rel=1e-5)

    # -test: loads the final weights, validates the whole set once, writes a summary, no checkpoint
    test_config = copy.deepcopy(tiny_config)
    test_config["experiment_key"] = "evaluation"
    test_config["path"]["pretrained"] = os.path.join(run, "final")
    capsys.readouterr()
    assert run_trainer(test_config, tmp_path, "-test", name="test.yml") == 0
    printed = capsys.readouterr().out
    assert "val_psnr" in printed
    # written beside the weights it scores: <run>/test/<stamp>/
    (test_dir,) = glob.glob(os.path.join(run, "test", "*"))
    summary = json.load(open(os.path.join(test_dir, "test_metrics.json")))
    assert summary["metrics"]["val_psnr"] == pytest.approx(metrics["val_psnr"], rel=1e-5)
    assert not [d for d in os.listdir(test_dir) if d.startswith("checkpoint")]


def test_loss_falls_and_psnr_beats_the_noisy_input(tiny_config, tmp_path):
    tiny_config["train"].update(max_train_steps=200, validation_steps=200, checkpointing_steps=200)
    tiny_config["network"].update(hidden_channels=16, num_layers=4)
    tiny_config["train"]["optim"]["learning_rate"] = 3e-3
    assert run_trainer(tiny_config, tmp_path) == 0
    scalars = read_scalars(run_folder(tiny_config))
    losses = scalars["train/all"]
    assert sum(losses[s] for s in range(191, 201)) < 0.5 * sum(losses[s] for s in range(1, 11))
    # noise std 0.1 on [0, 1] images is 20 dB; denoising must beat it clearly
    assert scalars["val_psnr"][200] > 23.0


@pytest.mark.parametrize("ema", [None, {"decay": 0.9}], ids=["plain", "with_ema"])
def test_resume_mid_epoch_gives_the_same_losses_and_weights(tiny_config, tmp_path, monkeypatch, ema):
    tiny_config["train"]["ema"] = ema
    tiny_config["train"].update(
        max_train_steps=10, checkpointing_steps=3, validation_steps=5, checkpoints_total_limit=None
    )
    reference = copy.deepcopy(tiny_config)
    reference["experiment_key"] = "uninterrupted"
    assert run_trainer(reference, tmp_path, name="ref.yml") == 0

    # The interrupted run dies during step 5 (8 batches per epoch: checkpoint-3 is mid-epoch).
    from models.example.Denoise_model import Denoise_model

    original = Denoise_model.optimize_parameters
    calls = {"n": 0}

    def dying(self):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Denoise_model, "optimize_parameters", dying)
    assert run_trainer(tiny_config, tmp_path) == 130  # a second Ctrl-C: stops at once
    monkeypatch.setattr(Denoise_model, "optimize_parameters", original)
    assert os.path.isdir(os.path.join(run_folder(tiny_config), "checkpoint-3"))

    resumed = copy.deepcopy(tiny_config)
    resumed["path"]["resume_from_checkpoint"] = "latest"
    assert run_trainer(resumed, tmp_path, name="resume.yml") == 0
    ref, got = read_scalars(run_folder(reference)), read_scalars(run_folder(resumed))
    for step in range(4, 11):
        assert got["train/all"][step] == pytest.approx(ref["train/all"][step], rel=1e-6, abs=1e-9), step
        assert got["train/lr"][step] == pytest.approx(ref["train/lr"][step])
    assert got["val_psnr"][10] == pytest.approx(ref["val_psnr"][10], rel=1e-6)
    for key, value in final_weights(reference).items():
        torch.testing.assert_close(final_weights(resumed)[key], value, rtol=1e-6, atol=1e-7)


def test_gradient_accumulation_equals_the_large_batch(tiny_config, tmp_path):
    common = dict(max_train_steps=3, checkpointing_steps=100, validation_steps=100)
    big = copy.deepcopy(tiny_config)
    big["experiment_key"] = "batch4"
    big["train"].update(batch_size=4, gradient_accumulation_steps=1, **common)
    small = copy.deepcopy(tiny_config)
    small["experiment_key"] = "batch2x2"
    small["train"].update(batch_size=2, gradient_accumulation_steps=2, **common)
    for config in (big, small):
        config["datasets"]["train"]["use_shuffle"] = False
        config["train"]["optim"]["max_grad_norm"] = None
        del config["datasets"]["val"]
    assert run_trainer(big, tmp_path, name="big.yml") == 0
    assert run_trainer(small, tmp_path, name="small.yml") == 0
    for key, value in final_weights(big).items():
        torch.testing.assert_close(final_weights(small)[key], value, rtol=1e-5, atol=1e-6)


def test_optimize_parameters_without_all_is_a_clear_error(tiny_config, tmp_path, monkeypatch, capsys):
    from models.example.Denoise_model import Denoise_model

    monkeypatch.setattr(Denoise_model, "optimize_parameters", lambda self: {"mse": torch.tensor(1.0)})
    assert run_trainer(tiny_config, tmp_path) == 2
    assert "must return a dict of losses with the key 'all'" in capsys.readouterr().err


def test_ema_is_used_for_validation_and_export(tiny_config, tmp_path):
    tiny_config["train"]["ema"] = {"decay": 0.5}
    tiny_config["train"].update(max_train_steps=4, checkpointing_steps=2, validation_steps=4)
    assert run_trainer(tiny_config, tmp_path) == 0
    run = run_folder(tiny_config)
    state = load_file(os.path.join(run, "checkpoint-4", "model.safetensors"))  # the raw trained weights
    exported = final_weights(tiny_config)
    assert not torch.equal(state["arch.body.0.weight"], exported["body.0.weight"])
    assert "ema_0.safetensors" in os.listdir(os.path.join(run, "checkpoint-4"))
    assert not any(
        name.startswith("custom_checkpoint") for name in os.listdir(os.path.join(run, "checkpoint-4"))
    )


def test_eight_bit_adam_step(tiny_config, tmp_path):
    pytest.importorskip("bitsandbytes")
    tiny_config["train"]["optim"]["use_8bit_adam"] = True
    tiny_config["network"]["hidden_channels"] = 64  # bitsandbytes keeps tensors under 4096 values in 32 bit
    tiny_config["train"].update(max_train_steps=8, checkpointing_steps=8, validation_steps=8)
    assert run_trainer(tiny_config, tmp_path) == 0
    optimizer_state = torch.load(
        os.path.join(run_folder(tiny_config), "checkpoint-8", "optimizer.bin"), weights_only=False
    )
    quantized = [s["__bnb_optimizer_quant_state__"] for s in optimizer_state["state"].values()]
    assert any(q["state1"].dtype == torch.uint8 for q in quantized)  # the 64x64x3x3 conv's moments
    losses = read_scalars(run_folder(tiny_config))["train/all"]
    assert losses[8] < losses[1]
