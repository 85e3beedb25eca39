"""The translation layer: every file-level failure becomes one sentence naming the path."""

import errno
import json

import numpy as np
import pytest

from utils.errors.files import as_user_error, describe_failure, file_errors


@pytest.mark.parametrize(
    "code, expected",
    [
        (errno.ENOSPC, "The disk is full while writing '/runs/a/model.safetensors' (about 2.0 MB is needed"),
        (errno.EACCES, "Permission denied for '/runs/a/model.safetensors'"),
        (errno.EROFS, "'/runs/a/model.safetensors' is on a read-only file system"),
        (errno.ENOTDIR, "A part of the path '/runs/a/model.safetensors' is a file, not a folder"),
        (errno.EIO, "Cannot use '/runs/a/model.safetensors': Input/output error."),
    ],
)
def test_os_errors_name_the_path(code, expected):
    error = OSError(code, __import__("os").strerror(code), "/runs/a/model.safetensors")
    message = str(as_user_error(error, needed_bytes=2 * 1024 * 1024))
    assert expected in message and "\n" not in message


def test_format_errors_name_the_file(tmp_path):
    from safetensors.torch import load_file

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00" * 4)
    with pytest.raises(OSError, match="model.safetensors' is not a readable safetensors file"):
        with file_errors(str(bad)):
            load_file(str(bad))
    state = tmp_path / "trainer_state.json"
    state.write_text('{"loop": ')
    with pytest.raises(OSError, match=r"trainer_state.json' is not valid JSON \(line 1"):
        with file_errors(str(state)):
            json.loads(state.read_text())
    with pytest.raises(OSError, match="is not UTF-8 text"):
        with file_errors("notes.yml"):
            b"caf\xe9".decode("utf-8")


def test_a_half_written_ldm_json_is_named_by_generation_and_at_start(tmp_path):
    from engine.preflight import check_files
    from models.ldm.pipeline import LDMPipeline
    from utils.errors import ConfigError

    final = tmp_path / "ldm" / "final"
    final.mkdir(parents=True)
    (final / "ldm.json").write_text('{"unet": "unet", "vae": {"pretra')
    with pytest.raises(OSError, match=r"ldm.json' is not valid JSON \(line 1.*truncated or corrupt"):
        LDMPipeline.from_final(str(final))
    for key in ("path.pretrained", "ldm.pretrained", "vae.pretrained"):
        block, name = key.split(".")
        with pytest.raises(ConfigError, match=rf"^'{key}': '.*ldm.json' is not valid JSON"):
            check_files({block: {name: str(final)}})


def test_torch_write_failure_reads_as_a_full_disk_and_cleans_the_staging_folder(tmp_path):
    staging = tmp_path / "checkpoint-6.tmp"
    staging.mkdir()
    (staging / "part").write_bytes(b"half")
    with pytest.raises(OSError, match="The disk is full while writing"):
        with file_errors(str(staging), needed_bytes=lambda: 1000, cleanup=str(staging)):
            raise RuntimeError(
                "[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: file write failed"
            )
    assert not staging.exists()


def test_a_worker_error_is_reported_as_the_workers_own_sentence():
    from utils.errors import DataError

    text = (
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        "  File \"x.py\", line 1, in f\nutils.errors.DataError: '/data/b.tif' is not a readable TIF file (bad).\n"
    )
    assert describe_failure(DataError(text)) == "'/data/b.tif' is not a readable TIF file (bad)."
    assert describe_failure(KeyError("gt")).startswith("KeyError: 'gt' (unexpected; rerun with --debug")


def test_metric_means_leave_out_non_finite_batches_so_metrics_json_stays_valid():
    from utils.misc import MetricSummary

    summary = MetricSummary()
    summary.add({"psnr": 30.0, "mse": float("nan")}, n=2)
    summary.add({"psnr": float("inf"), "mse": 0.5}, n=2)
    assert summary.means() == {"psnr": 30.0, "mse": 0.5}
    json.dumps(summary.means(), allow_nan=False)
    assert np.isfinite(list(summary.means().values())).all()


