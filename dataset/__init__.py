"""Dataset plugins: `type: X` in a `datasets.*` block names the class `X` in some `dataset/**/*_dataset.py`.

A dataset is built as `X(opt_dataset)` from its YAML block. A class declares the keys of its block in
`config_keys`, as `utils.config.schema.Key`s (default, type, range, help): the trainer validates and
defaults them, refuses a key the class does not declare (naming the dataset that reads it, or the nearest
name), and the key reference is printed from them. `dataset.common.options.read_key` reads a key by the
same declaration when a dataset is built without the trainer.
"""

from utils.registry import Registry

DATASET_REGISTRY = Registry("dataset", "_dataset.py", kind="dataset")


def find_dataset_class(dataset_type: str) -> type:
    return DATASET_REGISTRY.get(dataset_type, what="dataset class (datasets.*.type)")


def create_dataset(opt_dataset):
    """Instantiate the dataset that `opt_dataset.type` names."""
    return find_dataset_class(opt_dataset["type"])(opt_dataset)
