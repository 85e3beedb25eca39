"""2-D embeddings of feature vectors: PCA, t-SNE (scikit-learn) and UMAP (umap-learn), seeded."""

import numpy as np

METHODS = ("pca", "umap", "tsne")


def embed_2d(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """(N, F) features -> (N, 2) coordinates; the same features and seed give the same coordinates.

    Neighbourhood sizes shrink with small N (a validation set of 16 images), where UMAP's default of 15
    neighbours and t-SNE's perplexity of 30 would exceed the number of points and fail.
    """
    if method not in METHODS:
        raise ValueError(f"method is '{method}'; use one of {', '.join(METHODS)}.")
    x = np.asarray(features, dtype=np.float32)
    n = len(x)
    if n < 3:
        raise ValueError(f"a 2-D map needs at least 3 latents, got {n}.")
    if x.shape[1] < 2:  # one feature: PCA and t-SNE need two columns; the second carries nothing
        x = np.concatenate([x, np.zeros((n, 2 - x.shape[1]), dtype=x.dtype)], axis=1)
    if method == "pca":
        from sklearn.decomposition import PCA

        coords = PCA(n_components=2, random_state=seed).fit_transform(x)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    else:
        import warnings

        import umap

        with warnings.catch_warnings():
            # umap warns that a fixed random_state disables its parallel mode: reproducibility is wanted.
            warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
            reducer = umap.UMAP(
                n_components=2,
                n_neighbors=min(15, n - 1),
                init="spectral" if n > 10 else "random",
                random_state=seed,
            )
            coords = reducer.fit_transform(x)
    return np.asarray(coords, dtype=np.float32)
