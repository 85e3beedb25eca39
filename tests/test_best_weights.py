"""`train.best_metric`: <run>/best/ holds the networks of the best validation, written atomically."""

import glob
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from engine.checkpoints.best_weights import recover
from tests.conftest import read_scalars, run_folder, run_trainer


def net_g(folder):
    return load_file(os.path.join(folder, "net_g", "model.safetensors"))


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["max", "min"])
def test_best_folder_holds_the_weights_of_the_best_validation(tiny_config, tmp_path, mode, capsys):
    tiny_config["train"].update(
        max_train_steps=6,
        validation_steps=1,
        checkpointing_steps=1,
        checkpoints_total_limit=None,
        best_metric="val_psnr",
        best_mode=mode,
    )
    tiny_config["train"]["optim"]["learning_rate"] = 2e-2  # a bumpy curve, so best is not simply the last
    assert run_trainer(tiny_config, tmp_path) == 0
    run = run_folder(tiny_config)
    curve = read_scalars(run)["val_psnr"]
    pick = max if mode == "max" else min
    step = pick(curve, key=curve.get)
    record = json.load(open(os.path.join(run, "best", "best.json")))
    assert record["step"] == step and record["value"] == pytest.approx(curve[step], rel=1e-6)
    assert record["metric"] == "val_psnr" and record["mode"] == mode
    best, at_step = net_g(os.path.join(run, "best")), net_g(os.path.join(run, f"checkpoint-{step}"))
    assert all(torch.equal(best[k], at_step[k]) for k in best)
    assert {"config.yml", "metrics.json", "best.json", "net_g"} <= set(os.listdir(os.path.join(run, "best")))
    assert not any(name.startswith("best.") for name in os.listdir(run))  # no tmp/old left over

    # -test takes best/ like final/ and scores exactly what best.json recorded
    tested = dict(tiny_config, experiment_key="tested")
    tested["path"] = {**tiny_config["path"], "pretrained": os.path.join(run, "best")}
    assert run_trainer(tested, tmp_path, "-test", name="test.yml") == 0
    (scores,) = glob.glob(os.path.join(run, "test", "*", "test_metrics.json"))  # beside the weights
    scored = json.load(open(scores))["metrics"]
    assert scored["val_psnr"] == pytest.approx(record["value"], rel=1e-6)


def test_a_kill_between_the_two_renames_leaves_a_best_folder(tmp_path):
    (tmp_path / "best.old" / "net_g").mkdir(parents=True)
    (tmp_path / "best.tmp").mkdir()
    recover(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["best"] and os.path.isdir(tmp_path / "best" / "net_g")
