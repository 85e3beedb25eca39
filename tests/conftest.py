"""Fixtures shared by the test modules, and the `e2e` guard: a test that runs the trainer (or a script
end to end, like the latent-map analysis) carries the `e2e` mark, so `pytest -m "not e2e"` runs the unit
tests alone. Shared configs and helpers live in
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

TRAINING_PROGRAMS = {"trainer.py", "torchrun", "accelerate"}

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    # The workers (pyproject's `-n 2`) share the cores: each takes its part, not all of them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


# The longest module (from `pytest --durations`), started first: pyproject's `--dist loadfile
# --no-loadscope-reorder` hands whole files to the two workers in collection order, so it does not end
# the run alone on one worker while the other idles. Only it: starting the nine longest modules first
# (several of them subprocess-heavy: torchrun, trainer launches) took 10:23 against 9:37.
LONGEST_FIRST = ("test_readme_commands.py",)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test without the `e2e` mark that starts the trainer, in its body or in a fixture it sets up,
    fails naming the mark it needs."""
    if item.get_closest_marker("e2e"):
        yield
        return
    import trainer

    def refuse(*args, **kwargs):
        pytest.fail(f"{item.nodeid} runs the trainer: mark it `@pytest.mark.e2e`", pytrace=False)

    def checked_popen(self, args, *rest, **kwargs):
        if isinstance(args, str | bytes | os.PathLike):
            words = os.fsdecode(args).split()
        else:
            args = words = list(args)
        if any(os.path.basename(str(word)) in TRAINING_PROGRAMS for word in words):
            refuse()
        original_popen(self, args, *rest, **kwargs)

    original_main, original_popen = trainer.main, subprocess.Popen.__init__
    trainer.main, subprocess.Popen.__init__ = refuse, checked_popen
    try:
        yield
    finally:
        trainer.main, subprocess.Popen.__init__ = original_main, original_popen
