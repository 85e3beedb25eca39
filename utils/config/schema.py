"""How a key is declared (`Key`), and the keys the trainer itself reads, block by block.

A `Key` is the one way to declare a YAML key: the trainer's blocks here, a model's `config_keys` (by
block, `''` for top-level blocks it owns), a dataset's `config_keys`; an arch config's `__init__`
signature is read into the same form (`models/archs/config_signature.py`). `utils/config/check.py`
validates every run against these declarations, and `python -m scripts.key_reference` prints them.
Keys that only some models read (`train.loss`, `train.patched`, `val.latent_map`) are declared by those
models, not here. Top-level keys starting with `_` are YAML anchors: never read, never checked.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Key:
    default: Any
    kind: str  # 'str', 'int', 'float', 'bool', 'str|list', 'int|list', 'float|list', 'block', 'any'
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False  # True: `minimum` itself is refused (a distance of 0 m images nothing)
    below_maximum: bool = False  # True: `maximum` itself is refused (AdamW's betas must stay below 1)
    nullable: bool = False
    required: bool = False
    fill_default: bool = True  # False: the key stays absent unless given (the trainer sets it itself)


SEED_MAX = 2**32 - 1  # numpy's legacy generators take seeds up to this
REPORT_TO_CHOICES = ("tensorboard", "comet_ml", "none", "all")
ADAMW_KERNELS = ("auto", "foreach", "fused")
SCHEDULER_CHOICES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
)

TOP_LEVEL = {
    "name": Key(
        None, "str", "Experiment name; the run folder is `path.root/name/experiment_key`.", required=True
    ),
    "model_type": Key(
        None, "str", "Class name of the model, found among `models/**/*_model.py`.", required=True
    ),
    "is_train": Key(True, "bool", "False under `-test`; the trainer sets it."),
    "report_to": Key("tensorboard", "str|list", "Tracker, or a list of them.", REPORT_TO_CHOICES),
    "push_to_hub": Key(False, "bool", "Push every trained arch and a model card to the Hub at the end."),
    "hub_model_id": Key(None, "str", "Hub repository (`user/name`) for `push_to_hub`.", nullable=True),
    "hub_private": Key(True, "bool", "Create the Hub repository as private."),
    "num_gpu": Key(None, "int", "Informational: `accelerate launch` sets the process count.", nullable=True),
    "seed": Key(
        42,
        "int",
        "Seed of every random generator (weights, data order, validation noise).",
        minimum=0,
        maximum=SEED_MAX,
    ),
    "mixed_precision": Key(
        "no", "str", "Autocast precision; fp16 runs with a grad scaler.", ("no", "fp16", "bf16")
    ),
    "allow_tf32": Key(False, "bool", "Allow TF32 matmuls on Ampere and newer GPUs."),
    "tracker_project_name": Key(
        None, "str", "Project name in the trackers; defaults to `name`.", nullable=True
    ),
    "experiment_key": Key(
        None, "str", "Run subfolder and tracker run name; a timestamp when empty.", nullable=True
    ),
    "datasets": Key(
        None, "block", "`train` and `val` (and optionally `test`) dataset blocks.", required=True
    ),
    "network": Key(None, "block", "The arch block: `type: X` plus the keys of `X_config`.", nullable=True),
    "path": Key(None, "block", "Where runs are written and what to resume or load."),
    "train": Key(None, "block", "Training settings."),
    "val": Key(None, "block", "Validation settings."),
}

PATH = {
    "root": Key("experiments", "str", "Folder that holds all runs (relative to the working directory)."),
    "logging_dir": Key("logs", "str", "Tracker folder inside the run folder."),
    "resume_from_checkpoint": Key(
        None, "str", "`latest`, `checkpoint-N` or a checkpoint folder to resume training from.", nullable=True
    ),
    "resume_from_path": Key(
        None,
        "str",
        "Run folder searched by `resume_from_checkpoint` (default: this run's folder).",
        nullable=True,
    ),
    "pretrained": Key(
        None,
        "str",
        "A `final/` or `checkpoint-N` folder whose weights are loaded before training or `-test`.",
        nullable=True,
    ),
    "run_dir": Key(
        None,
        "str",
        "The run folder, when not `root/name/experiment_key`; `-test` sets it to `<run of pretrained>/test/<stamp>`.",
        nullable=True,
    ),
    "resume_strict": Key(True, "bool", "Refuse to resume from a checkpoint without its random states."),
}

OPTIM = {
    "learning_rate": Key(1e-4, "float", "Peak learning rate of AdamW.", minimum=0.0),
    "scale_lr": Key(False, "bool", "Multiply the rate by batch size x accumulation x processes."),
    "use_8bit_adam": Key(False, "bool", "bitsandbytes' 8-bit AdamW (saves optimizer memory)."),
    "adam_beta1": Key(0.9, "float", "AdamW beta1.", minimum=0.0, maximum=1.0, below_maximum=True),
    "adam_beta2": Key(0.999, "float", "AdamW beta2.", minimum=0.0, maximum=1.0, below_maximum=True),
    "adam_weight_decay": Key(1e-2, "float", "AdamW decoupled weight decay.", minimum=0.0),
    "adam_epsilon": Key(1e-8, "float", "AdamW epsilon.", minimum=0.0),
    "implementation": Key(
        "auto", "str", "AdamW kernel: torch's choice, `foreach` or `fused`.", ADAMW_KERNELS
    ),
    "max_grad_norm": Key(
        1.0,
        "float",
        "Clip the gradient norm to this on every optimizer step; 0 or null turns it off.",
        minimum=0.0,
        nullable=True,
    ),
}

SCHEDULER = {
    "type": Key("constant", "str", "diffusers `get_scheduler` name.", SCHEDULER_CHOICES),
    "lr_warmup_steps": Key(0, "int", "Linear warm-up, in optimizer steps.", minimum=0),
    "lr_num_cycles": Key(1, "int", "Hard restarts of `cosine_with_restarts`.", minimum=1),
    "lr_power": Key(1.0, "float", "Power of the `polynomial` decay.", minimum=0.0),
}

EMA = {
    "decay": Key(0.999, "float", "Largest EMA decay.", minimum=0.0, maximum=1.0),
    "update_after_step": Key(
        0, "int", "Optimizer steps before the EMA starts following the weights.", minimum=0
    ),
    "use_ema_warmup": Key(False, "bool", "Grow the decay as 1 - (1 + step / inv_gamma) ** -power."),
    "inv_gamma": Key(1.0, "float", "EMA warm-up inverse gamma.", minimum=0.0),
    "power": Key(2 / 3, "float", "EMA warm-up power.", minimum=0.0),
}

TRAIN = {
    "optim": Key(None, "block", "Optimizer settings."),
    "scheduler": Key(None, "block", "Learning-rate schedule."),
    "ema": Key(
        None,
        "block",
        "Exponential moving average of the trained weights; absent or null is off.",
        nullable=True,
    ),
    "batch_size": Key(16, "int", "Training batch size per process.", minimum=1),
    "gradient_accumulation_steps": Key(1, "int", "Micro-batches per optimizer step.", minimum=1),
    "max_train_steps": Key(
        None,
        "int",
        "Optimizer steps to train; overrides `num_train_epochs` when set.",
        minimum=1,
        nullable=True,
    ),
    "num_train_epochs": Key(
        1, "int", "Epochs to train when `max_train_steps` is not set.", minimum=1, nullable=True
    ),
    "validation_steps": Key(
        None,
        "int",
        "Validate every N optimizer steps (and always at the end); 500 when neither this nor "
        "`validation_epochs` is set.",
        minimum=1,
        nullable=True,
    ),
    "validation_epochs": Key(
        None,
        "int",
        "Validate at the end of every N-th epoch instead (and always at the end); not with `validation_steps`.",
        minimum=1,
        nullable=True,
    ),
    "checkpointing_steps": Key(
        None,
        "int",
        "Write `checkpoint-N` every N optimizer steps; 1000 when neither this nor `checkpointing_epochs` is set.",
        minimum=1,
        nullable=True,
    ),
    "checkpointing_epochs": Key(
        None,
        "int",
        "Write `checkpoint-N` at the end of every N-th epoch instead; not with `checkpointing_steps`.",
        minimum=1,
        nullable=True,
    ),
    "checkpoints_total_limit": Key(
        None, "int", "Keep at most this many checkpoints (oldest removed).", minimum=1, nullable=True
    ),
    "nan_policy": Key(
        "raise",
        "str",
        "A non-finite loss stops the run naming the step and terms, or is skipped and counted.",
        ("raise", "skip"),
    ),
    "max_consecutive_skipped_steps": Key(
        20,
        "int",
        "Under `nan_policy: skip`, stop after this many skipped steps in a row (0: never).",
        minimum=0,
    ),
    "find_unused_parameters": Key(False, "bool", "DDP option for networks with parameters unused in a step."),
    "check_speed": Key(False, "bool", "Log step time and samples/s to the trackers."),
    "log_every": Key(
        1, "int", "Read back, check and log the losses every N steps (docs/benchmarks.md).", minimum=1
    ),
    "channels_last": Key(False, "bool", "Keep weights and batches channels-last (NHWC; docs/benchmarks.md)."),
    "compile": Key(False, "bool", "torch.compile each network's calls (the first steps compile)."),
    "best_metric": Key(
        None,
        "str",
        "Keep `<run>/best/` (networks, step, metrics) at the best value of this validation metric, e.g. `val_psnr`.",
        nullable=True,
    ),
    "best_mode": Key("max", "str", "Whether `best_metric` is best at its max or its min.", ("max", "min")),
}

VAL = {
    "batch_size": Key(4, "int", "Validation batch size per process.", minimum=1),
    "save_images": Key(True, "bool", "Write logged images as PNGs to `<run>/images/`."),
    "metrics": Key(
        None, "block", "Metrics by name with their options, e.g. `psnr: {crop: 0}`.", nullable=True
    ),
    "lq_key": Key("cond", "str", "Batch key of the input, passed to `validate_step`."),
    "gt_key": Key("gt", "str", "Batch key of the target, passed to `validate_step`."),
    "max_batches": Key(
        None, "int", "Validate on at most this many batches (all when null).", minimum=1, nullable=True
    ),
}

DATASET = {
    "type": Key(None, "str", "Class name of the dataset, found among `dataset/*_dataset.py`.", required=True),
    "batch_size": Key(
        None,
        "int",
        "Overrides `train.batch_size` / `val.batch_size` for this loader.",
        minimum=1,
        nullable=True,
    ),
    "use_shuffle": Key(None, "bool", "Shuffle (default: true for train, false otherwise).", nullable=True),
    "num_workers": Key(0, "int", "DataLoader worker processes.", minimum=0),
    "pin_memory": Key(False, "bool", "Pin host memory for faster GPU copies."),
    "drop_last": Key(None, "bool", "Drop the last partial batch (default: true for train).", nullable=True),
    "persistent_workers": Key(False, "bool", "Keep workers alive between epochs."),
    "prefetch_factor": Key(None, "int", "Batches prefetched per worker.", minimum=1, nullable=True),
    "phase": Key(
        None,
        "str",
        "Set by the trainer from the block name; datasets read it.",
        nullable=True,
        fill_default=False,
    ),
    "split_file": Key(
        None,
        "str",
        "Where a dataset that splits its files keeps the split (default: in the run folder).",
        nullable=True,
        fill_default=False,
    ),
}

DATASET_NAMES = ("train", "val", "test")

# The blocks the trainer validates, by their dotted path; `datasets.*` is handled per dataset.
BLOCKS = {
    "": TOP_LEVEL,
    "path": PATH,
    "train": TRAIN,
    "train.optim": OPTIM,
    "train.scheduler": SCHEDULER,
    "train.ema": EMA,
    "val": VAL,
}


def declared_values(block, keys: dict) -> dict:
    """The value of each declared key in `block` (a mapping), or its default when absent."""
    return {name: block.get(name, key.default) for name, key in keys.items()}


def key_rows(keys: dict, prefix: str = "") -> list[str]:
    """Markdown table rows of `keys`, each named `prefix + name`."""
    rows = []
    for name, key in keys.items():
        default = "required" if key.required else ("-" if key.kind == "block" else f"`{key.default}`")
        choices = f" One of {', '.join(map(str, key.choices))}." if key.choices else ""
        text = f"{key.help}{choices}".replace("|", "\\|")  # a bare | would end the table cell
        rows.append(f"| `{prefix}{name}` | {default} | {text} |")
    return rows


def reference_markdown() -> str:
    """The README's key reference, one table per block."""
    blocks = dict(BLOCKS)
    blocks["datasets.<train|val|test>"] = DATASET
    lines = []
    for path, keys in blocks.items():
        lines += [f"#### `{path or 'top level'}`", "", "| key | default | meaning |", "| --- | --- | --- |"]
        lines += key_rows(keys)
        lines.append("")
        if not path:
            lines += [
                "Top-level keys starting with `_` (e.g. `_psf: &psf`) hold YAML anchors: they are never read.",
                "",
            ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
