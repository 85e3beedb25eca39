"""Validation during training, and `-test` (one validation pass, a metrics table and a JSON summary)."""

import json
import os

import torch

from engine.checkpoints.weights import ema_weights
from engine.seed_style import tracker_logs_into, validate_step_caller
from utils.errors.batches import batch_errors
from utils.misc import log_metric


def validate(model, max_batches: int | None) -> dict[str, float]:
    """Run `validate_step` over the validation loader with the EMA weights, in eval mode and without
    gradients, in a forked RNG so that validation never changes the training's random stream. What the
    model logs meanwhile is averaged over the pass (engine/model_log.py) and logged once, here."""
    accelerator = model.accelerator
    archs = [handle.arch for _, handle in model.named_networks]
    modes = {m: m.training for arch in archs for m in arch.modules()}
    for arch in archs:
        arch.eval()
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=devices),
        ema_weights(model.emas, archs),
        torch.no_grad(),
        model.run_log.validation_pass() as validation_pass,
        tracker_logs_into(accelerator, validation_pass),
    ):
        torch.manual_seed(model.opt["seed"])
        validate_step = validate_step_caller(model)
        for i, batch in enumerate(model.val_loader):
            if max_batches is not None and i >= max_batches:
                break
            with batch_errors(model.opt, "val", batch), validation_pass.batch(batch):
                validate_step(batch, validation_pass)
    for module, was_training in modes.items():
        module.training = was_training
    metrics = reduce_summary(accelerator, validation_pass.summary)
    model.run_log.non_finite = validation_pass.summary.non_finite - set(metrics)  # no finite batch at all
    if metrics:
        log_metric(accelerator, metrics, model.global_step)
        model.logger.info(
            f"step {model.global_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        )
    return metrics


def reduce_summary(accelerator, summary) -> dict[str, float]:
    """Sample-weighted means over every process's validation batches."""
    keys = sorted(summary.sums)
    if accelerator.num_processes > 1:
        gathered = [None] * accelerator.num_processes
        torch.distributed.all_gather_object(gathered, keys)
        keys = sorted({k for ks in gathered for k in ks})
    if not keys:
        return {}
    device = accelerator.device
    sums = torch.tensor([summary.sums.get(k, 0.0) for k in keys], dtype=torch.float64, device=device)
    counts = torch.tensor([summary.counts.get(k, 0.0) for k in keys], dtype=torch.float64, device=device)
    if accelerator.num_processes > 1:
        sums, counts = accelerator.reduce(sums, "sum"), accelerator.reduce(counts, "sum")
    return {k: float(s / c) for k, s, c in zip(keys, sums.tolist(), counts.tolist()) if c}


def named_for_scored_set(model, metrics: dict[str, float]) -> dict[str, float]:
    """Metrics of `datasets.test` named `test_*` (models log them as `val_*`), so no one reads a test
    score as a validation score; metrics of `datasets.val` unchanged."""
    if model.evaluated_set != "test":
        return metrics
    return {("test_" + k[4:] if k.startswith("val_") else k): v for k, v in metrics.items()}


def write_test_summary(model, weights: str | None, metrics: dict[str, float]) -> str:
    """`test_metrics.json` in the run folder, and the metrics as a table on stdout (main process); both
    name the `datasets` block scored."""
    out = os.path.join(model.run_dir, "test_metrics.json")
    scored = model.evaluated_set
    if not model.accelerator.is_main_process:
        return out
    with open(out, "w") as f:
        json.dump({"weights": weights, "dataset": f"datasets.{scored}", "metrics": metrics}, f, indent=2)
    width = max([len(k) for k in metrics] + [6])
    table = [f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
    table += [f"{k:<{width}}  {v:.6g}" for k, v in sorted(metrics.items())]
    note = "" if scored == "test" else " (the YAML has no datasets.test block)"
    print(f"Scored datasets.{scored}{note}:")
    print("\n".join(table))
    print(f"Metrics written to {out}")
    return out
