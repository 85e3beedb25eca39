"""Patch and image sizes against the networks' downsampling, checked before the run folder is written.

An autoencoder that halves each side k times reconstructs a side that is not a multiple of 2**k at
another size, and a MONAI UNet cannot join its halves back: either ends as a shape error deep in a
library at the first step. Each arch says what its inputs' sides must be a multiple of (`size_divisor`),
the model what its images' must be (`BaseModel.input_size_divisor`, from its networks'), and this
module checks `train.patch_size` under `train.patched`, else the first image of each dataset.
"""

import random
from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np
import torch

from utils.errors import ConfigError
from utils.images.patches import patch_settings


def check_sizes(model) -> None:
    divisor = model.input_size_divisor()
    if not divisor or divisor == 1:
        return
    needs = f"{type(model).__name__}'s networks need every side a multiple of {divisor}"
    train = model.opt["train"]
    if train.get("patched") and train.get("patch_size") is not None:  # -test slides windows too
        size = train["patch_size"]
        sides = [size] if isinstance(size, int) else list(size)
        if any(int(s) % divisor for s in sides):
            raise ConfigError(
                f"'train.patch_size' is {size}, but {needs}; use e.g. {_multiples(sides, divisor)}."
            )
        patch_settings(train, len(sides))  # the rest of the patch keys, in their own words
        return  # windows of that size are all the networks see, in training and in validation
    phases = [("train", model.train_loader), (model.evaluated_set, model.val_loader)]
    for phase, loader in phases:
        sides = _first_image_sides(model, loader)
        if sides and any(s % divisor for s in sides):
            block = model.opt["datasets"][phase]
            key = next((k for k in ("image_size", "patch_size") if block.get(k) is not None), None)
            where = f"'datasets.{phase}.{key}' is {block[key]}, so " if key else ""
            raise ConfigError(
                f"{where}the images of 'datasets.{phase}' ({block.get('type')}) are {'x'.join(map(str, sides))}, "
                f"but {needs}; bring them to e.g. {_multiples(sides, divisor)} (a dataset's 'patch_size') or "
                "train on windows of such a size ('train.patched' and 'train.patch_size')."
            )


def _multiples(sides, divisor: int) -> str:
    return "x".join(str(max(divisor, round(int(s) / divisor) * divisor)) for s in sides)


@contextmanager
def _random_states_kept():
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python)
    np.random.set_state(numpy)


def _first_image_sides(model, loader) -> list[int] | None:
    """The spatial sides of the first item's image (`val.gt_key`), or None when it has none (a latent
    cache, simulated data)."""
    if loader is None or not hasattr(loader, "dataset") or len(loader.dataset) == 0:
        return None
    with _random_states_kept():  # an augmenting dataset draws: the run's random stream stays as it was
        item = loader.dataset[0]
    image = item.get((model.opt.get("val") or {}).get("gt_key", "gt")) if isinstance(item, Mapping) else None
    shape = getattr(image, "shape", None)
    return [int(s) for s in shape[1:]] if shape is not None and len(shape) >= 3 else None
