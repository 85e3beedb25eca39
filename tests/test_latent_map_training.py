"""`val.latent_map` during training: the map image at the chosen steps only, to TensorBoard and to disk,
and TensorBoard projector files (vectors, sprite, metadata) that TensorBoard's projector plugin reads."""

import copy
import glob
import os

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_folder, run_trainer
from tests.helpers import TINY_VAE
from utils.errors import ConfigError

VAL_SIZE = 16


@pytest.fixture
def map_config(tmp_path):
    config = copy.deepcopy(TINY_VAE)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=6, validation_steps=2, checkpointing_steps=6)
    config["val"]["latent_map"] = {"method": "pca", "every": 4}
    return config


def tensorboard_images(run_dir: str) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for path in glob.glob(os.path.join(run_dir, "**", "events.out.tfevents.*"), recursive=True):
        events = EventAccumulator(path, size_guidance={"images": 0})
        events.Reload()
        for tag in events.Tags()["images"]:
            steps.setdefault(tag, []).extend(e.step for e in events.Images(tag))
    return {tag: sorted(s) for tag, s in steps.items()}


@pytest.mark.e2e
def test_the_map_is_logged_at_multiples_of_every_and_the_projector_reads_the_latents(map_config, tmp_path):
    assert run_trainer(map_config, tmp_path) == 0
    run = run_folder(map_config)
    images = tensorboard_images(run)
    # validations at steps 2, 4, 6 (and the final one at 6); the map only where step % every == 0
    assert images["val_latent_map_pca"] == [4]
    assert images["val_input_recon_diff"] == [2, 4, 6]
    saved = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run, "images", "val_latent_map_*")))
    assert saved == ["val_latent_map_pca_0000004.png"]
    with Image.open(os.path.join(run, "images", saved[0])) as png:
        assert min(png.size) > 200 and len(set(png.convert("L").getdata())) > 10  # a drawn figure

    # TensorBoard's own projector plugin, pointed at the run's logs, serves the embedding, its metadata
    # and its sprite through the routes its Projector tab requests.
    vectors, metadata, sprite = projector_served(os.path.join(run, "logs"))
    latent_dim = TINY_VAE["network"]["latent_channels"] * (16 // 2) ** 2  # one downsampling of 16x16
    assert vectors.shape == (VAL_SIZE, latent_dim)
    assert np.allclose(vectors.mean(axis=0), 0, atol=1e-4)  # standardised features
    rows = [line.split("\t") for line in metadata.strip("\n").split("\n")]
    assert rows[0] == ["name", "group"] and len(rows) == VAL_SIZE + 1
    assert sprite.size == (4 * 32, 4 * 32)  # 16 thumbnails of 32 px in a 4 x 4 sprite


def projector_served(logdir: str):
    """(vectors, metadata text, sprite image) as TensorBoard's projector plugin serves them over HTTP."""
    import io
    import json

    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    plugin = ProjectorPlugin(base_plugin.TBContext(logdir=logdir, data_provider=provider))
    apps = plugin.get_plugin_apps()

    def get(route, **args):
        response = Client(apps[route]).get(route, query_string=args)
        assert response.status_code == 200, (route, response.get_data(as_text=True))
        return response.get_data()

    (run,) = json.loads(get("/runs"))
    (embedding,) = json.loads(get("/info", run=run))["embeddings"]
    name = embedding["tensorName"]
    assert name.startswith("val_latents")
    shape = embedding["tensorShape"]
    vectors = np.frombuffer(get("/tensor", run=run, name=name), dtype=np.float32).reshape(shape)
    metadata = get("/metadata", run=run, name=name).decode()
    sprite = Image.open(io.BytesIO(get("/sprite_image", run=run, name=name)))
    return vectors, metadata, sprite


@pytest.mark.parametrize(
    "block, message",
    [
        ({"method": "umpa"}, "did you mean 'umap'"),
        ({"evrey": 4}, "has no key 'evrey' (did you mean 'every'?)"),
        ({"every": 3}, "not a multiple of 'train.validation_steps' (2)"),
    ],
)
def test_a_wrong_latent_map_block_is_named(block, message):
    from utils.latent_maps.training_map import read_latent_map_options

    with pytest.raises(ConfigError) as error:
        read_latent_map_options(block, validation_steps=2)
    assert message in str(error.value)


def test_training_without_a_map_never_imports_the_analysis_libraries():
    import subprocess
    import sys

    code = (
        "import sys; import models.vae.VAE_model; "
        "print(sorted(m for m in ('sklearn', 'umap', 'matplotlib', 'plotly') if m in sys.modules))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "[]"
