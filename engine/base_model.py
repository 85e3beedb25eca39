"""BaseModel: the contract every model plugin subclasses; the engine (engine/) runs it.

A subclass builds its networks in `__init__` and registers each under the folder name it is saved
under, then fills the hooks:

    self.net_g = self.add_network("net_g", define_network(opt.network))   # returns a handle

- `setup_dataloaders()`       builds `self.train_loader` / `self.val_loader` (the default reads `datasets`)
- `feed_data(data, is_train)` puts the batch into `self.sample`
- `optimize_parameters()`     computes the loss, calls `self.step(loss, optimizer)` (backward, then the
                              update when the accumulation window is full) and returns a dict of
                              losses with the key `'all'`
- `validate_step(batch, idx, lq_key, gt_key)` evaluates one batch, logs images and metrics through
                              `utils`, and returns the next idx
- `build_optimizers()`        one optimizer per parameter group, made with `self.make_optimizer(params,
                              lr=...)` (default: one AdamW over every trained network); each gets its
                              own LR schedule, and all are checkpointed
- `on_train_end()`            after the last validation, before the final save
- `save_archs(folder)`        every weights folder (`checkpoint-N/`, `best/`, `final/`) on every process:
                              the networks' `save_pretrained`; extend it (call super) to save what
                              generation or `-test` needs beside them, as the LDM and ControlNet do

Code written the seed's way (`self.models.append(net)`, its own `zero_grad()` / `backward` / `step`,
direct calls of `self.net(...)`) trains correctly too: engine/seed_style.py says how.

Everything else is the engine's: the run folder (`run_folder.py`), set-up and commit (`start.py`),
the loop (`loop.py`), checkpoints and resume (`checkpointing.py`), validation and `-test`
(`evaluation.py`), optimizers, schedules, clipping and EMA (`optimization.py`), weights on disk
(`weights.py`), preemption (`signals.py`), and the hook points other features attach to (`events.py`).
"""

import logging
import math
import os

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    ProjectConfiguration,
    set_seed,
)
from torch.utils.data import DataLoader

from engine import evaluation, events, loop
from engine.checkpoints import weights
from engine.checkpoints.checkpointing import save_checkpoint
from engine.checkpoints.folders import resolve_checkpoint
from engine.checkpoints.training_state import TrainingState
from engine.data import build_dataloader
from engine.optimization import make_optimizer
from engine.prepared_network import PreparedNetwork, bare_arch, handle_for
from engine.run.curves import summarize_run
from engine.run.folder import RunFolder
from engine.run.report import announce_run
from engine.run.shutdown import end_processes
from engine.run.trackers import requested_trackers
from engine.start import start_run
from utils.config.schema import declared_values
from utils.errors import ConfigError, PluginError


