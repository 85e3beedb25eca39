"""`train.validation_epochs` / `train.checkpointing_epochs`: validation and checkpoints at epoch ends."""

import copy
import os

import pytest

from tests.conftest import run_folder, run_trainer
from tests.helpers.runs import read_scalars
from utils.config.cadence import due, resolve_cadences
from utils.errors import ConfigError


def test_neither_key_fills_the_steps_default_and_both_are_refused():
    train = {"validation_epochs": 2, "checkpointing_steps": None}
    resolve_cadences(train)
    assert train == {"validation_epochs": 2, "checkpointing_steps": 1000}
    with pytest.raises(ConfigError, match="'train.validation_steps' .* and 'train.validation_epochs'"):
        resolve_cadences({"validation_steps": 5, "validation_epochs": 1})


def test_an_epoch_cadence_fires_only_at_the_end_of_every_nth_epoch():
    train = {"validation_epochs": 2}
    assert not due(train, "validation", 3, 0, True)  # end of epoch 0
    assert not due(train, "validation", 5, 1, False)  # inside epoch 1
    assert due(train, "validation", 6, 1, True)  # end of epoch 1


@pytest.mark.e2e
def test_epoch_cadence_lands_on_epoch_ends_across_a_mid_epoch_resume(tiny_config, tmp_path):
    # 40 samples / 8 = 5 micro-batches an epoch; 2 per update: 3 updates an epoch (the last of one
    # micro-batch), so the epochs end at steps 3, 6 and 9.
    tiny_config["datasets"]["train"]["size"] = 40
    tiny_config["train"].update(
        gradient_accumulation_steps=2,
        max_train_steps=4,
        validation_steps=None,
        validation_epochs=1,
        checkpointing_steps=4,  # the first run stops mid-epoch 1 with checkpoint-4
        checkpoints_total_limit=None,
    )
    assert run_trainer(tiny_config, tmp_path) == 0
    resumed = copy.deepcopy(tiny_config)
    resumed["path"]["resume_from_checkpoint"] = "latest"
    resumed["train"].update(max_train_steps=9, checkpointing_steps=None, checkpointing_epochs=2)
    assert run_trainer(resumed, tmp_path, name="resume.yml") == 0

    run = run_folder(tiny_config)
    # Validation at each epoch end, and at the last step of each launch (4: the first run's end).
    assert sorted(read_scalars(run)["val_psnr"]) == [3, 4, 6, 9]
    checkpoints = sorted(int(n.split("-")[1]) for n in os.listdir(run) if n.startswith("checkpoint-"))
    assert checkpoints == [4, 6]  # 6: the end of epoch 1, the second of every 2


def test_a_latent_map_every_n_steps_is_refused_under_an_epoch_cadence():
    from utils.latent_maps.training_map import read_latent_map_options

    with pytest.raises(ConfigError, match="'val.latent_map.every' is 4 steps, but 'train.validation_epochs'"):
        read_latent_map_options({"every": 4}, None, validation_epochs=1)
    assert read_latent_map_options({"method": "pca"}, None, validation_epochs=1)["every"] is None
