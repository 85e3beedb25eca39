"""Running the trainer in this process on a tiny config, and reading what a run wrote."""

import glob
import logging
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def record_validations(monkeypatch) -> list[tuple[set | None, set]]:
    """(declared, reported) names of every validation of the runs started afterwards in this test."""
    from engine.base_model import BaseModel

    seen = []
    validation = BaseModel.validation

    def recording(self, max_batches=-1):
        metrics = validation(self, max_batches)
        seen.append((self.validation_metric_names(), set(metrics)))
        return metrics

    monkeypatch.setattr(BaseModel, "validation", recording)
    return seen
