"""How well groups separate in latent space, and how faithfully a 2-D map keeps neighbours.

Every score is a plain float or None (undefined, e.g. one group only), so metrics.json never holds NaN.
"""

import math

import numpy as np


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def knn_accuracy(features: np.ndarray, groups, k: int = 5, seed: int = 0) -> float | None:
    """Cross-validated accuracy of a k-nearest-neighbour classifier predicting each latent's group.

    Stratified folds (at most 5, at least 2 items of each group per fold split) so every prediction is
    for a latent the classifier did not see; None when a group has a single member.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(groups)
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) < 2 or counts.min() < 2:
        return None
    folds = StratifiedKFold(n_splits=int(min(5, counts.min())), shuffle=True, random_state=seed)
    neighbours = int(max(1, min(k, len(labels) - len(labels) // folds.n_splits - 1)))
    predicted = cross_val_predict(KNeighborsClassifier(n_neighbors=neighbours), features, labels, cv=folds)
    return _finite(np.mean(predicted == labels))


def silhouette(features: np.ndarray, groups) -> float | None:
    """Mean silhouette of the groups (-1..1; above 0 when items sit nearer their own group)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(groups)
    count = len(np.unique(labels))
    if not 2 <= count <= len(labels) - 1:
        return None
    return _finite(silhouette_score(features, labels))


def separation_scores(features: np.ndarray, groups, k: int = 5, seed: int = 0) -> dict:
    """Silhouette and kNN accuracy of the groups, beside the same for the groups shuffled (the chance level)."""
    labels = np.asarray(groups)
    shuffled = np.random.default_rng(seed).permutation(labels)
    _, counts = np.unique(labels, return_counts=True)
    return {
        "groups": {str(g): int(c) for g, c in zip(*np.unique(labels, return_counts=True))},
        "silhouette": silhouette(features, labels),
        "knn_accuracy": knn_accuracy(features, labels, k, seed),
        "knn_k": k,
        "majority_fraction": _finite(counts.max() / counts.sum()),
        "shuffled_groups": {
            "silhouette": silhouette(features, shuffled),
            "knn_accuracy": knn_accuracy(features, shuffled, k, seed),
        },
    }


def trustworthiness_score(features: np.ndarray, coords: np.ndarray, k: int = 5) -> float | None:
    """scikit-learn's trustworthiness (0..1): 1 when the 2-D neighbours of each point are latent neighbours."""
    from sklearn.manifold import trustworthiness

    n = len(features)
    neighbours = min(k, (n - 1) // 2)
    if neighbours < 1:
        return None
    return _finite(trustworthiness(features, coords, n_neighbors=neighbours))
