"""Posterior means -> one standardised feature vector per image, and small thumbnails of the images."""

import numpy as np

FEATURE_MODES = ("flatten", "mean", "meanstd")


def latent_features(latents: np.ndarray, mode: str = "flatten") -> np.ndarray:
    """(N, C, *spatial) posterior means -> (N, F) features, each column scaled to zero mean, unit variance.

    flatten: every latent value (keeps where things are); mean: each channel's spatial mean (position-free);
    meanstd: each channel's spatial mean and standard deviation. Standardising stops a few high-variance
    channels from deciding every distance; a constant column stays 0 instead of becoming NaN.
    """
    if mode not in FEATURE_MODES:
        raise ValueError(f"features is '{mode}'; use one of {', '.join(FEATURE_MODES)}.")
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim < 2:
        raise ValueError(f"latents must be (N, C, ...), got shape {z.shape}.")
    per_channel = z.reshape(len(z), z.shape[1], -1)
    if mode == "flatten":
        features = per_channel.reshape(len(z), -1)
    elif mode == "mean":
        features = per_channel.mean(axis=2)
    else:
        features = np.concatenate([per_channel.mean(axis=2), per_channel.std(axis=2)], axis=1)
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(features).astype(np.float32)


def thumbnails(images: np.ndarray, size: int = 48) -> np.ndarray:
    """(N, C, *spatial) images -> (N, size, size) uint8 grey thumbnails, each scaled to its own min..max.

    Volumes show their middle slice and several channels their first, so every input gives one picture.
    """
    from PIL import Image

    x = np.asarray(images, dtype=np.float32)
    x = x[:, 0]
    while x.ndim > 3:
        x = x[:, x.shape[1] // 2]
    lo = x.reshape(len(x), -1).min(axis=1)[:, None, None]
    hi = x.reshape(len(x), -1).max(axis=1)[:, None, None]
    x = np.nan_to_num((x - lo) / np.where(hi > lo, hi - lo, 1.0))
    out = np.empty((len(x), size, size), dtype=np.uint8)
    for i, image in enumerate(x):
        picture = Image.fromarray((image * 255).round().astype(np.uint8))
        out[i] = np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR))
    return out
