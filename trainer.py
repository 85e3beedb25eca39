"""Train or validate a model described by a YAML experiment.

    accelerate launch trainer.py -opt checkpoints/VAE/exp.yml                 # train
    accelerate launch trainer.py -opt checkpoints/VAE/exp.yml -test           # validation only
    python trainer.py -opt X.yml train.batch_size=8 train.optim.learning_rate=1e-4   # overrides

A mistake in the config, a plugin or the data is reported in one sentence and exits with status 2;
`--debug` shows the traceback too.
"""

import argparse
import logging
import sys

from utils.errors import UserError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-opt", required=True, help="path to the experiment YAML")
    parser.add_argument("-test", action="store_true", help="validate once with trained weights, then exit")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (dotted keys)")
    return parser.parse_args(argv)


def build(args):
    """Load and check the config, then create the model (the registries import only what it needs)."""
    from dataset import find_dataset_class
    from models import find_model_class
    from utils.config_check import validate_options
    from utils.options import load_options

    opt = load_options(args.opt, args.overrides)
    for key in ("model_type", "datasets"):
        if key not in opt:
            validate_options(opt)  # raises the "missing key" error with its explanation
    model_cls = find_model_class(opt["model_type"])
    datasets = (
        opt["datasets"] if isinstance(opt.get("datasets"), dict) or hasattr(opt["datasets"], "items") else {}
    )
    dataset_classes = {
        name: find_dataset_class(block["type"])
        for name, block in datasets.items()
        if hasattr(block, "get") and block.get("type")
    }
    validate_options(opt, getattr(model_cls, "config_keys", {}), dataset_classes)
    if args.test:
        opt["is_train"] = False
    logger = logging.getLogger("trainer")
    return model_cls(opt, logger), opt


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.INFO)
    # Accelerate narrates every file of a checkpoint at INFO; our own lines say what matters.
    for noisy in ("accelerate", "transformers", "huggingface_hub", "bitsandbytes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one bar per save_pretrained shard is noise here
    try:
        model, _ = build(args)
        if args.test:
            model.test()
        else:
            model.train()
    except UserError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
