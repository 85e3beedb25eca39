"""The training loop: micro-batches through the model's hooks, optimizer updates, validation, checkpoints.

for each micro-batch (resuming mid-epoch with `skip_first_batches`):
    with accelerator.accumulate(networks):  feed_data -> optimize_parameters
    clear gradients after an update; check the losses (train.nan_policy)
    on each update: LR schedules and EMA, log, checkpoint, stop on a signal, validate (every N steps, or
    at the end of every N-th epoch: utils/config/cadence.py)
validate once more if the last step did not; on_train_end; final save

`train.log_every` N above 1: the losses stay on the device and are read back, checked in step order
(a non-finite one is reported naming its own step, as with N = 1) and logged as means every N updates,
and before any checkpoint, validation or stop; in between no step waits for the device.
"""

import math
import signal
import time

import torch

from engine.checkpoints.checkpointing import final_folder, saving
from engine.checkpoints.store import staging_path
from engine.checkpoints.weights import save_final
from engine.divergence import SkippedSteps
from engine.loader_rng import seed_loader_for_epoch
from engine.optimization import advance_schedules, clear_gradients
from engine.run.signals import StopSignals
from engine.speed import channels_last_batch
from utils.cli.console import TrainingProgress
from utils.config.cadence import due
from utils.errors import NumericalError, PluginError
from utils.errors.batches import batch_errors, check_metric_crop


def _as_float(value) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def train(model) -> dict:
    """Train for `max_train_steps` optimizer steps; returns the last validation metrics."""
    accelerator, state, train_opt = model.accelerator, model.state, model.opt["train"]
    total_steps = model.max_train_steps
    samples_per_step = model.train_loader.total_batch_size * train_opt["gradient_accumulation_steps"]
    prepared = [handle.prepared for _, handle in model.named_networks]
    archs = [handle.arch for _, handle in model.named_networks]
    speed = StepSpeed(samples_per_step)
    # A bar with log lines routed through it on a terminal; plain lines every N steps into a file.
    progress = TrainingProgress(
        total_steps, state.global_step, accelerator.is_local_main_process, model.logger
    )
    last_validated, window, checked_crop = -1, [], False
    skipped = SkippedSteps(train_opt.get("max_consecutive_skipped_steps"))
    channels_last = train_opt.get("channels_last")
    every, pending, logged = train_opt.get("log_every", 1), [], state.global_step
    first_step = state.global_step + 1  # the first this start trains
    with StopSignals() as stop_signals, progress:
        while state.global_step < total_steps:
            model.train_loader.set_epoch(state.epoch)
            batches = model.train_loader
            if state.batches_in_epoch:
                batches = accelerator.skip_first_batches(model.train_loader, state.batches_in_epoch)
            # The loader's own (seed, epoch) generator: creating its iterator must not draw from torch's
            # global generator, or a resumed run's model noise is shifted by one draw.
            seed_loader_for_epoch(batches, model.opt["seed"], state.epoch)
            for batch in batches:
                if not checked_crop:  # once: the images' size is known from the first batch
                    check_metric_crop(model.opt, batch)
                    checked_crop = True
                if channels_last:
                    batch = channels_last_batch(batch)
                with accelerator.accumulate(*prepared), batch_errors(model.opt, "train", batch):
                    model.feed_data(batch, is_train=True)
                    losses = model.optimize_parameters()
                clear_gradients(model.optimizers, accelerator.sync_gradients)
                if every == 1:
                    check_losses(model, losses)
                    skipped.check(losses["all"], state.global_step + 1)
                else:
                    check_contract(model, losses)
                    losses = {k: v.detach() if torch.is_tensor(v) else v for k, v in losses.items()}
                    pending.append((state.global_step + 1, losses))
                window.append(losses)
                state.batches_in_epoch += 1
                if not accelerator.sync_gradients:
                    continue

                advance_schedules(model.schedulers, model.emas, archs)
                state.global_step += 1
                # The epoch's last batch always ends an accumulation window (Accelerate syncs there).
                at = (state.global_step, state.epoch, accelerator.gradient_state.end_of_dataloader)
                if every == 1:
                    logs = log_step(model, window, speed.update())
                    window = []
                    progress.update(state.global_step, logs["train/all"], logs["train/lr"], speed.rate)

                stop = stop_signals.requested(accelerator)
                if every > 1 and (
                    state.global_step % every == 0
                    or state.global_step >= total_steps
                    or stop
                    or due(train_opt, "checkpointing", *at)
                    or (due(train_opt, "validation", *at) and model.val_loader is not None)
                ):
                    for step, each in pending:  # in step order: the first non-finite loss is reported
                        check_pending_losses(model, each, step, first_step)
                        skipped.check(each["all"], step)
                    logs = log_step(model, window, speed.update(state.global_step - logged))
                    pending, window = [], []
                    for step in range(logged + 1, state.global_step + 1):
                        progress.update(step, logs["train/all"], logs["train/lr"], speed.rate)
                    logged = state.global_step
                if due(train_opt, "checkpointing", *at) or stop:
                    with saving(staging_path(model.run_dir, state.global_step), model.run_dir, archs):
                        model.save_checkpoint()  # a model may extend it
                if stop:
                    progress.close()
                    model.logger.info(
                        f"Stopped by {signal.Signals(stop).name} at step {state.global_step}; resume with "
                        f"path.resume_from_checkpoint: latest (experiment_key: {model.opt['experiment_key']})."
                    )
                    return model.last_metrics
                if due(train_opt, "validation", *at) and model.val_loader is not None:
                    model.validation()
                    last_validated = state.global_step
                if state.global_step >= total_steps:
                    break
            else:
                state.epoch += 1
                state.batches_in_epoch = 0

    if model.val_loader is not None and last_validated != state.global_step:
        model.validation()
    model.on_train_end()
    with saving(final_folder(model.run_dir), model.run_dir, archs):
        save_final(model)
    return model.last_metrics


