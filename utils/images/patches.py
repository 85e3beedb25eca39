"""`train.patched`: train on random patches, infer on whole images window by window.

    train:
      patched: true
      patch_size: 64          # an int, or one size per spatial axis
      patch_overlap: 0.5      # fraction of a window shared with its neighbour at inference

A model trains on one random window per sample (`random_windows`) and validates, tests and reconstructs
whole images window by window (`sliding_window`), for images too large for a network in one piece.
"""

import torch

from utils.errors import ConfigError


def patch_settings(train_opt, spatial_dims: int) -> tuple[tuple[int, ...], float] | None:
    """(patch size per axis, overlap) when `train.patched` is on, else None."""
    if not train_opt.get("patched"):
        return None
    size = train_opt.get("patch_size")
    if size is None:
        raise ConfigError(
            "'train.patched' is true but 'train.patch_size' is not set; give e.g. patch_size: 64."
        )
    size = [int(size)] * spatial_dims if isinstance(size, int) else [int(s) for s in size]
    if len(size) != spatial_dims or min(size) < 1:
        raise ConfigError(
            f"'train.patch_size' is {train_opt.get('patch_size')}; give one positive size or {spatial_dims}."
        )
    overlap = float(train_opt.get("patch_overlap", 0.5))
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"'train.patch_overlap' is {overlap}; give a fraction in [0, 1).")
    return tuple(size), overlap


def random_windows(tensors: list[torch.Tensor], size) -> list[torch.Tensor]:
    """One random window of `size` per sample, the same across `tensors` (N, C, *spatial), which may
    differ in spatial size by a whole factor (an image and its latent): the window scales with each.
    Positions come from torch's global generator, which resume restores."""
    reference = tensors[0]
    spatial = reference.shape[2:]
    if any(s > n for s, n in zip(size, spatial)):
        raise ConfigError(f"'train.patch_size' {list(size)} is larger than the images {list(spatial)}.")
    starts = [torch.randint(0, n - s + 1, (len(reference),)) for s, n in zip(size, spatial)]
    out = []
    for tensor in tensors:
        scale = [t // r for t, r in zip(tensor.shape[2:], spatial)] if tensor.shape[2:] != spatial else None
        crops = []
        for i in range(len(tensor)):
            index = [slice(None)]
            for axis, (s, start) in enumerate(zip(size, starts)):
                f = scale[axis] if scale else 1
                begin = int(start[i]) * f
                index.append(slice(begin, begin + s * f))
            crops.append(tensor[i][tuple(index)])
        out.append(torch.stack(crops))
    return out


def sliding_window(predictor, x: torch.Tensor, size, overlap: float, batch: int = 4) -> torch.Tensor:
    """`predictor` over windows of `x`, blended with Gaussian weights (MONAI); the output may have other
    channels than `x`. Images smaller than a window are padded by MONAI and cropped back. The Gaussian
    weighting matters: a plain average (or no overlap) leaves seams where a window's border, the part it
    predicts worst (zero padding, missing context), meets its neighbour."""
    # Imported here: importing MONAI also imports matplotlib and scikit-learn when they are installed,
    # which a run that never slides a window should not pay for.
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(
        x, roi_size=tuple(size), sw_batch_size=batch, predictor=predictor, overlap=overlap, mode="gaussian"
    )
