"""A batch that does not fit the model, explained in one sentence naming the dataset.

    with self.accelerator.accumulate(*nets), batch_errors(self.opt, "train", batch):
        self.feed_data(batch)
        losses = self.optimize_parameters()

`check_metric_crop`, called by the loop on the first training batch, catches a metric `crop` that leaves
nothing of the images at the first step rather than at the first validation.
"""

import re
from collections.abc import Mapping
from contextlib import contextmanager

from utils.errors import ConfigError, DataError, UserError

_FEATURES = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
# A network that downsamples more often than the images allow: its deepest convolutions see fewer pixels
# than their kernel (torch: "Calculated padded input size per channel: (2 x 2). Kernel size: (3 x 3).").
_TOO_SMALL = re.compile(r"padded input size per channel: \(([\d x]+)\)\. Kernel size: \(([\d x]+)\)")
# A batch with more or fewer spatial dimensions than the network's convolutions (3-D volumes into conv2d).
_DIMS = re.compile(
    r"Expected \d+D \(unbatched\) or (\d+)D \(batched\) input to (conv\dd), but got input of size: \[([\d, ]+)\]"
)
_CHANNELS = re.compile(r"expected input\[([\d, ]+)\] to have (\d+) channels, but got (\d+) channels")


def _dataset(opt, phase: str) -> str:
    block = (opt.get("datasets") or {}).get(phase) or {}
    kind = block.get("type", "?") if isinstance(block, Mapping) else "?"
    return f"'datasets.{phase}' ({kind})"


def _keys(batch) -> str:
    return ", ".join(sorted(map(str, batch))) if isinstance(batch, Mapping) else type(batch).__name__


def check_metric_crop(opt, batch) -> None:
    """Every `val.metrics.*.crop` smaller than half the smallest side of the batch's target images."""
    val = opt.get("val") or {}
    target = batch.get(val.get("gt_key", "gt")) if isinstance(batch, Mapping) else None
    shape = getattr(target, "shape", None)
    if shape is None or len(shape) < 3:
        return
    smallest = min(shape[2:])
    for name, options in (val.get("metrics") or {}).items():
        crop = (options or {}).get("crop") or 0
        if isinstance(crop, int) and 2 * crop >= smallest:
            raise ConfigError(
                f"'val.metrics.{name}.crop' is {crop}, which leaves nothing of the "
                f"{'x'.join(map(str, shape[2:]))} images of {_dataset(opt, 'train')}; it must be below "
                f"{(smallest + 1) // 2}."
            )


@contextmanager
def batch_errors(opt, phase: str, batch=None):
    """Inside, a missing batch key or a channel mismatch becomes one DataError naming the dataset.

    A `feed_data` that reads a key the dataset does not give fails with a bare `KeyError: 'cond'`, and a
    network whose `in_channels` differs from the data's channels fails deep in a convolution with
    "expected input[8, 3, 16, 16] to have 1 channels". Both happen in the first step, before any
    optimizer step has changed a weight; the DataError names the dataset block, its type, the key and
    the keys the batch has, or both channel counts."""
    try:
        yield
    except UserError:
        raise
    except KeyError as error:
        key = error.args[0] if error.args else None
        if not isinstance(key, str) or (isinstance(batch, Mapping) and key in batch):
            raise
        has = f"; its batches have: {_keys(batch)}" if batch is not None else ""
        raise DataError(
            f"The model reads the batch key '{key}', which {_dataset(opt, phase)} does not give{has}; use a "
            "dataset that gives it, or set the model's key option (e.g. 'val.lq_key' / 'val.gt_key') to one it has."
        ) from error
    except RuntimeError as error:
        match = _CHANNELS.search(str(error))
        features = _FEATURES.search(str(error))
        small = _TOO_SMALL.search(str(error))
        dims = _DIMS.search(str(error))
        if dims:
            raise DataError(_dims_sentence(opt, phase, *dims.groups())) from error
        if small and not match:
            shape = (
                getattr(batch.get(opt.get("val", {}).get("gt_key", "gt")), "shape", None)
                if isinstance(batch, Mapping)
                else None
            )
            size = f" ({'x'.join(map(str, shape[2:]))})" if shape is not None and len(shape) > 2 else ""
            raise DataError(
                f"The images from {_dataset(opt, phase)}{size} are too small for the network: after its "
                f"downsampling a layer sees {small.group(1)} pixels, less than its {small.group(2)} kernel; give "
                f"larger images ({_size_keys(opt, phase)}) or fewer downsampling levels in 'network'."
            ) from error
        if features and not match:
            rows, given, expected, _ = features.groups()
            raise DataError(
                f"A network layer expects {expected} input features but the batch from {_dataset(opt, phase)} "
                f"gives {given} (a {rows}x{given} input); {_input_size_key(opt)} so that it takes {given}, or "
                f"make the dataset give {expected}."
            ) from error
        if not match:
            raise
        shape, expected, got = match.groups()
        raise DataError(
            f"A network expects {expected} input channels but the batch from {_dataset(opt, phase)} has {got} "
            f"(shape [{shape}]); {_in_channels(opt)} to {got} or make the dataset give {expected} channels."
        ) from error


def _dims_sentence(opt, phase: str, batched: str, conv: str, shape: str) -> str:
    want, got = int(batched) - 2, len(shape.split(",")) - 2
    block = (opt.get("datasets") or {}).get(phase) or {}
    setting = (
        f"'datasets.{phase}.spatial_dims' is {block['spatial_dims']}; set it to {want}"
        if isinstance(block, Mapping) and "spatial_dims" in block
        else f"give {want}-D data"
    )
    return (
        f"The batches from {_dataset(opt, phase)} are {got}-D (shape [{shape}]) but the network is {want}-D "
        f"({conv}); {setting}, or use a {got}-D network."
    )


def _size_keys(opt, phase: str) -> str:
    """The dataset's size keys with their values (`'datasets.train.image_size' is 1`), or their names."""
    block = (opt.get("datasets") or {}).get(phase) or {}
    given = [
        f"'datasets.{phase}.{name}' is {value}"
        for name, value in (block.items() if isinstance(block, Mapping) else ())
        if name.endswith("_size") and name != "batch_size" and value is not None
    ]
    return ", ".join(given) if given else "image_size / patch_size"


_INPUT_SIZE_KEYS = ("in_dim", "in_features", "input_dim")


def _input_size_key(opt) -> str:
    """'set 'network.in_dim' (now 1)' when the network block has an input-size key, else a general hint."""
    network = opt.get("network") or {}
    for name in _INPUT_SIZE_KEYS:
        if isinstance(network, Mapping) and name in network:
            return f"set 'network.{name}' (now {network[name]})"
    return "set the network's input size"


def _in_channels(opt) -> str:
    network = opt.get("network") or {}
    if isinstance(network, Mapping) and "in_channels" in network:
        return f"set 'network.in_channels' (now {network['in_channels']})"
    return "set the network's 'in_channels'"
