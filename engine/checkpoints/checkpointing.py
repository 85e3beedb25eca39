"""Checkpoints of a running training, and resuming from one.

A checkpoint is Accelerate's `save_state` (weights, optimizer moments, RNG states, grad scaler) plus
the loop's position, LR schedules and EMAs as JSON and safetensors (engine/checkpoints/training_state.py), a
`save_pretrained` copy of each network with the run's `config.yml` (and what the model saves beside
them), published atomically (engine/checkpoints/store.py) and then rotated to
`train.checkpoints_total_limit`. Resuming only reads; what a resumed branch does to the newer
checkpoints of the run folder happens when the run folder is committed (engine/run/folder.py).
"""

import os

from engine.checkpoints.store import (
    checkpoint_bytes,
    list_checkpoints,
    publish,
    resolve_checkpoint,
    rotate,
    staging_path,
)
from engine.checkpoints.training_state import load_training_state, save_training_state
from utils.errors import ConfigError
from utils.errors.files import file_errors


def save_checkpoint(model) -> str:
    """Write `checkpoint-<step>` of the current step; returns its folder."""
    accelerator = model.accelerator
    staging = staging_path(model.run_dir, model.global_step)
    accelerator.save_state(staging)
    if accelerator.is_main_process:
        save_training_state(staging, model.state.state_dict(), model.schedulers, model.emas)
    model.save_archs(staging)  # a model may extend it (the VAE stores its scale factor first)
    accelerator.wait_for_everyone()
    final = staging[: -len(".tmp")]
    if accelerator.is_main_process:
        final = publish(staging)
        removed = rotate(model.run_dir, model.opt["train"]["checkpoints_total_limit"], keep_path=final)
        model.logger.info(
            f"Saved {final}" + (f"; removed {len(removed)} old checkpoint(s)" if removed else "")
        )
    accelerator.wait_for_everyone()
    return final


def saving(folder: str, run_dir: str, archs: list):
    """`with saving(folder, run_dir, archs):` around a save: a full disk, a permission or a read-only file system
    becomes one sentence naming `folder` and the space needed; a half-written `.tmp` folder is removed,
    so the previous checkpoint stays the `latest`."""
    cleanup = folder if folder.endswith(".tmp") else None
    return file_errors(folder, lambda: checkpoint_bytes(run_dir, archs), cleanup=cleanup)


def final_folder(run_dir: str) -> str:
    return os.path.join(run_dir, "final")


def find_resume_checkpoint(model) -> str | None:
    """The checkpoint `path.resume_from_checkpoint` names, or None (not set, or `latest` found none)."""
    path_opt = model.opt["path"]
    setting = path_opt.get("resume_from_checkpoint")
    if not setting:
        return None
    search = path_opt.get("resume_from_path") or model.run_dir
    path = resolve_checkpoint(setting, search)
    if path is None:
        hint = (
            " ('experiment_key' is not set, so this run has a new folder: set it to the run to resume)"
            if model.run_folder.auto_experiment_key and not path_opt.get("resume_from_path")
            else ""
        )
        model.logger.info(f"No checkpoint in {search} to resume from; starting from step 0{hint}.")
    return path


def load_checkpoint(model, path: str) -> None:
    """Restore weights, optimizers, RNGs, LR schedules, EMAs and the loop's position from `path`."""
    try:
        model.accelerator.load_state(path)
        model.state.load_state_dict(load_training_state(path, model.schedulers, model.emas))
    except Exception as error:
        raise ConfigError(f"Cannot resume from '{path}': {type(error).__name__}: {error}") from error
    model.logger.info(
        f"Resumed from {path} at step {model.global_step} (epoch {model.state.epoch}, "
        f"batch {model.state.batches_in_epoch})."
    )


def branch_point(run_dir: str, step: int, path: str | None) -> int | None:
    """The resumed step when this run folder holds newer checkpoints (resuming it starts a branch),
    whether the checkpoint came from this folder or from `path.resume_from_path`."""
    if path is None:
        return None
    newer = [s for s, _ in list_checkpoints(run_dir) if s > step]
    return step if newer else None
