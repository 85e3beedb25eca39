"""Maps of a VAE's latent space: features, 2-D embeddings, separation scores, static and interactive plots.

    features  = latent_features(posterior_means, "flatten")     # (N, F), standardised
    coords    = embed_2d(features, "umap", seed=0)               # (N, 2)
    scores    = separation_scores(features, groups)              # silhouette, kNN accuracy
    trust     = trustworthiness_score(features, coords)

`scripts/analyze_latents.py` runs all of it on folders, manifests or a run's validation set;
`training_map.py` draws the map of the validation latents during training (`val.latent_map`).
scikit-learn, umap-learn, matplotlib and plotly are imported inside the functions that need them, so a
training run that draws no map never imports them.
"""

from utils.latent_maps.embedding import METHODS, embed_2d
from utils.latent_maps.features import FEATURE_MODES, latent_features
from utils.latent_maps.scores import separation_scores, trustworthiness_score

__all__ = [
    "FEATURE_MODES",
    "METHODS",
    "embed_2d",
    "latent_features",
    "separation_scores",
    "trustworthiness_score",
]
