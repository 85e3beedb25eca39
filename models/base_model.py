"""BaseModel: the Accelerate training loop that every model plugin subclasses.

A subclass builds its networks in `__init__` (with `define_network`) and appends them to
`self.models`, then fills four hooks, as seed 003's roadmap describes:

- `setup_dataloaders()`      builds `self.train_loader` / `self.val_loader` (the default reads `datasets`)
- `feed_data(data, is_train)` puts the batch into `self.sample`
- `optimize_parameters()`    zeroes the gradients, calls `self.accelerator.backward(loss)`, steps
                             `self.optimizers`, and returns a dict of losses with the key `'all'`
- `validate_step(batch, idx, lq_key, gt_key)` evaluates one batch, logs images and metrics through
                             `utils`, and returns the next idx

Everything else happens here: the Accelerator (mixed precision, gradient accumulation, DDP),
optimizers and LR schedules, EMA, trackers, checkpoints and resume, validation, the final save and
the Hub push. Each call of `optimize_parameters` runs inside `accelerator.accumulate`, so code written
the seed's way accumulates and synchronises gradients correctly: on steps that only accumulate,
Accelerate's optimizer wrappers skip `step()` and `zero_grad()`.

Models with more than one optimizer (a GAN's discriminator) override `build_optimizers()` and return
one optimizer per parameter group, made with `self.make_optimizer(params, lr=...)`; each gets its own
LR schedule, and all are checkpointed.
"""

import json
import logging
import math
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import datetime

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    ProjectConfiguration,
    broadcast_object_list,
    set_seed,
)
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dataset import create_dataset, find_dataset_class
from models.prepared_network import MethodDispatch, PreparedNetwork
from utils.best_weights import update_best_weights
from utils.checkpoint import publish, resolve_checkpoint, rotate, staging_path
from utils.errors import ConfigError, NumericalError, PluginError
from utils.loader_rng import seed_loader_for_epoch
from utils.misc import collect_metrics, log_metric
from utils.options import flatten, redact_secrets, save_options
from utils.run_dir import run_dir, safe_name
from utils.trackers import comet_init_kwargs, requested_trackers
from utils.training_state import load_training_state, save_training_state


def _as_float(value) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


class TrainingState:
    """Where the loop stands, saved with every checkpoint so that a resumed run continues mid-epoch."""

    def __init__(self):
        self.global_step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.skipped_steps = 0

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        for key in vars(self):
            setattr(self, key, int(state.get(key, 0)))