def _multi_process_cpu() -> bool:
    """True under torchrun on a machine without GPUs: Accelerate then needs `cpu=True` to use gloo
    (otherwise every process believes it is alone and they all train on their own)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


class BaseModel:
    # The keys this model reads, by block ("" for top-level keys and blocks, "train", "val", or a
    # top-level block it owns such as "vae"), as `utils.config.schema.Key`s: the config check then
    # validates them, fills their defaults and offers "did you mean", and the README's key tables are
    # printed from them (`python -m scripts.key_reference`). A set of names declares names only.
    config_keys: dict = {}

    def __init__(self, opt, logger):
        self.opt = opt
        self.logger = logger
        self.is_train = bool(opt.get("is_train", True))
        train = opt["train"]
        # Names the run folder and refuses an unusable one; writes nothing until the run has loaded.
        self.run_folder = RunFolder(opt, self.is_train, PartialState(cpu=_multi_process_cpu()), logger)
        self.run_dir = self.run_folder.path

        self.accelerator = Accelerator(
            cpu=_multi_process_cpu(),
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
        announce_run(self)  # the run folder and device, before anything slow happens
        set_seed(opt["seed"])
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = bool(opt["allow_tf32"])
            torch.backends.cudnn.allow_tf32 = bool(opt["allow_tf32"])

        self.models = []  # the networks to train: add_network appends here, seed-style code directly
        self.optimizers = []
        self.schedulers = []
        self.emas = []
        self.sample = {}
        self.train_loader = None
        self.val_loader = None
        self.evaluated_set = "val"  # the `datasets` block that val_loader reads
        self.state = TrainingState()
        self.named_networks: list[tuple[str, PreparedNetwork]] = []  # filled when the run starts
        self.gradient_guard = None
        self.last_metrics = {}
        self._added_networks = {}  # id(arch) -> (name, handle), from add_network

    # ------------------------------------------------------------------ hooks for subclasses

    def setup_dataloaders(self):
        """Build `self.train_loader` and `self.val_loader` from the `datasets` block; under `-test` the
        validation loader reads `datasets.test` when the YAML has one (`self.evaluated_set` says which)."""
        datasets = self.opt["datasets"]
        if "train" in datasets and self.is_train:
            self.train_loader = self.build_dataloader("train")
        if not self.is_train and "test" in datasets:
            self.evaluated_set = "test"
        if self.evaluated_set in datasets:
            self.val_loader = self.build_dataloader(self.evaluated_set)

    def feed_data(self, data, is_train=True):
        self.sample = data

    def optimize_parameters(self):
        raise NotImplementedError(
            f"{type(self).__name__} must define optimize_parameters(): compute the loss, call "
            "self.step(loss, optimizer) and return {'all': loss, ...}."
        )

    def validate_step(self, batch, idx, lq_key, gt_key):
        raise NotImplementedError(
            f"{type(self).__name__} must define validate_step(batch, idx, lq_key, gt_key)."
        )

    def on_train_end(self):
        """Called once after the last step and validation, before the final save: a model can store
        values measured on the trained weights in its arch's config (the VAE's latent scale factor)."""

    def build_optimizers(self) -> list:
        """One AdamW over every trainable parameter of the networks. Override for several optimizers."""
        params = [p for _, net in self.named_networks for p in net.arch.parameters() if p.requires_grad]
        if not params:
            raise PluginError(f"{type(self).__name__}'s networks hold no trainable parameters.")
        return [self.make_optimizer(params)]

    # ------------------------------------------------------------------ helpers for subclasses

    def add_network(self, name: str, network) -> PreparedNetwork:
        """Register a network to train, checkpoint and save under `<run>/final/<name>/`.

        Returns its handle: keep it (`self.net_g = self.add_network("net_g", arch)`) and call it; once
        the run starts, its calls go through DDP and autocast (see engine/prepared_network.py).
        """
        arch = bare_arch(network)
        if any(taken == name for taken, _ in self._added_networks.values()):
            raise PluginError(
                f"{type(self).__name__} adds two networks named '{name}'; give each its own name."
            )
        handle = network if isinstance(network, PreparedNetwork) else handle_for(arch)
        self._added_networks[id(arch)] = (name, handle)
        self.models.append(arch)
        return handle

    def step(self, loss: torch.Tensor, optimizer=None) -> None:
        """Back-propagate `loss` and update with `optimizer` (default: every optimizer).

        Inside an accumulation window the update waits for the window's last micro-batch (Accelerate
        skips it until then); gradients are clipped to `train.optim.max_grad_norm` just before it, and
        the engine clears them after it, so no `zero_grad()` is needed.
        """
        self.accelerator.backward(loss)
        for each in self.optimizers if optimizer is None else [optimizer]:
            each.step()

    def config_values(self, block: str) -> dict:
        """The keys this model declares for `block` in `config_keys`, with their values (or defaults)."""
        source = self.opt if block == "" else (self.opt.get(block) or {})
        return declared_values(source, type(self).config_keys[block])

    def build_dataloader(self, phase: str) -> DataLoader:
        return build_dataloader(self.opt, phase, self.run_dir)

    def make_optimizer(self, params, lr: float | None = None) -> torch.optim.Optimizer:
        """AdamW (or bitsandbytes' 8-bit AdamW) with the `train.optim` settings."""
        return make_optimizer(self.opt, self.accelerator, params, lr)

    def ema_weights(self):
        """`with self.ema_weights():` the networks hold their EMA weights (when `train.ema` is on)."""
        return weights.ema_weights(self)

    def save_archs(self, folder: str):
        """`save_pretrained` of every network into `folder/<name>/` (main process; EMA weights when on).
        Called on every process for each weights folder, so an extension may run collectives before its
        main-process-only writes."""
        weights.save_archs(self, folder)

    def load_pretrained(self, folder: str):
        weights.load_pretrained(self, folder)

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

    # ------------------------------------------------------------------ what trainer.py calls

    def train(self) -> dict[str, float]:
        """Train for `max_train_steps` optimizer steps, validating, checkpointing, and saving at the end.

        SIGTERM (a cluster's preemption) or SIGINT (Ctrl-C) ends the run at the next step boundary with a
        checkpoint; a second Ctrl-C stops at once.
        """
        start_run(self, training=True)
        first_step = self.state.global_step
        try:
            metrics = loop.train(self)
            # Trackers finished (their event files flushed for the summary figure), process group ended.
            end_processes(self.accelerator, clean=True)
            summarize_run(self)  # <run>/training_summary.png
            return metrics
        except BaseException:
            end_processes(self.accelerator, clean=False)
            if self.state.global_step == first_step:
                # Nothing was trained (the first batch did not fit the model, a loss was NaN at once):
                # undone like a failed start, so the corrected rerun is not refused as a second run.
                self.run_folder.rollback()
            raise
        finally:
            self.run_folder.close()

    def test(self) -> dict[str, float]:
        """`-test`: score the whole `datasets.test` set (`datasets.val` when the YAML has no test block)
        once with `path.pretrained` (or a checkpoint's) weights, or with the freshly initialised networks
        when none is given; write a summary that names the set it scored."""
        path = self.opt["path"]
        if not path.get("pretrained") and path.get("resume_from_checkpoint"):
            search = path.get("resume_from_path") or self.run_dir
            found = resolve_checkpoint(path["resume_from_checkpoint"], search)
            if found is None:
                raise ConfigError(
                    f"-test: no checkpoint found in '{search}' for 'resume_from_checkpoint: latest'."
                )
            path["pretrained"] = found
        if self.val_loader is None and not {"val", "test"} & set(self.opt["datasets"]):
            raise ConfigError("-test needs a 'datasets.test' or 'datasets.val' block to score.")
        start_run(self, training=False)
        clean = False
        try:
            if not path.get("pretrained"):
                self.logger.info(
                    "-test without 'path.pretrained': validating the freshly initialised networks "
                    "(a check of the config, the data and validate_step, not of a trained model)."
                )
            metrics = evaluation.named_for_scored_set(self, self.validation(max_batches=None))
            evaluation.write_test_summary(self, path.get("pretrained"), metrics)
            events.at_end(self)
            clean = True
            return metrics
        finally:
            end_processes(self.accelerator, clean)
            self.run_folder.close()

    def validation(self, max_batches: int | None = -1) -> dict[str, float]:
        """One validation pass (`val.max_batches` batches unless given); logs and returns the metrics."""
        if max_batches == -1:
            max_batches = self.opt["val"].get("max_batches")
        self.last_metrics = evaluation.validate(self, max_batches)
        events.after_validation(self, self.last_metrics)
        return self.last_metrics

    def save_checkpoint(self) -> str:
        return save_checkpoint(self)
