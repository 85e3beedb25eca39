"""All outputs of one scripts.latent_analysis in one folder: maps (PNG/SVG/PDF per method, one HTML), metrics.json, coords.csv."""

import csv
import json
import os
import time

from utils.latent_maps.embedding import embed_2d
from utils.latent_maps.features import latent_features
from utils.latent_maps.interactive_page import write_interactive_map
from utils.latent_maps.scores import separation_scores, trustworthiness_score
from utils.latent_maps.static_figure import save_static_map


def write_report(
    encoded,
    out_dir: str,
    methods=("umap",),
    features: str = "flatten",
    seed: int = 0,
    k: int = 5,
    thumbnail_count: int = 8,
    dpi: int = 300,
    title: str = "latent space",
) -> dict:
    """Embed `encoded` (an `Encoded`) with each method and write every output; returns metrics.json's dict."""
    os.makedirs(out_dir, exist_ok=True)
    x = latent_features(encoded.latents, features, "'--features'")
    metrics = {
        "items": len(encoded.names),
        "features": features,
        "feature_dim": int(x.shape[1]),
        "seed": seed,
        **separation_scores(x, encoded.groups, k=k, seed=seed),
        "embeddings": {},
    }
    coords_by_method = {}
    for method in methods:
        started = time.perf_counter()
        coords = embed_2d(x, method, seed=seed)
        seconds = time.perf_counter() - started
        coords_by_method[method] = coords
        metrics["embeddings"][method] = {
            "trustworthiness": trustworthiness_score(x, coords, k=k),
            "seconds": round(seconds, 3),
        }
        save_static_map(
            coords,
            encoded.groups,
            os.path.join(out_dir, f"latent_map_{method}"),
            f"{title}: {method.upper()} of {len(x)} latents ({features})",
            thumbs=encoded.thumbs,
            thumbnail_count=thumbnail_count,
            dpi=dpi,
        )
    write_interactive_map(
        os.path.join(out_dir, "latent_map.html"),
        coords_by_method,
        encoded.names,
        encoded.groups,
        encoded.thumbs,
        title=f"{title}: {len(x)} latents ({features})",
    )
    with open(os.path.join(out_dir, "coords.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "group", *[f"{m}_{axis}" for m in methods for axis in ("x", "y")]])
        for i, (name, group) in enumerate(zip(encoded.names, encoded.groups)):
            values = [f"{float(coords_by_method[m][i, a]):.6g}" for m in methods for a in (0, 1)]
            writer.writerow([name, group, *values])
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        # allow_nan=False: a NaN would make the file unreadable by strict JSON parsers; scores are None instead.
        json.dump(metrics, f, indent=2, allow_nan=False)
    return metrics
