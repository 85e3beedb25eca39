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
    """Load and check the config; returns it with the model class it names (imported lazily)."""
    from dataset import find_dataset_class
    from engine.preflight import check_files
    from models import find_model_class
    from models.archs import find_arch
    from utils.config.check import validate_options
    from utils.config.load import load_options

    opt = load_options(path, list(overrides))
    if "model_type" not in opt or not isinstance(opt.get("datasets"), Mapping):
        validate_options(opt)  # raises the "missing key" error with its explanation
    model_cls = find_model_class(opt["model_type"])
    dataset_classes = {
        name: find_dataset_class(block["type"])
        for name, block in opt["datasets"].items()
        if isinstance(block, Mapping) and block.get("type")
    }
    validate_options(opt, getattr(model_cls, "config_keys", {}), dataset_classes, find_arch)
    check_files(opt._data)
    if test:
        opt["is_train"] = False
    return opt, model_cls


def build(args):
    opt, model_cls = load_config(args.opt, args.overrides, test=args.test)
    return model_cls(opt, logging.getLogger("trainer")), opt


def main(argv=None) -> int:
    args = parse_args(argv)
    from utils.cli.console import quiet_libraries

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
