"""BaseModel: the class every model plugin subclasses; the engine (engine/) runs it.

The contract, all a plugin needs:

| name | what it is |
|---|---|
| `config_keys` | class attribute: the keys the model reads, by block (`{"train": {"lr_d": Key(...)}}`) |
| `feed_data(data, is_train=True)` | hook: put the batch into `self.sample` |
| `optimize_parameters()` | hook: compute the loss, call `self.step`, return a dict of losses with `'all'` |
| `validate_step(batch)` | hook: evaluate one validation batch and log what it measures; returns nothing |
| `add_network(name, net)` | in `__init__`: register a network to train and save as `<name>/`; returns the handle to call |
| `step(loss, optimizer=None)` | back-propagate and update (accumulation, clipping and zeroing are the engine's) |
| `log(values=None, *, pred=None, target=None, prefix="")` | scalars, and the run's `val.metrics` of `pred` vs `target`: in `validate_step` averaged over the pass as `val_<prefix><name>`, else at the current step |
| `log_images(name, images)` | an NCHW batch as one grid to the trackers and `<run>/images/`; in `validate_step`, the first batch's |

Optional overrides: `setup_dataloaders()`, `build_optimizers()`, `on_train_end()`, `save_archs(folder)`,
`restored_training_state()`.
Code written the seed's way (`self.models.append(net)`, `utils.log_metrics`) trains too: engine/seed_style.py.
"""

import logging
import math

import torch
from accelerate import PartialState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from engine import evaluation, loop
from engine.accelerator import make_accelerator, multi_process_cpu
from engine.checkpoints import weights
from engine.checkpoints.best_metric import compare_with_declared
from engine.checkpoints.best_weights import update_best_weights
from engine.checkpoints.checkpointing import save_checkpoint
from engine.checkpoints.store import resolve_checkpoint
from engine.checkpoints.training_state import TrainingState
from engine.data import build_dataloader
from engine.model_log import ModelLog
from engine.optimization import make_optimizer
from engine.prepared_network import PreparedNetwork, bare_arch, handle_for
from engine.run.curves import summarize_run
from engine.run.folder import RunFolder
from engine.run.report import announce_run
from engine.run.shutdown import end_processes
from engine.start import start_run
from utils.config.schema import declared_values
from utils.errors import ConfigError, PluginError


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
        # Names the run folder and refuses an unusable one; writes nothing until the run has loaded.
        self.run_folder = RunFolder(opt, self.is_train, PartialState(cpu=multi_process_cpu()), logger)
        self.run_dir = self.run_folder.path
        self.accelerator = make_accelerator(opt, self.run_dir)
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
        self.restored_best = None  # the best score a restored checkpoint brought (restored_state.py)
        self.added_networks = {}  # id(arch) -> (name, handle), from add_network
        self.run_log = ModelLog(opt, self.accelerator, self.state)  # behind log and log_images

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

    def validate_step(self, batch):
        raise NotImplementedError(
            f"{type(self).__name__} must define validate_step(batch): evaluate the batch and log with "
            "self.log(...) and self.log_images(...)."
        )

    def on_train_end(self):
        """Called once after the last step and validation, before the final save: a model can store
        values measured on the trained weights in its arch's config (the VAE's latent scale factor)."""

    def restored_training_state(self) -> dict | None:
        """Training state brought from another trainer's checkpoint, applied by the engine at start
        (engine/checkpoints/restored_state.py): `{"source": path, "loaded": [what the model loaded itself],
        "optimizers": [{parameter: Adam state} or None, one per optimizer], "global_step": int or None,
        "epoch": the epoch to run next or None, "best": {"metric", "mode", "value"} or None}`. None (this
        default): nothing to restore."""
        return None

    def validation_metric_names(self) -> set[str] | None:
        """The names validation reports (`val_...`), known before the first step, so that
        `train.best_metric` is checked at start; None (this default) when the model cannot say, and the
        name is checked at the first validation. `self.metric_names(prefix)` gives `val.metrics`' part."""
        return None

    def class_targets(self) -> list[tuple[str, int, str]]:
        """`(key, classes, batch key)` for each head scored on class indices, checked at start against
        the data's `class_counts()` (engine/class_counts.py); none by default."""
        return []

    def input_size_divisor(self) -> int | None:
        """What every side of the images (and of `train.patch_size`) must be a multiple of, checked at
        start (engine/sizes.py); by default the least common multiple of the networks' `size_divisor`s."""
        return math.lcm(*(getattr(h.arch, "size_divisor", 1) for _, h in self.named_networks))

    def build_optimizers(self) -> list:
        """One AdamW over every trainable parameter of the networks. Override for several optimizers,
        each made with `self.make_optimizer(params, lr=...)`."""
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
        if any(taken == name for taken, _ in self.added_networks.values()):
            raise PluginError(
                f"{type(self).__name__} adds two networks named '{name}'; give each its own name."
            )
        handle = network if isinstance(network, PreparedNetwork) else handle_for(arch)
        self.added_networks[id(arch)] = (name, handle)
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

    def log(self, values: dict | None = None, *, pred=None, target=None, prefix: str = "") -> dict:
        """Log scalars (`{"loss": mse}`, floats or tensors) and, given `pred` and `target` (NCHW arrays or
        tensors), the run's `val.metrics` of them, each named `prefix + name`.

        In `validate_step` the engine averages them over the pass (scalars weighted by the batch's
        samples, metrics by len(pred)) and reports `val_<prefix><name>` once; elsewhere they go to
        every tracker at the current step. Returns the values under the names given.
        """
        return self.run_log.log(values, pred=pred, target=target, prefix=prefix)

    def log_images(self, name: str, images) -> str | None:
        """Log a batch of images (NCHW or NCDHW, numpy or tensor) as one grid named `name`, to every
        tracker and as `<run>/images/<name>_<step>.png` (unless `val.save_images: false`). In
        `validate_step` only the first batch's grid of each name is kept. Returns the PNG's path."""
        return self.run_log.log_images(name, images)

    @property
    def validated_samples(self) -> int:
        """In `validate_step`: the samples of the pass's earlier batches (0 on its first batch)."""
        return self.run_log.validation.samples_seen if self.run_log.validation is not None else 0

    def metric_names(self, prefix: str = "") -> set[str]:
        """What `self.log(pred=..., target=..., prefix=prefix)` reports in validation: `val_<prefix><name>`
        for every metric of `val.metrics`."""
        return {f"val_{prefix}{name}" for name in (self.opt.get("val") or {}).get("metrics") or {}}

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
        return weights.ema_weights(self.emas, [handle.arch for _, handle in self.named_networks])

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
            summarize_run(self.accelerator, self.run_dir, self.opt["path"]["logging_dir"], self.logger)
            return metrics
        except BaseException as error:
            end_processes(self.accelerator, clean=False)
            if self.state.global_step == first_step or getattr(error, "undo_run", False):
                # Nothing was trained (the first batch did not fit the model, a loss was NaN at once), or
                # nothing was kept (a best_metric found wrong before any checkpoint): undone like a failed
                # start, so the corrected rerun is not refused as a second run.
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
        compare_with_declared(self, self.last_metrics)  # a plugin's declaration against what it logs
        update_best_weights(self, self.last_metrics)  # `train.best_metric`: <run>/best/
        return self.last_metrics

    def save_checkpoint(self) -> str:
        return save_checkpoint(self)
