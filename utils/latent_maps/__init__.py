"""Maps of a VAE's latent space: features, 2-D embeddings, separation scores, static and interactive plots.

    features  = latent_features(posterior_means, "flatten")     # (N, F), standardised
    coords    = embed_2d(features, "umap", seed=0)               # (N, 2)
    scores    = separation_scores(features, groups)              # silhouette, kNN accuracy
    trust     = trustworthiness_score(features, coords)

scikit-learn, umap-learn, matplotlib and plotly are imported only inside the functions that need them.
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
