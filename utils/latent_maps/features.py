"""Posterior means -> one standardised feature vector per image, and small thumbnails of the images."""

import numpy as np

from utils.errors import DataError

FEATURE_MODES = ("flatten", "mean", "meanstd")


def latent_features(latents, mode: str = "flatten", where: str = "'features'") -> np.ndarray:
    """(N, C, *spatial) posterior means -> (N, F) features, each column scaled to zero mean, unit variance.

    flatten: every latent value (keeps where things are); mean: each channel's spatial mean (position-free);
    meanstd: each channel's spatial mean and standard deviation. Standardising stops a few high-variance
    channels from deciding every distance; a constant column stays 0 instead of becoming NaN.
    `latents` may also be a list of (C, *spatial) latents of images of different sizes: mean and meanstd
    map them; flatten cannot, and the DataError names `where`, the option that chose it.
    """
    if mode not in FEATURE_MODES:
        raise ValueError(f"features is '{mode}'; use one of {', '.join(FEATURE_MODES)}.")
    items = [np.asarray(z, dtype=np.float64) for z in latents]
    shapes = list(dict.fromkeys(z.shape for z in items))
    if len(shapes) > 1 and (mode == "flatten" or len({s[:1] for s in shapes}) > 1):
        shown = " and ".join("x".join(map(str, s)) for s in shapes[:2])
        raise DataError(
            f"The latents to map differ in shape ({shown}: the images differ in size), which {where} "
            f"'{mode}' cannot compare; use 'mean' or 'meanstd' (position-free), or images of one size."
        )
    if items and items[0].ndim < 1:
        raise ValueError(f"latents must be (N, C, ...), got shape {np.shape(latents)}.")
    per_channel = [z.reshape(z.shape[0], -1) for z in items]
    if mode == "flatten":
        features = np.stack([z.reshape(-1) for z in per_channel])
    elif mode == "mean":
        features = np.stack([z.mean(axis=1) for z in per_channel])
    else:
        features = np.stack([np.concatenate([z.mean(axis=1), z.std(axis=1)]) for z in per_channel])
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(features).astype(np.float32)


def thumbnails(images, size: int = 48) -> np.ndarray:
    """(N, C, *spatial) images -> (N, size, size) uint8 grey thumbnails, each scaled to its own min..max.

    Volumes show their middle slice and several channels their first, so every input gives one picture.
    The batch is resized in one antialiased bilinear interpolation (torch's, on its threads, a tenth of
    the time of resizing image by image; within one grey level of PIL's bilinear resize).
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(images, dtype=torch.float32)[:, 0]  # a tensor or an array
    while x.ndim > 3:
        x = x[:, x.shape[1] // 2]
    flat = x.reshape(len(x), -1)
    lo, hi = flat.min(dim=1).values[:, None, None], flat.max(dim=1).values[:, None, None]
    x = torch.nan_to_num((x - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi)))
    grey = (x * 255).round()[:, None]
    resized = F.interpolate(grey, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