def test_batch_errors_name_the_dataset_and_leave_other_errors_alone():
    import torch

    from utils.errors import DataError
    from utils.errors.batches import batch_errors

    opt = {"datasets": {"train": {"type": "TIFFolderDataset"}}, "val": {"metrics": {}}}
    batch = {"gt": torch.zeros(2, 1, 8, 8)}
    with pytest.raises(
        DataError,
        match=r"batch key 'cond', which 'datasets.train' \(TIFFolderDataset\) does not give; its batches have: gt",
    ):
        with batch_errors(opt, "train", batch):
            batch["cond"]
    with pytest.raises(
        DataError, match="expects 1 input channels but the batch from 'datasets.train'.* has 3"
    ):
        with batch_errors(opt, "train", batch):
            torch.nn.Conv2d(1, 4, 3)(torch.zeros(2, 3, 8, 8))
    with pytest.raises(
        DataError, match="expects 1 input features but the batch from 'datasets.train'.* gives 3"
    ):
        with batch_errors(opt, "train", batch):
            torch.nn.Linear(1, 4)(torch.zeros(2, 3))
    with pytest.raises(KeyError):  # a key the batch has: some other bug, not the data's
        with batch_errors(opt, "train", batch):
            raise KeyError("gt")
    with pytest.raises(RuntimeError, match="unrelated"):
        with batch_errors(opt, "train", batch):
            raise RuntimeError("unrelated")


def test_a_non_user_error_from_a_worker_keeps_its_type():
    text = (
        "Caught ValueError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nValueError: could not convert /data/a.csv row 3\n'
    )
    assert describe_failure(ValueError(text)) == "ValueError: could not convert /data/a.csv row 3"


def test_a_full_disk_while_writing_a_validation_image_names_it(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import utils.misc as misc

    def full(grid, path):
        raise OSError(errno.ENOSPC, "No space left on device")  # PIL's write error carries no file name

    monkeypatch.setattr(misc, "save_png", full)
    opt = {"path": {"root": str(tmp_path)}, "name": "x", "experiment_key": "k", "val": {}}
    accelerator = SimpleNamespace(is_main_process=True, trackers=[], project_dir=str(tmp_path / "run"))
    with pytest.raises(OSError, match=r"The disk is full while writing '.*images/val_0000003.png' \(about"):
        misc.log_image(opt, accelerator, np.zeros((1, 1, 8, 8)), "val", 3)


@pytest.mark.parametrize(
    "key, secret",
    [
        ("hub_token", True),
        ("train.hf_token", True),
        ("comet.auth", True),
        ("COMET_API_KEY", True),
        ("db_password", True),
        ("mytoken", True),
        ("pad_token_id", False),
        ("num_tokens", False),
        ("author", False),
        ("tokenizer", False),
        ("tokens_per_patch", False),
        ("experiment_key", False),
    ],
)
def test_secret_looking_key_names(key, secret):
    from utils.config.secrets import looks_like_secret_key

    assert looks_like_secret_key(key) is secret


@pytest.mark.parametrize(
    "text, token",
    [
        ("hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7", True),
        ("my project hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7", True),
        ("api_org_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7", True),
        (
            "hf_baseline_run2026",
            False,
        ),  # a name that starts like a token, without a token's 30 to 40 characters
        ("PSFLatentDiffusionRun2026December06FinalBaseline", False),  # long CamelCase: a name, not a token
        ("MyExperimentRun2026Dec06X", False),  # 25 characters, but words: not a Comet key's shape
        ("ResNet50Run3Dec2026Final1", False),
        ("Ab3dEf6hIj9lMn2pQr5tUv8xY", True),  # 25 letters and digits: a Comet API key's shape
        ("SyntheticShapesDataset", False),
        ("checkpoints/VAE/exp.yml", False),
        ("0123456789abcdef0123456789abcdef", False),  # a hex run id
        ("user/my-model", False),
    ],
)
def test_token_looking_values(text, token):
    from utils.config.secrets import looks_like_token

    assert looks_like_token(text) is token
