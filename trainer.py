"""Train or validate a model described by a YAML experiment.

    accelerate launch trainer.py -opt checkpoints/VAE/exp.yml                 # train
    accelerate launch trainer.py -opt checkpoints/VAE/exp.yml -test           # validation only
    python trainer.py -opt X.yml train.batch_size=8 train.optim.learning_rate=1e-4   # overrides

A mistake in the config, a plugin or the data, and a file that cannot be read or written, is reported in
one sentence and exits with status 2 (130 after a second Ctrl-C); `--debug` shows the traceback too.
"""

import argparse
import logging
import sys
from collections.abc import Mapping

from utils.errors.files import describe_failure


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-opt", required=True, help="path to the experiment YAML")
    parser.add_argument("-test", action="store_true", help="validate once with trained weights, then exit")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (dotted keys)")
    return parser.parse_args(argv)


def load_config(path: str, overrides=(), test: bool = False):
    """Load and check the config once against the declarations of the run's parts (trainer blocks, the
    model class, each dataset class, each arch block); returns it with the model class it names."""
    from utils.config.load import load_options

    return check_config(load_options(path, list(overrides)), test)


def check_config(opt, test: bool = False):
    """`load_config` for options already loaded (an `Opt`): checked in place, with the model class."""
    from dataset import find_dataset_class
    from engine.preflight import check_files
    from models import find_model_class
    from models.archs import find_arch
    from utils.config.check import validate_options
    from utils.config.key_value import check_value
    from utils.config.schema import DATASET, TOP_LEVEL
    from utils.errors import ConfigError

    for required in ("name", "model_type", "datasets"):
        if required not in opt:
            key = TOP_LEVEL[required]
            raise ConfigError(f"The key '{required}' is missing; it is required: {key.help}")
    if not isinstance(opt.get("datasets"), Mapping):
        raise ConfigError("'datasets' must be a mapping with at least a 'train' or 'val' block.")
    # The plugin names are checked as text before the registries look them up.
    model_cls = find_model_class(check_value("model_type", opt["model_type"], TOP_LEVEL["model_type"]))
    dataset_classes = {
        name: find_dataset_class(check_value(f"datasets.{name}.type", block["type"], DATASET["type"]))
        for name, block in opt["datasets"].items()
        if isinstance(block, Mapping) and "type" in block
    }
    validate_options(
        opt,
        getattr(model_cls, "config_keys", {}),
        dataset_classes,
        find_arch,
        model_name=model_cls.__name__,
        declares_every_key=declares_every_key(model_cls),
        who_declares=who_declares,
    )
    check_files(opt._data)
    if test:
        opt["is_train"] = False
    return opt, model_cls


def declares_every_key(model_cls) -> bool:
    """Whether the model class lists every key it reads: it declares `config_keys` in its own body. A
    seed-style subclass of a declaring model (the roadmap's `YourVAE_model(PSF_model)`) does not."""
    from engine import BaseModel

    return model_cls is BaseModel or "config_keys" in vars(model_cls)


def who_declares(where: str) -> list[str]:
    """The registered models and datasets whose declarations hold the dotted key `where`
    (`train.kl_weight`, `vae`, `datasets.val.mask_dir`), so that an unread key names its reader."""
    from dataset import DATASET_REGISTRY
    from models import MODEL_REGISTRY, model_names

    *parents, name = where.split(".")
    if parents[:1] == ["datasets"]:
        registry, names, block = DATASET_REGISTRY, DATASET_REGISTRY.names(), None
    else:
        registry, names, block = MODEL_REGISTRY, model_names(), ".".join(parents)
    owners = []
    for plugin in names:
        try:
            declared = getattr(registry.get(plugin), "config_keys", None) or {}
        except Exception:  # a broken plugin file is reported when a run names it, not here
            continue
        keys = declared if block is None else declared.get(block) or {}
        if name in keys:
            owners.append(plugin)
    return owners


def build(args):
    opt, model_cls = load_config(args.opt, args.overrides, test=args.test)
    return model_cls(opt, logging.getLogger("trainer")), opt


def main(argv=None) -> int:
    args = parse_args(argv)
    from utils.cli.console import quiet_libraries
    from utils.cli.imports import defer_unused_imports

    defer_unused_imports()  # before diffusers loads: bitsandbytes only for train.optim.use_8bit_adam
    quiet_libraries()  # no bitsandbytes warning, no per-file checkpoint lines, no "Loading weights" bars
    try:
        model, _ = build(args)
        if args.test:
            model.test()
        else:
            model.train()
    except KeyboardInterrupt:
        # A second Ctrl-C during training (the first asked for a checkpoint at the next step boundary),
        # or one before training started.
        if args.debug:
            raise
        print(
            "error: stopped at once by Ctrl-C; the last complete checkpoint is kept.",
            file=sys.stderr,
        )
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"error: {describe_failure(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
