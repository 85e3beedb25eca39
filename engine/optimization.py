"""Optimizers, LR schedules, gradient clipping and EMA: everything that turns gradients into weights.

Who zeroes the gradients. The engine clears every optimizer's gradients after each optimizer update
(`clear_gradients`), so a model's step needs only `backward` and `step` (`BaseModel.step` does both).
Code written the seed's way also calls `zero_grad()` at the top of `optimize_parameters`; on the last
micro-batch of an accumulation window that call would throw away the window's earlier gradients
(Accelerate skips `zero_grad` on accumulating micro-steps, but not on the one that syncs). The
optimizers handed to a model are therefore `AccumulationSafeOptimizer`s (engine/seed_style.py),
whose `zero_grad` does nothing while gradients of earlier micro-batches are pending.
"""

import math
import warnings

import torch
from diffusers.optimization import get_scheduler

from engine.seed_style import AccumulationSafeOptimizer
from utils.config.scheduler import check_polynomial_rate
from utils.errors import ConfigError


def prepare_optimizer(accelerator, optimizer: torch.optim.Optimizer) -> AccumulationSafeOptimizer:
    """What `Accelerator.prepare_optimizer` does, with our wrapper class: the accelerator then saves,
    loads and scales it like its own."""
    prepared = AccumulationSafeOptimizer(
        optimizer, device_placement=accelerator.device_placement, scaler=accelerator.scaler
    )
    accelerator._optimizers.append(prepared)
    return prepared


def clear_gradients(optimizers, synced: bool) -> None:
    """After each micro-batch: clear the gradients once they have been used by an update."""
    for optimizer in optimizers:
        optimizer.gradients_pending = not synced
        if synced:
            optimizer.optimizer.zero_grad(set_to_none=True)


def make_optimizer(opt, accelerator, params, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW (or bitsandbytes' 8-bit AdamW) with the `train.optim` settings."""
    optim = opt["train"]["optim"]
    lr = optim["learning_rate"] if lr is None else lr
    if optim["scale_lr"]:
        lr *= (
            opt["train"]["batch_size"]
            * opt["train"]["gradient_accumulation_steps"]
            * accelerator.num_processes
        )
    kwargs = dict(
        lr=lr,
        betas=(optim["adam_beta1"], optim["adam_beta2"]),
        weight_decay=optim["adam_weight_decay"],
        eps=optim["adam_epsilon"],
    )
    kernel = optim.get("implementation", "auto")
    if optim["use_8bit_adam"]:
        if kernel != "auto":
            raise ConfigError(
                f"'train.optim.implementation' is '{kernel}' but 'train.optim.use_8bit_adam' is true; "
                "bitsandbytes' 8-bit AdamW has its own kernel, so leave 'implementation' at 'auto'."
            )
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError(
                "'train.optim.use_8bit_adam' is true but bitsandbytes is not installed (pip install bitsandbytes)."
            ) from None
        return bnb.optim.AdamW8bit(params, **kwargs)
    if kernel == "fused" and opt.get("mixed_precision") == "fp16":
        # fp16's grad scaler hands a fused AdamW its gradients still scaled, and the clipping before the
        # step (GradientGuard) would then clip the scaled norm.
        raise ConfigError(
            "'train.optim.implementation' is 'fused' with 'mixed_precision: fp16', whose scaled gradients "
            "it would clip wrongly; use 'foreach', or bf16."
        )
    if kernel != "auto":  # `auto` passes neither flag: torch picks (the for-loop on CPU, foreach on CUDA)
        kwargs[kernel] = True
    return torch.optim.AdamW(params, **kwargs)


def make_scheduler(opt, optimizer, total_steps: int):
    """The `train.scheduler` LR schedule. We step it once per optimizer update ourselves: Accelerate's
    prepared scheduler steps once per process, which changes the schedule with the process count."""
    sched = opt["train"]["scheduler"]
    if sched["type"] == "polynomial":  # a model may give an optimizer its own rate (a GAN's train.lr_d)
        check_polynomial_rate(optimizer.defaults["lr"], "An optimizer's learning rate")
    return get_scheduler(
        sched["type"],
        optimizer=optimizer,
        num_warmup_steps=sched["lr_warmup_steps"],
        num_training_steps=total_steps,
        num_cycles=sched["lr_num_cycles"],
        power=sched["lr_power"],
    )


class GradientGuard:
    """Clips the gradients to `train.optim.max_grad_norm` just before each real optimizer step, records
    their norm, and drops them when they are not finite (AdamW then leaves those weights and moments
    untouched; the loop applies `train.nan_policy`). It runs as a step pre-hook, which Accelerate calls
    only on sync steps and, with fp16, after the grad scaler has unscaled the gradients.

    `on_device` (`train.log_every` above 1): with a fused AdamW the norm is not read back; the optimizer
    gets `found_inf`, on which its kernel leaves weights, moments and step count as they were, and
    `last_norm` reads the norm when it is logged. Other optimizers need the norm on the host to drop
    the gradients, so they read it back as before."""

    def __init__(self, max_norm: float | None, on_device: bool = False):
        self.max_norm = max_norm
        self.on_device = on_device
        self._norm = None

    @property
    def last_norm(self) -> float | None:
        return float(self._norm) if torch.is_tensor(self._norm) else self._norm

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_pre_hook(self)

    def __call__(self, optimizer, args, kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        if self.max_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if self.on_device and optimizer.defaults.get("fused"):
            self._norm = norm.detach()
            optimizer.found_inf = torch.logical_not(torch.isfinite(self._norm)).to(torch.float32)
            return
        self._norm = float(norm)
        if not math.isfinite(self._norm):
            for p in params:
                p.grad = None


def make_emas(ema_opt, archs, device) -> list:
    """One diffusers EMAModel per arch, when `train.ema` is set."""
    if ema_opt is None:
        return []
    from diffusers.training_utils import EMAModel  # imports bitsandbytes: only when EMA is on

    emas = [
        EMAModel(
            arch.parameters(),
            decay=ema_opt["decay"],
            update_after_step=ema_opt["update_after_step"],
            use_ema_warmup=ema_opt["use_ema_warmup"],
            inv_gamma=ema_opt["inv_gamma"],
            power=ema_opt["power"],
        )
        for arch in archs
    ]
    for ema in emas:
        ema.to(device)
    return emas


def advance_schedules(schedulers, emas, archs) -> None:
    """After an optimizer update: one step of every LR schedule and EMA."""
    with warnings.catch_warnings():
        # A GAN's discriminator schedule advances before its optimizer's first step (disc_start);
        # schedules follow the global step, so PyTorch's order warning is moot.
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*optimizer.step", category=UserWarning)
        for scheduler in schedulers:
            scheduler.step()
    for ema, arch in zip(emas, archs):
        ema.step(arch.parameters())
