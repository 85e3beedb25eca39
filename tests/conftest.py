"""Shared fixtures: tiny experiment configs and an in-process trainer run."""

import copy
import glob
import logging
import os
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TINY_DENOISE = {
    "name": "tiny",
    "model_type": "Denoise_model",
    "report_to": "tensorboard",
    "seed": 7,
    "mixed_precision": "no",
    "experiment_key": "run",
    "datasets": {
        "train": {"type": "SyntheticShapesDataset", "size": 64, "image_size": 16},
        "val": {"type": "SyntheticShapesDataset", "size": 16, "image_size": 16},
    },
    "network": {"type": "TinyDenoiser", "in_channels": 1, "hidden_channels": 8, "num_layers": 3},
    "path": {"root": None},
    "train": {
        "optim": {"learning_rate": 2e-3},
        "scheduler": {"type": "cosine", "lr_warmup_steps": 2},
        "loss": "1*MSE",
        "batch_size": 8,
        "max_train_steps": 6,
        "validation_steps": 3,
        "checkpointing_steps": 3,
        "checkpoints_total_limit": 2,
    },
    "val": {"batch_size": 8, "metrics": {"psnr": {"crop": 0, "data_range": 1.0}, "ssim": {"crop": 0}}},
}


@pytest.fixture
def tiny_config(tmp_path):
    config = copy.deepcopy(TINY_DENOISE)
    config["path"]["root"] = str(tmp_path / "experiments")
    return config


def reset_accelerate():
    """Accelerate keeps process-wide singletons; each in-process run must start from a clean slate."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def write_config(config: dict, path) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return str(path)


def run_trainer(config: dict, tmp_path, *extra, name="exp.yml") -> int:
    """Run `trainer.py -opt <config> <extra>` in this process; returns the exit status."""
    import trainer

    path = write_config(config, tmp_path / name)
    try:
        return trainer.main(["-opt", path, *extra])
    finally:
        reset_accelerate()
        base = logging.getLogger("trainer")
        for handler in list(base.handlers):
            if isinstance(handler, logging.FileHandler):
                base.removeHandler(handler)
                handler.close()


def run_folder(config: dict) -> str:
    return os.path.join(config["path"]["root"], config["name"], config["experiment_key"])


def read_scalars(run_dir: str) -> dict[str, dict[int, float]]:
    """Every scalar of every TensorBoard event file under `run_dir`: {tag: {step: value}}; later files win."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(
        glob.glob(os.path.join(run_dir, "**", "events.out.tfevents.*"), recursive=True), key=os.path.getmtime
    ):
        acc = EventAccumulator(path)
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                scalars.setdefault(tag, {})[event.step] = event.value
    return scalars
