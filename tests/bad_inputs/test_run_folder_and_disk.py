"""The run folder and the disk: a folder or file where the other is needed, a read-only or unwritable
root, a damaged checkpoint or weights of another size, and faults during a run; each is one sentence
that leaves every existing file as it was."""

import copy
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_folder, run_trainer, write_config
from tests.helpers.bad_inputs import assert_one_sentence, denoise, fingerprints


@pytest.mark.e2e
def test_opt_given_a_folder_or_a_non_utf8_file(tmp_path, capsys):
    import trainer

    assert trainer.main(["-opt", str(tmp_path)]) == 2
    assert_one_sentence(capsys.readouterr().err, 2, "is a folder; give the YAML file itself")
    latin1 = tmp_path / "latin1.yml"
    latin1.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert trainer.main(["-opt", str(latin1)]) == 2
    assert_one_sentence(capsys.readouterr().err, 2, "latin1.yml' is not UTF-8 text (byte 0xe9")


@pytest.mark.e2e
def test_read_only_root_is_refused_before_anything_is_written(tmp_path, capsys):
    import subprocess

    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        config = denoise()
        config["path"]["root"] = str(mount / "experiments")
        status = run_trainer(config, tmp_path)
        assert_one_sentence(capsys.readouterr().err, status, "cannot be written (read-only or no permission)")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.e2e
def test_unwritable_run_folder_during_setup_is_one_sentence(tmp_path, capsys, monkeypatch):
    """An OSError anywhere in set-up (here: EACCES on the log file) names the path, exit 2."""
    import errno
    import logging

    def refuse(self, filename, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", filename)

    monkeypatch.setattr(logging.FileHandler, "__init__", refuse)
    config = denoise()
    config["path"]["root"] = str(tmp_path / "experiments")
    status = run_trainer(config, tmp_path)
    assert_one_sentence(capsys.readouterr().err, status, "train.log'; choose a 'path.root' you can write to")


@pytest.mark.e2e
def test_existing_run_folder_is_refused_and_left_intact(tiny_config, tmp_path, capsys):
    tiny_config["train"].update(max_train_steps=2, checkpointing_steps=2, validation_steps=2)
    assert run_trainer(tiny_config, tmp_path) == 0
    run = run_folder(tiny_config)
    before = {f: os.path.getmtime(os.path.join(dp, f)) for dp, _, fs in os.walk(run) for f in fs}
    capsys.readouterr()
    assert run_trainer(tiny_config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "resume_from_checkpoint" in err and "Traceback" not in err
    after = {f: os.path.getmtime(os.path.join(dp, f)) for dp, _, fs in os.walk(run) for f in fs}
    assert after == before


@pytest.mark.e2e
@pytest.mark.parametrize(
    "key, value",
    [("name", ".."), ("experiment_key", ".."), ("name", "."), ("tracker_project_name", "..")],
)
def test_names_cannot_leave_path_root(tiny_config, tmp_path, capsys, key, value):
    tiny_config["path"]["root"] = str(tmp_path / "a" / "b" / "experiments")
    tiny_config[key] = value
    assert run_trainer(tiny_config, tmp_path) == 2
    err = capsys.readouterr().err
    assert f"'{key}' is '{value}'" in err and "path.root" in err
    assert sorted(os.listdir(tmp_path)) == ["exp.yml"]  # nothing written anywhere


@pytest.mark.e2e
def test_a_second_trainer_on_the_same_run_is_refused_naming_the_first(tiny_config, tmp_path, capsys):
    tiny_config["train"].update(max_train_steps=100000, checkpointing_steps=20, validation_steps=100000)
    path = write_config(tiny_config, tmp_path / "first.yml")
    run = run_folder(tiny_config)
    first = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "trainer.py"), "-opt", path],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not os.path.isfile(os.path.join(run, "run.lock")):
            assert first.poll() is None and time.time() < deadline, "the first trainer never started"
            time.sleep(0.2)
        second = copy.deepcopy(tiny_config)
        second["path"]["resume_from_checkpoint"] = "latest"
        capsys.readouterr()
        assert run_trainer(second, tmp_path, name="second.yml") == 2
        err = capsys.readouterr().err
        assert f"in use by another trainer (process {first.pid} " in err
        # The first trainer was not disturbed: it goes on checkpointing.
        while not [d for d in os.listdir(run) if d.startswith("checkpoint-") and not d.endswith(".tmp")]:
            assert first.poll() is None and time.time() < deadline, "the first trainer stopped"
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGTERM)  # preemption: checkpoint at the step boundary, exit 0
        status = first.wait(timeout=120)
    assert status == 0
    assert not os.path.exists(os.path.join(run, "run.lock"))  # released at the end