def check_contract(model, losses) -> None:
    """The hook's contract: a dict of losses with 'all'."""
    if not isinstance(losses, dict) or "all" not in losses:
        got = sorted(losses) if isinstance(losses, dict) else type(losses).__name__
        raise PluginError(
            f"{type(model).__name__}.optimize_parameters() must return a dict of losses with the key 'all' "
            f"(the total that was back-propagated); it returned {got}."
        )


def check_losses(model, losses, step: int | None = None) -> None:
    """The hook's contract, then `train.nan_policy` on a loss that is not finite; `step` is the step the
    micro-batch trained (default: the one in progress)."""
    check_contract(model, losses)
    if math.isfinite(_as_float(losses["all"])):
        return
    # The optimizer step of this micro-batch was already dropped by the GradientGuard (its gradients
    # were not finite), so the weights are intact whatever the policy.
    step = model.global_step + 1 if step is None else step
    terms = ", ".join(f"{k}={_as_float(v):.4g}" for k, v in losses.items())
    if model.opt["train"]["nan_policy"] == "raise":
        raise NumericalError(
            f"The loss is not finite at step {step} ({terms}); set 'train.nan_policy: skip' to "
            "skip such steps, or lower the learning rate."
        )
    model.state.skipped_steps += 1
    model.logger.warning(f"Skipped step {step}: the loss is not finite ({terms}).")


def check_pending_losses(model, losses, step: int, first_step: int) -> None:
    """`check_losses` on losses read back after their step (`train.log_every` above 1). A loss that was not
    finite at the first step this start trained undoes the start, as it does when read back at once:
    nothing of it was logged or saved, and the corrected rerun must not be refused as a second run."""
    try:
        check_losses(model, losses, step)
    except NumericalError as error:
        error.undo_run = step == first_step
        raise


class StepSpeed:
    """Samples per second over optimizer steps, smoothed (the first step's rate as it is)."""

    def __init__(self, samples_per_step: int):
        self.samples_per_step = samples_per_step
        self.started = time.perf_counter()
        self.rate = None

    def update(self, steps: int = 1) -> float:
        now = time.perf_counter()
        rate = self.samples_per_step * steps / max(now - self.started, 1e-9)
        self.rate = rate if self.rate is None else 0.9 * self.rate + 0.1 * rate
        self.started = now
        return self.rate


def log_step(model, window: list[dict], speed: float) -> dict:
    """The mean of each loss term over the window (the micro-batches since the last log), the LR, the
    speed, to every tracker."""
    logs = {f"train/{k}": sum(_as_float(w[k]) for w in window) / len(window) for k in window[-1]}
    logs["train/lr"] = model.schedulers[0].get_last_lr()[0] if model.schedulers else 0.0
    if model.opt["train"]["check_speed"]:
        logs["train/samples_per_second"] = speed
    if model.gradient_guard.last_norm is not None:
        logs["train/grad_norm"] = model.gradient_guard.last_norm
    if model.state.skipped_steps:
        logs["train/skipped_steps"] = model.state.skipped_steps
    model.accelerator.log(logs, step=model.global_step)
    return logs
