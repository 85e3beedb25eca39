"""Print the README's YAML key reference: the trainer's own keys, then each model's and dataset's.

    python -m scripts.key_reference

Every table comes from a `Key` declaration (`utils/config/schema.py` for the trainer, a model's
or dataset's `config_keys` for its own keys), the same declaration the config check validates against, so the
README cannot drift from what the trainer accepts.
"""

from collections.abc import Mapping

from models import MODEL_REGISTRY
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


if __name__ == "__main__":
    from utils.cli.console import quiet_libraries

    quiet_libraries()  # loading the model plugins imports bitsandbytes, which warns on import
    print(reference_markdown())
    print(model_reference_markdown())
    print(dataset_reference_markdown())