class BaseModel:
    # Keys this model reads from the trainer's own blocks, e.g. {"train": {"kl_weight"}}: declaring them
    # lets the config check catch their typos too (see utils/config_check.py).
    config_keys: dict[str, set[str]] = {}

    def __init__(self, opt, logger):
        self.opt = opt
        self.logger = logger
        self.is_train = bool(opt.get("is_train", True))
        train = opt["train"]

        # The run folder must be the same on every process: the timestamp of an unnamed run is
        # chosen once on the main process and broadcast (PSF_Densify made one folder per process).
        state = PartialState(cpu=self._multi_process_cpu())
        if not opt.get("experiment_key"):
            stamp = [datetime.now().strftime("%Y%m%d-%H%M%S") if state.is_main_process else None]
            if state.num_processes > 1:
                broadcast_object_list(stamp)
            opt["experiment_key"] = ("test-" if not self.is_train else "") + stamp[0]
            self._auto_experiment_key = True
        else:
            self._auto_experiment_key = False
        self.run_dir = run_dir(opt)
        self._claim_run_dir(state)

        self.accelerator = Accelerator(
            cpu=self._multi_process_cpu(),
            gradient_accumulation_steps=train["gradient_accumulation_steps"],
            mixed_precision=opt["mixed_precision"],
            log_with=requested_trackers(opt["report_to"]) or None,
            project_config=ProjectConfiguration(
                project_dir=self.run_dir, logging_dir=os.path.join(self.run_dir, opt["path"]["logging_dir"])
            ),
            # Seedable samplers make every epoch's order a function of (seed, epoch), so a resumed run
            # sees exactly the batches an uninterrupted one would.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            kwargs_handlers=[
                DistributedDataParallelKwargs(find_unused_parameters=train["find_unused_parameters"])
            ],
        )
        if not self.accelerator.is_main_process:
            self.logger.setLevel(logging.WARNING)  # one voice: the main process narrates the run
        self._add_file_log()
        set_seed(opt["seed"])
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = bool(opt["allow_tf32"])
            torch.backends.cudnn.allow_tf32 = bool(opt["allow_tf32"])

        self.models = []  # the networks to train, appended by the subclass
        self.optimizers = []
        self.schedulers = []
        self.emas = []
        self.sample = {}
        self.train_loader = None
        self.val_loader = None
        self.state = TrainingState()
        self._archs = []
        self._arch_names = []
        self._is_set_up = False
        self.last_metrics = {}

    @staticmethod
    def _multi_process_cpu() -> bool:
        """True under torchrun on a machine without GPUs: Accelerate then needs `cpu=True` to use gloo
        (otherwise every process believes it is alone and they all train on their own)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        return world_size > 1 and not torch.cuda.is_available()

    # ------------------------------------------------------------------ hooks for subclasses

    def setup_dataloaders(self):
        """Build `self.train_loader` and `self.val_loader` from the `datasets` block."""
        datasets = self.opt["datasets"]
        if "train" in datasets and self.is_train:
            self.train_loader = self.build_dataloader("train")
        if "val" in datasets:
            self.val_loader = self.build_dataloader("val")

    def feed_data(self, data, is_train=True):
        self.sample = data

    def optimize_parameters(self):
        raise NotImplementedError(
            f"{type(self).__name__} must define optimize_parameters(): zero the gradients, call "
            "self.accelerator.backward(loss), step self.optimizers and return {'all': loss, ...}."
        )

    def validate_step(self, batch, idx, lq_key, gt_key):
        raise NotImplementedError(
            f"{type(self).__name__} must define validate_step(batch, idx, lq_key, gt_key)."
        )

    def on_train_end(self):
        """Called once after the last step and validation, before the final save: a model can store
        values measured on the trained weights in its arch's config (the VAE's latent scale factor)."""

    def build_optimizers(self) -> list:
        """One AdamW over every trainable parameter of `self.models`. Override for several optimizers."""
        params = [p for arch in self._archs for p in arch.parameters() if p.requires_grad]
        if not params:
            raise PluginError(f"{type(self).__name__}.models holds no trainable parameters.")
        return [self.make_optimizer(params)]

    # ------------------------------------------------------------------ building blocks

    def build_dataloader(self, phase: str) -> DataLoader:
        block = self.opt["datasets"][phase]
        # Datasets that split one folder into train and val write the split into the run folder and
        # reread it on resume; they learn their phase from the block's name.
        block["phase"] = phase
        if "split_file" in getattr(find_dataset_class(block["type"]), "config_keys", ()) and not block.get(
            "split_file"
        ):
            block["split_file"] = os.path.join(self.run_dir, f"split_{safe_name(block['type'])}.json")
        dataset = create_dataset(block)
        is_train = phase == "train"
        batch_size = block.get("batch_size") or (
            self.opt["train"]["batch_size"] if is_train else self.opt["val"]["batch_size"]
        )
        shuffle = block.get("use_shuffle")
        drop_last = block.get("drop_last")
        workers = block.get("num_workers", 0)
        sampler = None
        if is_train and hasattr(dataset, "sample_weights") and dataset.sample_weights() is not None:
            generator = torch.Generator().manual_seed(self.opt["seed"])
            weights = torch.as_tensor(dataset.sample_weights(), dtype=torch.double)
            sampler = torch.utils.data.WeightedRandomSampler(weights, len(weights), generator=generator)
            shuffle = False
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=is_train if shuffle is None else shuffle,
            sampler=sampler,
            drop_last=(is_train and len(dataset) >= batch_size) if drop_last is None else drop_last,
            num_workers=workers,
            pin_memory=block.get("pin_memory", False),
            persistent_workers=bool(block.get("persistent_workers")) and workers > 0,
            prefetch_factor=block.get("prefetch_factor") if workers > 0 else None,
        )

    def make_optimizer(self, params, lr: float | None = None) -> torch.optim.Optimizer:
        """AdamW (or bitsandbytes' 8-bit AdamW) with the `train.optim` settings."""
        optim = self.opt["train"]["optim"]
        lr = optim["learning_rate"] if lr is None else lr
        if optim["scale_lr"]:
            lr *= (
                self.opt["train"]["batch_size"]
                * self.opt["train"]["gradient_accumulation_steps"]
                * self.accelerator.num_processes
            )
        kwargs = dict(
            lr=lr,
            betas=(optim["adam_beta1"], optim["adam_beta2"]),
            weight_decay=optim["adam_weight_decay"],
            eps=optim["adam_epsilon"],
        )
        if optim["use_8bit_adam"]:
            try:
                import bitsandbytes as bnb
            except ImportError:
                raise ConfigError(
                    "'train.optim.use_8bit_adam' is true but bitsandbytes is not installed (pip install bitsandbytes)."
                ) from None
            return bnb.optim.AdamW8bit(params, **kwargs)
        return torch.optim.AdamW(params, **kwargs)

    @property
    def max_train_steps(self) -> int:
        """Optimizer steps to train: `max_train_steps`, or `num_train_epochs` worth of updates."""
        train = self.opt["train"]
        if train.get("max_train_steps"):
            return int(train["max_train_steps"])
        updates_per_epoch = math.ceil(len(self.train_loader) / train["gradient_accumulation_steps"])
        return int(train["num_train_epochs"]) * updates_per_epoch

    @property
    def global_step(self) -> int:
        return self.state.global_step

    @global_step.setter
    def global_step(self, value: int) -> None:
        self.state.global_step = value

    # ------------------------------------------------------------------ set-up after the subclass __init__

    def _setup(self):
        """Everything that needs the subclass's networks: optimizers, EMA, prepare, trackers, weights."""
        if self._is_set_up:
            return
        self._is_set_up = True
        self.setup_dataloaders()
        if not self.models:
            raise PluginError(
                f"{type(self).__name__} appended no network to self.models; build one with "
                "define_network(opt.network) and do self.models.append(net) in __init__."
            )
        self._archs = list(self.models)
        self._arch_names = self._name_archs()

        pretrained = self.opt["path"].get("pretrained")
        if pretrained:
            self.load_pretrained(pretrained)

        if self.is_train:
            if self.train_loader is None:
                raise ConfigError("Training needs a 'datasets.train' block (or use -test to validate only).")
            if not self.optimizers:
                self.optimizers = list(self.build_optimizers())
            for optimizer in self.optimizers:
                optimizer.register_step_pre_hook(self._before_optimizer_step)
            self.schedulers = [self._make_scheduler(o) for o in self.optimizers]

        dispatchers = [MethodDispatch(arch) for arch in self._archs]
        prepared = self.accelerator.prepare(*dispatchers, *self.optimizers)
        prepared = prepared if isinstance(prepared, (list, tuple)) else [prepared]
        self._prepared = list(prepared[: len(dispatchers)])
        self.optimizers = list(prepared[len(dispatchers) :])
        for optimizer in self.optimizers:
            self._keep_gradients_mid_window(optimizer)
        if self.train_loader is not None:
            self.train_loader = self.accelerator.prepare(self.train_loader)
        if self.val_loader is not None:
            self.val_loader = self.accelerator.prepare(self.val_loader)
        self._rebind_networks()

        ema_opt = self.opt["train"].get("ema")
        if ema_opt is not None:
            from diffusers.training_utils import EMAModel  # imports bitsandbytes: only when EMA is on

            self.emas = [
                EMAModel(
                    arch.parameters(),
                    decay=ema_opt["decay"],
                    update_after_step=ema_opt["update_after_step"],
                    use_ema_warmup=ema_opt["use_ema_warmup"],
                    inv_gamma=ema_opt["inv_gamma"],
                    power=ema_opt["power"],
                )
                for arch in self._archs
            ]
            for ema in self.emas:
                ema.to(self.accelerator.device)
        # LR schedules are stepped by us, once per optimizer update (Accelerate's prepared scheduler steps
        # once per process, which changes the schedule with the process count); they, the EMAs and the
        # loop's position are checkpointed by utils/training_state.py, without pickle.

        if self.accelerator.is_main_process:
            save_options(self.opt, os.path.join(self.run_dir, "config.yml"))
            config = {
                k: v if isinstance(v, (int, float, str, bool)) else str(v)
                for k, v in flatten(redact_secrets(self.opt.to_dict())).items()
            }
            init_kwargs = {}
            if "comet_ml" in requested_trackers(self.opt["report_to"]):
                init_kwargs["comet_ml"] = comet_init_kwargs(
                    self.run_dir, self.opt["experiment_key"], self.logger
                )
            project = self.opt.get("tracker_project_name") or self.opt["name"]
            self.accelerator.init_trackers(safe_name(project), config=config, init_kwargs=init_kwargs)
        self.accelerator.wait_for_everyone()

    def _name_archs(self) -> list[str]:
        """A folder name per arch: the attribute that holds it (`net_g`), else `model_<i>`."""
        names = []
        for i, arch in enumerate(self._archs):
            attrs = [k for k, v in vars(self).items() if v is arch and k != "models"]
            name = attrs[0] if attrs else f"model_{i}"
            names.append(name if name not in names else f"{name}_{i}")
        return names

    def _rebind_networks(self):
        """Point the model's attributes at the prepared networks (see models/prepared_network.py)."""
        proxies = [PreparedNetwork(p, a) for p, a in zip(self._prepared, self._archs)]
        by_id = {id(a): proxy for a, proxy in zip(self._archs, proxies)}
        for key, value in list(vars(self).items()):
            if id(value) in by_id and key != "_archs":
                setattr(self, key, by_id[id(value)])
        self.models = proxies

    def _make_scheduler(self, optimizer):
        sched = self.opt["train"]["scheduler"]
        return get_scheduler(
            sched["type"],
            optimizer=optimizer,
            num_warmup_steps=sched["lr_warmup_steps"],
            num_training_steps=self.max_train_steps,
            num_cycles=sched["lr_num_cycles"],
            power=sched["lr_power"],
        )

    def _keep_gradients_mid_window(self, optimizer):
        """Make `zero_grad()` harmless in the middle of a gradient-accumulation window.

        Seed 003's models call `zero_grad()` at the start of every `optimize_parameters()`. Accelerate
        skips it on accumulating micro-steps but not on the last one, which would throw away the
        gradients of the window's earlier micro-batches. So a `zero_grad()` is ignored while gradients
        of earlier micro-steps are waiting; the loop clears them itself after every optimizer step.
        """
        accelerated_zero_grad = optimizer.zero_grad
        optimizer.mid_window = False

        def zero_grad(set_to_none: bool = True):
            if not optimizer.mid_window:
                accelerated_zero_grad(set_to_none=set_to_none)

        optimizer.zero_grad = zero_grad

    def _end_micro_step(self, sync: bool):
        for optimizer in self.optimizers:
            optimizer.mid_window = not sync
            if sync:
                optimizer.optimizer.zero_grad(set_to_none=True)

    def _before_optimizer_step(self, optimizer, args, kwargs):
        # Runs just before the real optimizer step, which Accelerate only calls on sync steps and, with
        # fp16, after the grad scaler has unscaled the gradients (and skipped steps with inf gradients).
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        max_norm = self.opt["train"]["optim"]["max_grad_norm"]
        if max_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        self._grad_norm = float(norm)
        if not math.isfinite(self._grad_norm):
            # Dropping the gradients makes AdamW leave these weights and their moments untouched;
            # _check_losses then applies train.nan_policy.
            for p in params:
                p.grad = None

    # ------------------------------------------------------------------ run folder

    def _claim_run_dir(self, state):
        """Refuse to train into an existing run without resume: nothing on disk is overwritten."""
        path = self.opt["path"]
        exists = os.path.isdir(self.run_dir) and bool(os.listdir(self.run_dir))
        if self.is_train and exists and not path.get("resume_from_checkpoint"):
            raise ConfigError(
                f"The run folder '{self.run_dir}' already holds a run; set 'path.resume_from_checkpoint: latest' "
                "to continue it, or choose another 'experiment_key' or 'name'."
            )
        state.wait_for_everyone()  # everyone has looked before the main process creates it
        if state.is_main_process:
            os.makedirs(self.run_dir, exist_ok=True)
        state.wait_for_everyone()

    def _add_file_log(self):
        if self.accelerator.is_main_process:
            handler = logging.FileHandler(os.path.join(self.run_dir, "train.log"))
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            base = getattr(self.logger, "logger", self.logger)
            base.addHandler(handler)

    # ------------------------------------------------------------------ weights

    def load_pretrained(self, folder: str):
        """Load each arch's weights from `folder/<name>/` (a `final/` or `checkpoint-N` folder)."""
        if not os.path.isdir(folder):
            raise ConfigError(f"'path.pretrained' is '{folder}', which is not a folder.")
        for name, arch in zip(self._arch_names, self._archs):
            sub = os.path.join(folder, name)
            if not os.path.isdir(sub) and len(self._archs) == 1:
                sub = folder  # a bare save_pretrained folder of the only arch
            weights = os.path.join(sub, "model.safetensors")
            if not os.path.isfile(weights):
                raise ConfigError(
                    f"No weights for '{name}' in '{folder}': expected '{weights}' "
                    f"(a run's final/ or checkpoint-N folder holds one subfolder per network: "
                    f"{', '.join(self._arch_names)})."
                )
            try:
                missing, unexpected = arch.load_state_dict(load_file(weights), strict=False)
            except RuntimeError as error:
                raise ConfigError(
                    f"The weights '{weights}' do not fit '{name}': {str(error).splitlines()[0]}"
                ) from None
            if missing or unexpected:
                raise ConfigError(
                    f"The weights '{weights}' do not fit '{name}': missing {sorted(missing)[:5]}, "
                    f"unexpected {sorted(unexpected)[:5]}."
                )
        self.logger.info(f"Loaded weights from {folder}.")

    @contextmanager
    def ema_weights(self):
        """Inside, the archs hold their EMA weights (when `train.ema` is on); outside, the trained ones."""
        for ema, arch in zip(self.emas, self._archs):
            ema.store(arch.parameters())
            ema.copy_to(arch.parameters())
        try:
            yield
        finally:
            for ema, arch in zip(self.emas, self._archs):
                ema.restore(arch.parameters())

    def save_archs(self, folder: str):
        """`save_pretrained` of every arch (EMA weights when on) into `folder/<name>/`; main process only."""
        if not self.accelerator.is_main_process:
            return
        with self.ema_weights():
            for name, arch in zip(self._arch_names, self._archs):
                arch.save_pretrained(os.path.join(folder, name))

    def save_checkpoint(self) -> str:
        staging = staging_path(self.run_dir, self.global_step)
        self.accelerator.save_state(staging)
        if self.accelerator.is_main_process:
            save_training_state(staging, self.state.state_dict(), self.schedulers, self.emas)
        self.save_archs(staging)
        self.accelerator.wait_for_everyone()
        final = staging[: -len(".tmp")]
        if self.accelerator.is_main_process:
            final = publish(staging)
            removed = rotate(self.run_dir, self.opt["train"]["checkpoints_total_limit"])
            self.logger.info(
                f"Saved {final}" + (f"; removed {len(removed)} old checkpoint(s)" if removed else "")
            )
        self.accelerator.wait_for_everyone()
        return final

    def resume(self) -> bool:
        setting = self.opt["path"].get("resume_from_checkpoint")
        if not setting:
            return False
        search = self.opt["path"].get("resume_from_path") or self.run_dir
        path = resolve_checkpoint(setting, search)
        if path is None:
            hint = (
                " ('experiment_key' is not set, so this run has a new folder: set it to the run to resume)"
                if self._auto_experiment_key and not self.opt["path"].get("resume_from_path")
                else ""
            )
            self.logger.info(f"No checkpoint in {search} to resume from; starting from step 0{hint}.")
            return False
        try:
            self.accelerator.load_state(path)
            self.state.load_state_dict(load_training_state(path, self.schedulers, self.emas))
        except Exception as error:
            raise ConfigError(f"Cannot resume from '{path}': {type(error).__name__}: {error}") from error
        self.logger.info(
            f"Resumed from {path} at step {self.global_step} (epoch {self.state.epoch}, "
            f"batch {self.state.batches_in_epoch})."
        )
        return True

    # ------------------------------------------------------------------ the loop

    def train(self):
        """Train for `max_train_steps` optimizer steps, validating, checkpointing, and saving at the end.

        SIGTERM (a cluster's preemption) or SIGINT (Ctrl-C) ends the run at the next step boundary with a
        checkpoint; a second Ctrl-C stops at once.
        """
        previous = self._catch_stop_signals()
        try:
            return self._train_loop()
        finally:
            if getattr(self, "_progress", None) is not None:
                self._progress.close()  # so that an error message starts on a line of its own
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _train_loop(self):
        self._setup()
        self.resume()
        train = self.opt["train"]
        total_steps = self.max_train_steps
        accumulation = train["gradient_accumulation_steps"]
        samples_per_step = self.train_loader.total_batch_size * accumulation
        progress = self._progress = tqdm(
            total=total_steps,
            initial=self.global_step,
            desc="train",
            disable=not self.accelerator.is_local_main_process,
            dynamic_ncols=True,
        )
        last_validated = -1
        window = []
        self._step_started, self._speed = time.perf_counter(), None
        while self.global_step < total_steps:
            self.train_loader.set_epoch(self.state.epoch)
            batches = self.train_loader
            if self.state.batches_in_epoch:
                batches = self.accelerator.skip_first_batches(self.train_loader, self.state.batches_in_epoch)
            seed_loader_for_epoch(batches, self.opt["seed"], self.state.epoch)  # hook: own loader RNG
            for batch in batches:
                with self.accelerator.accumulate(*self._prepared):
                    self.feed_data(batch, is_train=True)
                    losses = self.optimize_parameters()
                self._end_micro_step(self.accelerator.sync_gradients)
                self._check_losses(losses)
                window.append(losses)
                self.state.batches_in_epoch += 1
                if not self.accelerator.sync_gradients:
                    continue

                self._advance_schedules()
                self.global_step += 1
                logs = self._log_step(window, samples_per_step)
                window = []
                progress.update(1)
                progress.set_postfix(
                    loss=f"{logs['train/all']:.4g}",
                    lr=f"{logs['train/lr']:.2e}",
                    samples_s=f"{self._speed:.1f}",
                )

                stop = self._stop_requested()
                if self.global_step % train["checkpointing_steps"] == 0 or stop:
                    self.save_checkpoint()
                if stop:
                    progress.close()
                    self.logger.info(
                        f"Stopped by {signal.Signals(stop).name} at step {self.global_step}; resume with "
                        f"path.resume_from_checkpoint: latest (experiment_key: {self.opt['experiment_key']})."
                    )
                    self.accelerator.end_training()
                    return self.last_metrics
                if self.global_step % train["validation_steps"] == 0 and self.val_loader is not None:
                    self.validation()
                    last_validated = self.global_step
                if self.global_step >= total_steps:
                    break
            else:
                self.state.epoch += 1
                self.state.batches_in_epoch = 0
        progress.close()

        if self.val_loader is not None and last_validated != self.global_step:
            self.validation()
        self.on_train_end()
        self.save_final()
        self.accelerator.end_training()
        return self.last_metrics

    def _check_losses(self, losses):
        if not isinstance(losses, dict) or "all" not in losses:
            got = sorted(losses) if isinstance(losses, dict) else type(losses).__name__
            raise PluginError(
                f"{type(self).__name__}.optimize_parameters() must return a dict of losses with the key 'all' "
                f"(the total that was back-propagated); it returned {got}."
            )
        if math.isfinite(_as_float(losses["all"])):
            return
        # The optimizer step of this micro-batch was already dropped by _before_optimizer_step (its
        # gradients were not finite), so the weights are intact whatever the policy.
        terms = ", ".join(f"{k}={_as_float(v):.4g}" for k, v in losses.items())
        if self.opt["train"]["nan_policy"] == "raise":
            raise NumericalError(
                f"The loss is not finite at step {self.global_step + 1} ({terms}); set 'train.nan_policy: skip' to "
                "skip such steps, or lower the learning rate."
            )
        self.state.skipped_steps += 1
        self.logger.warning(f"Skipped step {self.global_step + 1}: the loss is not finite ({terms}).")

    def _advance_schedules(self):
        with warnings.catch_warnings():
            # A GAN's discriminator schedule advances before its optimizer's first step (disc_start);
            # schedules follow the global step, so PyTorch's order warning is moot.
            warnings.filterwarnings(
                "ignore", message=".*lr_scheduler.step.*optimizer.step", category=UserWarning
            )
            for scheduler in self.schedulers:
                scheduler.step()
        for ema, arch in zip(self.emas, self._archs):
            ema.step(arch.parameters())

    def _log_step(self, window: list[dict], samples_per_step: int) -> dict:
        """The mean of each loss term over the accumulation window, the LR, the speed, to every tracker."""
        now = time.perf_counter()
        rate = samples_per_step / max(now - self._step_started, 1e-9)
        self._speed = rate if self._speed is None else 0.9 * self._speed + 0.1 * rate
        self._step_started = now
        logs = {f"train/{k}": sum(_as_float(w[k]) for w in window) / len(window) for k in window[-1]}
        logs["train/lr"] = self.schedulers[0].get_last_lr()[0] if self.schedulers else 0.0
        if self.opt["train"]["check_speed"]:
            logs["train/samples_per_second"] = self._speed
        if getattr(self, "_grad_norm", None) is not None:
            logs["train/grad_norm"] = self._grad_norm
        if self.state.skipped_steps:
            logs["train/skipped_steps"] = self.state.skipped_steps
        self.accelerator.log(logs, step=self.global_step)
        return logs

    # ------------------------------------------------------------------ preemption

    def _catch_stop_signals(self) -> dict:
        """Route SIGTERM and SIGINT to a stop request; returns the handlers to put back afterwards."""
        self._stop_signal = 0
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, frame):
            if self._stop_signal == signal.SIGINT and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum

        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, request_stop)
        return previous

    def _stop_requested(self) -> int:
        """The signal number if any process was asked to stop (all processes must stop together)."""
        stop = self._stop_signal
        if self.accelerator.num_processes > 1:
            flag = torch.tensor([stop], device=self.accelerator.device)
            stop = int(self.accelerator.reduce(flag, "max").item())
        return stop

    def save_final(self):
        """`save_pretrained` of every trained arch into `<run>/final/`, and the Hub push when asked."""
        final_dir = os.path.join(self.run_dir, "final")
        self.save_archs(final_dir)
        if self.accelerator.is_main_process:
            save_options(self.opt, os.path.join(final_dir, "config.yml"))
            with open(os.path.join(final_dir, "metrics.json"), "w") as f:
                json.dump(self.last_metrics, f, indent=2)
            self.logger.info(f"Saved the trained networks to {final_dir}.")
            if self.opt.get("push_to_hub"):
                from utils.hub import push_final_folder, write_model_card

                repo_id = self.opt["hub_model_id"]
                write_model_card(final_dir, self.opt.to_dict(), self._arch_names, self.last_metrics, repo_id)
                push_final_folder(
                    final_dir,
                    repo_id,
                    private=self.opt["hub_private"],
                    commit_message=f"{self.opt['name']} at step {self.global_step}",
                    logger=self.logger,
                )
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ validation

    def validation(self, max_batches: int | None = -1) -> dict[str, float]:
        """Run `validate_step` over the validation loader with the EMA weights, in eval mode and without
        gradients, in a forked RNG so that validation never changes the training's random stream."""
        if max_batches == -1:
            max_batches = self.opt["val"].get("max_batches")
        val = self.opt["val"]
        modes = {m: m.training for arch in self._archs for m in arch.modules()}
        for arch in self._archs:
            arch.eval()
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            self.ema_weights(),
            torch.no_grad(),
            collect_metrics() as summary,
        ):
            torch.manual_seed(self.opt["seed"])
            idx = 0
            for i, batch in enumerate(self.val_loader):
                if max_batches is not None and i >= max_batches:
                    break
                idx = self.validate_step(batch, idx, val["lq_key"], val["gt_key"])
        for module, was_training in modes.items():
            module.training = was_training
        metrics = self._reduce_summary(summary)
        if metrics:
            log_metric(self.accelerator, metrics, self.global_step)
            self.logger.info(
                f"step {self.global_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
            )
        self.last_metrics = metrics
        update_best_weights(self, metrics)  # hook: best weights
        return metrics

    def _reduce_summary(self, summary) -> dict[str, float]:
        """Sample-weighted means over every process's validation batches."""
        keys = sorted(summary.sums)
        if self.accelerator.num_processes > 1:
            gathered = [None] * self.accelerator.num_processes
            torch.distributed.all_gather_object(gathered, keys)
            keys = sorted({k for ks in gathered for k in ks})
        if not keys:
            return {}
        device = self.accelerator.device
        sums = torch.tensor([summary.sums.get(k, 0.0) for k in keys], dtype=torch.float64, device=device)
        counts = torch.tensor([summary.counts.get(k, 0.0) for k in keys], dtype=torch.float64, device=device)
        if self.accelerator.num_processes > 1:
            sums, counts = self.accelerator.reduce(sums, "sum"), self.accelerator.reduce(counts, "sum")
        return {k: float(s / c) for k, s, c in zip(keys, sums.tolist(), counts.tolist()) if c}

    def test(self) -> dict[str, float]:
        """`-test`: load weights, validate the whole validation set once, write a metrics summary."""
        path = self.opt["path"]
        if not path.get("pretrained") and not path.get("resume_from_checkpoint"):
            raise ConfigError(
                "-test needs trained weights: set 'path.pretrained' to a run's final/ or checkpoint-N folder "
                "(or 'path.resume_from_checkpoint')."
            )
        if not path.get("pretrained"):
            search = path.get("resume_from_path") or self.run_dir
            found = resolve_checkpoint(path["resume_from_checkpoint"], search)
            if found is None:
                raise ConfigError(
                    f"-test: no checkpoint found in '{search}' for 'resume_from_checkpoint: latest'."
                )
            path["pretrained"] = found
        self._setup()
        if self.val_loader is None:
            raise ConfigError("-test needs a 'datasets.val' block to validate on.")
        metrics = self.validation(max_batches=None)
        if self.accelerator.is_main_process:
            out = os.path.join(self.run_dir, "test_metrics.json")
            with open(out, "w") as f:
                json.dump({"weights": path["pretrained"], "metrics": metrics}, f, indent=2)
            width = max([len(k) for k in metrics] + [6])
            table = [f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
            table += [f"{k:<{width}}  {v:.6g}" for k, v in sorted(metrics.items())]
            print("\n".join(table))
            print(f"Metrics written to {out}")
        self.accelerator.end_training()
        return metrics
