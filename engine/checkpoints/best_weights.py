"""`<run>/best/`: the networks at their best validation score, kept beside the last ones.

With `train.best_metric: val_psnr` (and `train.best_mode: max`, or `min` for a loss), every validation
that improves on the best score so far writes `<run>/best/` as `final/` is written, plus `best.json`
(the step, the metric, its value, every metric of that validation). So `-test`
(`path.pretrained: <run>/best`) and the scripts take it like `final/`. A validation at which the metric
is not finite (or not reported) is one warning, and best/ stays as it was; the name itself is checked at
start (engine/checkpoints/best_metric.py).
"""

import json
import math
import os
import shutil

from accelerate.utils import broadcast_object_list

from engine.checkpoints.best_metric import declared_names
from engine.checkpoints.store import list_checkpoints
from utils.errors import ConfigError, did_you_mean

MODES = ("max", "min")


def _paths(run_dir: str) -> tuple[str, str, str]:
    best = os.path.join(run_dir, "best")
    return best, best + ".tmp", best + ".old"


def recover(run_dir: str) -> None:
    """Put back a best.old/ that a kill between the two renames left without best/; drop a stale best.tmp/."""
    best, tmp, old = _paths(run_dir)
    if os.path.isdir(old) and not os.path.isdir(best):
        os.replace(old, best)
    for stale in (tmp, old):
        if os.path.isdir(stale):
            shutil.rmtree(stale, ignore_errors=True)


def best_record(run_dir: str) -> dict | None:
    """`best.json` of `<run>/best/`: the step, the metric, its value; None before the first best."""
    path = os.path.join(_paths(run_dir)[0], "best.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def best_score(run_dir: str) -> float | None:
    record = best_record(run_dir)
    return None if record is None else float(record["value"])


def best_so_far(model, name: str, mode: str) -> float | None:
    """The score `<run>/best/` holds, or the best a restored checkpoint brought when that is better
    (engine/checkpoints/restored_state.py)."""
    best, restored = best_score(model.run_dir), model.restored_best
    if restored and restored["metric"] == name and restored["mode"] == mode:
        if is_better(float(restored["value"]), best, mode):
            return float(restored["value"])
    return best


def is_better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def update_best_weights(model, metrics: dict[str, float]) -> bool:
    """After a validation: rewrite `<run>/best/` when `metrics` beat the best so far; True when it did.

    best/ holds each network's `save_pretrained` (EMA weights when on) and whatever the model's
    `save_archs` adds (the LDM's `ldm.json` and `scheduler/`), `config.yml`, `metrics.json` and
    `best.json`. It is written as `best.tmp/`, then swapped in with two renames (`best/` -> `best.old/`,
    `best.tmp/` -> `best/`): a kill at any moment leaves a complete best/ or a complete best.old/, which
    the next update puts back (`recover`). The best score is read back from `best.json`, so a resumed
    run only replaces best/ with a better validation."""
    train = model.opt["train"]
    name = train.get("best_metric")
    if not name or not model.is_train or not metrics:
        return False
    mode = train.get("best_mode", "max")
    if mode not in MODES:
        raise ConfigError(f"'train.best_mode' is {mode!r}; use max (a score such as PSNR) or min (a loss).")
    if name not in metrics or not math.isfinite(float(metrics[name])):
        _report_unusable(model, name, metrics)
        return False
    accelerator = model.accelerator
    value = float(metrics[name])
    # Decided on the main process alone, which owns best/: another process reading best.json while
    # the main one swaps it could decide otherwise and wait at a barrier the main one never reaches.
    better = [None]
    if accelerator.is_main_process:
        recover(model.run_dir)
        better = [is_better(value, best_so_far(model, name, mode), mode)]
    if accelerator.num_processes > 1:
        broadcast_object_list(better)
    if not better[0]:
        return False
    best, tmp, old = _paths(model.run_dir)
    model.save_archs(tmp)  # EMA weights when on, and what the model saves beside them
    if accelerator.is_main_process:
        with open(os.path.join(tmp, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        record = {"step": model.global_step, "metric": name, "mode": mode, "value": value, "metrics": metrics}
        with open(os.path.join(tmp, "best.json"), "w") as f:
            json.dump(record, f, indent=2)
        if os.path.isdir(best):
            os.replace(best, old)
        os.replace(tmp, best)
        shutil.rmtree(old, ignore_errors=True)
        model.logger.info(f"New best {name} {value:.4f} at step {model.global_step}: saved {best}.")
    accelerator.wait_for_everyone()
    return True


def _report_unusable(model, name: str, metrics: dict[str, float]) -> None:
    """A validation without a finite `best_metric`: one warning line and training goes on, best/ as it
    was. A name the model never declared (it could not say at start) is a config mistake instead."""
    declared = declared_names(model)
    if name in metrics or (declared is not None and name in declared):
        if not model.accelerator.is_main_process:
            return
        value = "not finite" if name in model.run_log.non_finite else metrics.get(name, "not reported")
        record = best_record(model.run_dir)
        kept = "best/ is not written yet"
        if record is not None:
            kept = f"best/ keeps step {record['step']} ({name} {float(record['value']):.4f})"
        model.logger.warning(
            f"step {model.global_step}: 'train.best_metric' {name} is {value} at this validation; "
            f"{kept} and training goes on."
        )
        return
    error = ConfigError(
        f"'train.best_metric' is '{name}'{did_you_mean(name, metrics)}, which this validation does not "
        f"report; it reports: {', '.join(sorted(metrics))}{_how_to_continue(model)}."
    )
    error.undo_run = not list_checkpoints(model.run_dir)  # nothing worth keeping: undone like a failed start
    raise error


def _how_to_continue(model) -> str:
    if not list_checkpoints(model.run_dir):
        return ""
    return " (correct it and continue this run with 'path.resume_from_checkpoint: latest')"
