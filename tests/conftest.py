"""Fixtures shared by the test modules, and the `e2e` guard: a test that runs the trainer carries the
`e2e` mark, so `pytest -m "not e2e"` runs the unit tests alone. Shared configs and helpers live in
`tests/helpers/`; the names below are imported here too for modules that take them from conftest."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.helpers import (  # noqa: E402, F401 (re-exported for `from tests.conftest import ...`)
    TINY_DENOISE,
    TINY_VAE,
    in_folder,
    read_scalars,
    reset_accelerate,
    run_folder,
    run_trainer,
    write_config,
)

TRAINING_COMMANDS = ("trainer.py", "torchrun", "accelerate")


@pytest.fixture
def tiny_config(tmp_path):
    return in_folder(TINY_DENOISE, tmp_path)


@pytest.fixture
def vae_config(tmp_path):
    return in_folder(TINY_VAE, tmp_path)


@pytest.fixture(scope="session")
def stage1(tmp_path_factory):
    """A tiny VAE run whose final/net_g stage 2 loads (trained once for the session)."""
    tmp = tmp_path_factory.mktemp("stage1")
    config = in_folder(TINY_VAE, tmp)
    config["train"].update(max_train_steps=20, validation_steps=20, checkpointing_steps=1000)
    assert run_trainer(config, tmp) == 0
    return os.path.join(run_folder(config), "final", "net_g")


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture(autouse=True)
def _unit_tests_run_no_trainer(request, monkeypatch):
    """A test without the `e2e` mark that starts the trainer fails, naming the mark it needs."""
    if request.node.get_closest_marker("e2e"):
        return
    import trainer

    def refuse(*args, **kwargs):
        pytest.fail(f"{request.node.nodeid} runs the trainer: mark it `@pytest.mark.e2e`", pytrace=False)

    original_popen = subprocess.Popen.__init__

    def checked_popen(self, args, *rest, **kwargs):
        words = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
        if any(name in str(word) for word in words for name in TRAINING_COMMANDS):
            refuse()
        original_popen(self, args, *rest, **kwargs)

    monkeypatch.setattr(trainer, "main", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", checked_popen)
