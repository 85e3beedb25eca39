"""Bad variants of the tiny configs, and the check every bad-input test makes: one `error:` line."""

import copy
import hashlib

from tests.helpers.configs import TINY_DENOISE, TINY_LDM, TINY_MULTITASK, TINY_VAE

DELETE = object()  # a value for `changed` that removes the key


def changed(base, changes):
    """A copy of `base` with `changes` applied; `a__b=v` sets `base["a"]["b"]`."""
    config = copy.deepcopy(base)
    for dotted, value in changes.items():
        block = config
        *parents, last = dotted.split("__")
        for part in parents:
            block = block.setdefault(part, {})
        if value is DELETE:
            block.pop(last, None)
        else:
            block[last] = value
    return config


def denoise(**changes):
    return changed(TINY_DENOISE, changes)


def vae(**changes):
    return changed(TINY_VAE, changes)


def ldm(**changes):
    config = changed(TINY_LDM, changes)
    config["train"].update(max_train_steps=2, validation_steps=2)
    config["datasets"]["train"]["size"] = 16
    return config


def multitask(**changes):
    config = changed(TINY_MULTITASK, changes)
    config["train"].update(max_train_steps=2, validation_steps=2)
    config["datasets"]["train"]["size"] = 32
    return config


def fingerprints(folder) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_sentence(err: str, status: int, expected: str, want_status: int = 2) -> None:
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == want_status, err[-2000:]
    assert len(error_lines) == 1 and expected in error_lines[0], err[-2000:]
    assert "Traceback" not in err
