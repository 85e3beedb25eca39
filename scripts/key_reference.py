"""Write docs/keys.md, the YAML key reference: the trainer's own keys, then each model's and dataset's.

    python -m scripts.key_reference            # writes docs/keys.md
    python -m scripts.key_reference --check    # exit 1 when docs/keys.md differs from the declarations

Every table comes from a `Key` declaration (`utils/config/schema.py` for the trainer, a model's
or dataset's `config_keys` for its own keys), the same declaration the config check validates against, so the
page cannot drift from what the trainer accepts (`tests/test_model_keys.py` checks it).
"""

import os
import sys
from collections.abc import Mapping

from models import MODEL_REGISTRY
from utils.cli.script import ScriptParser
from utils.config.schema import Key, key_rows, reference_markdown


def declared_keys(model_cls) -> dict[str, dict[str, Key]]:
    """The `Key` mappings of a model's `config_keys`, by block."""
    keys = getattr(model_cls, "config_keys", {}) or {}
    return {
        block: dict(entries)
        for block, entries in keys.items()
        if isinstance(entries, Mapping) and all(isinstance(k, Key) for k in entries.values())
    }


def model_reference_markdown() -> str:
    """One table per model plugin that declares keys, its keys named by their dotted path."""
    lines = []
    for name in sorted(MODEL_REGISTRY.names()):
        model_cls = MODEL_REGISTRY.get(name)
        blocks = declared_keys(model_cls)
        if not blocks:
            continue
        lines += [f"#### `model_type: {name}`", "", "| key | default | meaning |", "| --- | --- | --- |"]
        for block, keys in blocks.items():
            lines += key_rows(keys, prefix=f"{block}." if block else "")
        lines.append("")
    return "\n".join(lines)


def dataset_reference_markdown() -> str:
    """One table per dataset plugin whose `config_keys` are `Key`s (beside the common keys above)."""
    from dataset import DATASET_REGISTRY

    lines = []
    for name in sorted(DATASET_REGISTRY.names()):
        keys = getattr(DATASET_REGISTRY.get(name), "config_keys", None)
        if not isinstance(keys, Mapping) or not all(isinstance(k, Key) for k in keys.values()):
            continue
        lines += [f"#### `datasets.*.type: {name}`", "", "| key | default | meaning |", "| --- | --- | --- |"]
        lines += key_rows(keys)
        lines.append("")
    return "\n".join(lines)


KEYS_PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "keys.md")

HEADER = """# YAML key reference

Generated from the key declarations by `python -m scripts.key_reference` (do not edit by hand;
`tests/test_model_keys.py` fails when this page and the declarations differ).

Unknown keys in these blocks get "did you mean"; values are checked for type and range, in one
sentence naming the key. Any key can be overridden on the command line:
`trainer.py -opt X.yml train.batch_size=8 train.optim.learning_rate=1e-4`.
"""

MODELS_INTRO = """Plugin blocks: `network` (the arch's config keys), `deeplens` (the PSF models' lens block, metres),
and any other top-level block a model reads.

## Model keys

Each model's own keys, printed from its `config_keys` declaration; they are validated, defaulted and
offered as "did you mean" like the trainer's:
"""

DATASETS_INTRO = """## Dataset keys

Each dataset's own keys, printed from its `config_keys` declaration like the models' (beside the common
keys above; [data.md](data.md) explains them at length):
"""


def keys_page() -> str:
    """The whole text of docs/keys.md."""
    parts = [
        HEADER,
        "## Trainer keys\n",
        reference_markdown(),
        MODELS_INTRO,
        model_reference_markdown(),
        DATASETS_INTRO,
        dataset_reference_markdown(),
    ]
    return "\n".join(part.rstrip("\n") + "\n" for part in parts)


def build_parser() -> ScriptParser:
    parser = ScriptParser(description="Write (or check) docs/keys.md from the key declarations.")
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/keys.md is out of date")
    return parser


def main(argv=None) -> int:
    return build_parser().run(write_page, argv)


def write_page(args) -> int:
    from utils.cli.console import quiet_libraries
    from utils.cli.imports import defer_unused_imports

    defer_unused_imports()  # before the plugins load diffusers: nothing here reads bitsandbytes
    quiet_libraries()  # loading the model plugins imports bitsandbytes, which warns on import
    page = keys_page()
    if args.check:
        with open(KEYS_PAGE) as f:
            if f.read() == page:
                return 0
        print(f"{KEYS_PAGE} is out of date: run python -m scripts.key_reference", file=sys.stderr)
        return 1
    with open(KEYS_PAGE, "w") as f:
        f.write(page)
    print(f"wrote {KEYS_PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
