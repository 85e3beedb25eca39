"""The data's intensity range, stored with an LDM run so that generated images can be written in it.

Image datasets normalise each item as `y = (x - shift) / scale` and return the stats under
`batch['norm'][key]` (dataset/common/normalization.py). A generated image has no item of its own, so
the run stores the mean (shift, scale) of its targets, and `scripts/generate.py` maps samples back with
`x = y * scale + shift`. An image-conditioned sample is mapped back with its condition's own stats
instead (exact when the normalisation is fixed, `minmax` with a `value_range`; the condition's range
otherwise). Datasets without `norm` (PSFs, synthetic shapes) are already in their intensity range.
"""

import torch


def measure_target_intensity(loader, key: str, max_batches: int = 8) -> dict:
    """{'shift', 'scale', 'varies'}: the mean normalisation stats of `key` over the first batches."""
    stats = []
    if loader is not None:
        with torch.random.fork_rng():
            for i, batch in enumerate(loader):
                if i >= max_batches or not isinstance(batch.get("norm"), dict) or key not in batch["norm"]:
                    break
                stats.append(torch.as_tensor(batch["norm"][key], dtype=torch.float64).reshape(-1, 2).cpu())
    if not stats:
        return {"shift": 0.0, "scale": 1.0, "varies": False}
    stats = torch.cat(stats)
    return {
        "shift": float(stats[:, 0].mean()),
        "scale": float(stats[:, 1].mean()),
        "varies": bool((stats.max(0).values - stats.min(0).values).abs().max() > 1e-12),
    }


def to_intensity(images: torch.Tensor, stats) -> torch.Tensor:
    """Normalised images (N, C, ...) -> the data's range, with one (shift, scale) or one per image (N, 2)."""
    stats = torch.as_tensor(stats, dtype=torch.float64).reshape(-1, 2)
    shape = (len(stats), *([1] * (images.ndim - 1)))
    shift, scale = stats[:, 0].reshape(shape), stats[:, 1].reshape(shape)
    return (images.double() * scale + shift).float()
