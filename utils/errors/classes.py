"""Class indices in the data against the classes a head predicts, in one sentence naming both.

A segmentation or classification head with fewer classes than its target's values ends as an index
error inside cross-entropy (on a GPU, a device-side assert). The data's classes are checked at start
where a dataset can tell them (`class_counts()`, engine/class_counts.py), and at each batch otherwise.
"""

from collections.abc import Mapping

import torch

from utils.errors import ConfigError


def class_count_error(where: str, classes: int, key: str, source: str, found: int) -> ConfigError:
    return ConfigError(
        f"{where} is {classes}, but {source} holds {found} classes in '{key}' (values 0 to {found - 1}); "
        f"set it to at least {found}."
    )


def check_batch_classes(targets, batch, source: str) -> None:
    """Each `(where, classes, key)` of `targets` against the largest class index of `batch[key]`."""
    if not isinstance(batch, Mapping):
        return
    for where, classes, key in targets:
        values = batch.get(key)
        if torch.is_tensor(values) and values.numel() and not values.is_floating_point():
            found = int(values.max()) + 1
            if found > classes:
                raise class_count_error(where, classes, key, f"a batch of {source}", found)
