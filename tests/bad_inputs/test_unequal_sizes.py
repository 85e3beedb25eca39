"""Images of different sizes where one batch or one map needs one size: one sentence naming the
dataset or the option, or, where it can, the map is drawn anyway."""

import numpy as np
import pytest
import torch

from utils.errors import DataError


def test_items_of_different_sizes_in_one_batch_name_the_dataset_and_the_sizes():
    from engine.data import NamedCollate

    items = [{"gt": torch.zeros(1, 16, 16)}, {"gt": torch.zeros(1, 20, 20)}]
    with pytest.raises(DataError) as caught:
        NamedCollate("val", "TIFFolderDataset")(items)
    assert str(caught.value).startswith(
        "The items of 'datasets.val' (TIFFolderDataset) differ in size ([1, 16, 16] and [1, 20, 20])"
    )
    assert "'datasets.val.batch_size: 1'" in str(caught.value)


def test_latents_of_different_sizes_map_position_free_or_name_the_option():
    from utils.latent_maps.features import latent_features

    latents = [np.random.default_rng(i).normal(size=(2, 4 + i % 2, 4)) for i in range(6)]
    assert latent_features(latents, "mean").shape == (6, 2)
    assert latent_features(latents, "meanstd").shape == (6, 4)
    with pytest.raises(
        DataError, match=r"differ in shape \(2x4x4 and 2x5x4.*'val.latent_map.features' 'flatten'"
    ):
        latent_features(latents, "flatten", "'val.latent_map.features'")


def test_a_validation_latent_map_of_images_of_different_sizes_is_drawn_with_mean_features(monkeypatch):
    from types import SimpleNamespace

    import utils.misc
    from utils.latent_maps.training_map import ValidationLatentMap, read_latent_map_options

    logged = []
    monkeypatch.setattr(utils.misc, "log_image", lambda opt, acc, image, name, step: logged.append(name))
    options = read_latent_map_options({"method": "pca", "features": "mean", "projector": False}, 1)
    latent_map = ValidationLatentMap(options)
    latent_map.begin(1)
    for size in (8, 8, 10, 10):
        latent_map.add(torch.randn(1, 2, size // 2, size // 2), torch.rand(1, 1, size, size))
    accelerator = SimpleNamespace(num_processes=1, is_main_process=True, trackers=[])
    latent_map.finish({"seed": 0}, accelerator, 1)
    assert logged == ["val_latent_map_pca"]


def test_analysis_collates_runs_of_one_size():
    from scripts.latent_analysis.encoding import _same_size_batches

    items = [{"gt": torch.zeros(1, s, s)} for s in (8, 8, 10, 8)]
    shapes = [tuple(b["gt"].shape) for b in _same_size_batches(items, "gt")]
    assert shapes == [(2, 1, 8, 8), (1, 1, 10, 10), (1, 1, 8, 8)]