def test_latest_without_a_finished_run_names_the_folder(tmp_path):
    from models.ldm.frozen_vae import vae_folder
    from utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'.*nothing' holds no finished stage-1 run"):
        vae_folder(str(tmp_path / "nothing" / "latest" / "final" / "net_g"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run with checkpoint-3 and final/, copied by the tests that damage it."""
    tmp_path = tmp_path_factory.mktemp("finished")
    config = denoise()
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=3, checkpointing_steps=3, validation_steps=3)
    assert run_trainer(config, tmp_path) == 0
    return config


def _copy_run(finished_run, tmp_path, **path_changes):
    import shutil

    from tests.conftest import run_folder

    config = copy.deepcopy(finished_run)
    root = tmp_path / "experiments"
    shutil.copytree(finished_run["path"]["root"], root)
    config["path"]["root"] = str(root)
    config["path"].update(path_changes)
    config["train"]["max_train_steps"] = 4
    return config, os.path.join(run_folder(config), "checkpoint-3")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda c: os.remove(os.path.join(c, "random_states_0.pkl")), "has no random_states_0.pkl"),
        (
            lambda c: open(os.path.join(c, "random_states_0.pkl"), "wb").close(),
            "random_states_0.pkl' is empty",
        ),
        (lambda c: open(os.path.join(c, "optimizer.bin"), "wb").close(), "optimizer.bin' is empty (0 bytes)"),
        (
            lambda c: open(os.path.join(c, "trainer_state.json"), "w").write('{"loop": '),
            "trainer_state.json' is not valid JSON",
        ),
        (
            lambda c: open(os.path.join(c, "net_g", "model.safetensors"), "r+b").truncate(100),
            "model.safetensors' is not a readable safetensors file",
        ),
        (
            lambda c: open(os.path.join(c, "optimizer.bin"), "r+b").truncate(200),
            "optimizer.bin' is truncated",
        ),
        (lambda c: os.remove(os.path.join(c, "optimizer.bin")), "it has no 'optimizer.bin'"),
        (lambda c: os.remove(os.path.join(c, "trainer_state.json")), "it has no 'trainer_state.json'"),
    ],
    ids=[
        "no RNG state",
        "empty RNG state",
        "empty optimizer",
        "corrupt trainer_state",
        "truncated weights",
        "truncated optimizer",
        "no optimizer",
        "no trainer_state",
    ],
)
def test_resume_from_a_damaged_checkpoint_names_the_file(finished_run, tmp_path, capsys, damage, expected):
    config, checkpoint = _copy_run(finished_run, tmp_path, resume_from_checkpoint="latest")
    damage(checkpoint)
    hashes = fingerprints(tmp_path / "experiments")
    status = run_trainer(config, tmp_path)
    assert_one_sentence(capsys.readouterr().err, status, expected)
    after = fingerprints(tmp_path / "experiments")
    for path, digest in hashes.items():  # every file of the run, its config.yml and log too, as it was
        assert after.get(path) == digest, path


@pytest.mark.e2e
def test_a_file_where_the_run_folder_should_be(tmp_path, capsys):
    from tests.conftest import run_folder

    config = denoise()
    config["path"]["root"] = str(tmp_path / "experiments")
    os.makedirs(os.path.dirname(run_folder(config)))
    with open(run_folder(config), "w") as f:
        f.write("notes")
    status = run_trainer(config, tmp_path)
    assert_one_sentence(capsys.readouterr().err, status, "is a file where a folder is needed")
    assert open(run_folder(config)).read() == "notes"


@pytest.mark.e2e
def test_resume_without_rng_state_is_allowed_when_not_strict(finished_run, tmp_path):
    config, checkpoint = _copy_run(
        finished_run, tmp_path, resume_from_checkpoint="latest", resume_strict=False
    )
    os.remove(os.path.join(checkpoint, "random_states_0.pkl"))
    assert run_trainer(config, tmp_path) == 0


@pytest.mark.e2e
def test_pretrained_weights_of_another_size_name_the_parameter_and_both_shapes(
    finished_run, tmp_path, capsys
):
    from tests.conftest import run_folder

    config = copy.deepcopy(finished_run)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["path"]["pretrained"] = os.path.join(run_folder(finished_run), "final")
    config["network"]["hidden_channels"] = 2 * finished_run["network"]["hidden_channels"]
    status = run_trainer(config, tmp_path)
    err = capsys.readouterr().err
    assert_one_sentence(err, status, "size mismatch for ")
    assert "another 'network' block" in err
    assert not os.path.exists(run_folder(config))  # a failed start leaves nothing behind


@pytest.mark.e2e
def test_nan_skip_stops_after_too_many_skipped_steps_in_a_row(tmp_path, monkeypatch, capsys):
    from models.example.Denoise_model import Denoise_model

    original = Denoise_model.optimize_parameters

    def diverged(self):
        losses = original(self)
        return {k: v * float("nan") for k, v in losses.items()} if self.global_step >= 1 else losses

    monkeypatch.setattr(Denoise_model, "optimize_parameters", diverged)
    config = denoise()
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(nan_policy="skip", max_consecutive_skipped_steps=3, max_train_steps=20)
    status = run_trainer(config, tmp_path)
    assert_one_sentence(
        capsys.readouterr().err,
        status,
        "not finite for 3 steps in a row (train.max_consecutive_skipped_steps: 3)",
    )
    from tests.conftest import run_folder

    assert not os.path.exists(os.path.join(run_folder(config), "final"))


@pytest.mark.e2e
def test_a_second_ctrl_c_stops_at_once_with_130(tmp_path, monkeypatch, capsys):
    import signal

    from models.example.Denoise_model import Denoise_model

    original = Denoise_model.optimize_parameters

    def interrupted_twice(self):
        if self.global_step == 1:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(Denoise_model, "optimize_parameters", interrupted_twice)
    config = denoise()
    config["path"]["root"] = str(tmp_path / "experiments")
    status = run_trainer(config, tmp_path)
    assert_one_sentence(capsys.readouterr().err, status, "stopped at once by Ctrl-C", want_status=130)
    assert "KeyboardInterrupt" not in capsys.readouterr().err
