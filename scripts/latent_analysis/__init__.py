"""Offline analyses of trained models, above the training stack: they load runs, datasets and arches and
hand plain arrays to `utils` (e.g. `utils/latent_maps/`). Nothing in training imports this package."""
