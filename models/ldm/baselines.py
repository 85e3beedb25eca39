"""Two baselines that say whether a conditional LDM follows its condition, scored beside its samples.

A conditional generator that ignores its condition still makes plausible images, so a PSNR alone hides
that failure. Each validation scores, on the same targets and with the same `val.metrics`:

- `val_mean_target_<metric>`: the mean training target (the MSE-optimal constant);
- `val_shuffled_<metric>`: the same model and seeds, with the conditions rolled by one across the batch.
"""

import os

import torch
from safetensors.torch import load_file, save_file

MEAN_TARGET_FILE = "mean_target.safetensors"


def mean_training_target(loader, key: str, max_batches: int) -> torch.Tensor | None:
    """The mean of `key` (C, *spatial) over the first `max_batches` batches' worth of training items, in
    file order (so it is the same whatever the shuffle or the RNG state); None when the items have no
    such key (a latent cache)."""
    dataset = loader.dataset
    size = min(len(dataset), max_batches * (loader.batch_size or 1))
    ordered = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, range(size)), batch_size=loader.batch_size
    )
    total, count = None, 0
    for batch in ordered:
        if key not in batch:
            return None
        x = torch.as_tensor(batch[key]).double()
        total = x.sum(0) if total is None else total + x.sum(0)
        count += len(x)
    return (total / count).float() if count else None


def save_mean_target(mean: torch.Tensor, folder: str) -> str:
    """Write the mean training target into a weights folder (`checkpoint-N/`, `best/`, `final/`); returns
    the file's name."""
    save_file({"mean_target": mean.detach().cpu().contiguous()}, os.path.join(folder, MEAN_TARGET_FILE))
    return MEAN_TARGET_FILE


def load_mean_target(folder: str | None) -> torch.Tensor | None:
    """The mean training target saved in `folder` by `save_mean_target`; None when there is none (weights
    saved without it, or no folder)."""
    path = os.path.join(folder, MEAN_TARGET_FILE) if folder else None
    if path is None or not os.path.isfile(path):
        return None
    return load_file(path)["mean_target"]


def baseline_mean_target(model) -> torch.Tensor | None:
    """The mean target of `model` (an LDM_model whose loaders are set up): measured on its training loader,
    or, in `-test` (no training data), the one saved with the weights of `path.pretrained`
    (`mean_target.safetensors` in every weights folder). It is the best a model that ignores its input
    can do in PSNR."""
    if model.train_loader is not None:
        return mean_training_target(model.train_loader, model.gt_key, model.val_opt["baseline_batches"])
    pretrained = model.opt["path"].get("pretrained")
    mean = load_mean_target(pretrained)
    if mean is None and pretrained:
        model.logger.info(
            f"'{pretrained}' holds no {MEAN_TARGET_FILE} (weights saved by an older version, or outside "
            "a run), so val_mean_target_* are not reported."
        )
    return mean


def like(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean target broadcast to `target`'s batch; a per-channel constant when the shapes differ
    (training on patches, validating on whole images)."""
    if tuple(mean.shape) != tuple(target.shape[1:]):
        mean = mean.flatten(1).mean(1).reshape(-1, *([1] * (target.ndim - 2)))
    return mean.to(target.device, target.dtype).expand_as(target)


def baseline_metric_names(model) -> set[str]:
    """What `log_baselines` reports: the mean target's metrics when there is one, the shuffled
    conditions' when a condition exists and the first validation batch samples more than one image."""
    if not model.val_opt["baselines"]:
        return set()
    names = model.metric_names("mean_target_") if model.mean_target is not None else set()
    sampled = min(int(model.opt["val"]["batch_size"]), int(model.val_opt["num_samples"]))
    if model.cond_opt["type"] != "none" and sampled > 1:
        names |= model.metric_names("shuffled_")
    return names


def log_baselines(model, condition, shape, seeds, target) -> None:
    """Score both baselines on `target` (the validation batch's first len(seeds) targets)."""
    # Measured on the shipped experiments (README, "Stage 2"): an `epsilon`-prediction model can sit at
    # the mean target's PSNR for long after its samples look plausible.
    if model.mean_target is not None:
        mean = like(model.mean_target, target)
        model.log(pred=mean.cpu().numpy(), target=target.cpu().numpy(), prefix="mean_target_")
    # A model that ignores its condition scores the same with and without the shuffle.
    if condition is not None and len(seeds) > 1:
        _, shuffled = model.sample_images(condition.roll(1, 0), shape, seeds)
        model.log(pred=shuffled.float().cpu().numpy(), target=target.cpu().numpy(), prefix="shuffled_")
