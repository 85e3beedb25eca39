"""Wrong values for every declared key, generated from the declarations themselves.

Each case is (dotted key, label, value, base): the base is the tiny config whose model, dataset or arch
reads the key. The declarations are the trainer's blocks (`utils/config/schema.py`), every registered
model's and dataset's `config_keys`, and every arch config's signature (read as `Key`s here, as
`utils/config/values.py` reads it). Bases come from tests/helpers/configs.py where a tiny run exists (those
cases can train), and from the shipped experiments otherwise (those are checked by the config check only).
"""

import copy
import functools
import inspect
import math
import os
from dataclasses import dataclass

from tests.helpers.configs import (
    TINY_CONTROLNET,
    TINY_DENOISE,
    TINY_LDM,
    TINY_MULTITASK,
    TINY_VAE,
)
from tests.helpers.runs import ROOT
from utils.config.schema import BLOCKS, DATASET, Key

HUGE = 2**70  # past every 64-bit integer that numpy and torch hold
# The tiny configs by name; the shipped experiments below are the bases of the other plugins' keys.
TINY = {
    "denoise": TINY_DENOISE,
    "vae": TINY_VAE,
    "ldm": TINY_LDM,
    "multitask": TINY_MULTITASK,
}
# The bases whose accepted values a test trains with (one step: a few seconds each); the others' values
# are checked by the config check only, to keep the suite's time: a PSF base adds 10 s, a VQ or 3-D run
# takes 15 s or more on a CPU.
TRAINED = ("denoise", "vae", "ldm", "multitask")
SHIPPED = {
    "controlnet": TINY_CONTROLNET,
    "psf": "checkpoints/PSF/psf_mlp.yml",
    "psf_emb": "checkpoints/PSF/psf_emb.yml",
    "vq": "checkpoints/VAE/vq.yml",
    "vae3d": "checkpoints/VAE/3d.yml",
    "vae3d_psf": "checkpoints/VAE/3d_psf.yml",
    "ldm_vector": "checkpoints/LDM/exp.yml",
    "vae_tif": "checkpoints/VAE/tif.yml",
    "ldm_tif": "checkpoints/LDM/tif.yml",
}
MODEL_BASES = {
    "Denoise_model": "denoise",
    "VAE_model": "vae",
    "LDM_model": "ldm",
    "MultiTask_model": "multitask",
    "ControlNet_model": "controlnet",
    "PSF_model": "psf",
    "PSF_Emb_model": "psf_emb",
}


@dataclass(frozen=True)
class Case:
    key: str  # the dotted key, as a message must name it
    label: str
    value: object
    base: str

    @property
    def id(self) -> str:
        return f"{self.base}:{self.key}={self.label}"


def base_config(name: str) -> dict:
    """A copy of the plain config of base `name` (a tiny config, or a shipped experiment as the trainer reads it)."""
    return copy.deepcopy(_loaded(name))


@functools.cache
def _loaded(name: str) -> dict:
    source = TINY.get(name) or SHIPPED[name]
    if isinstance(source, dict):
        config = copy.deepcopy(source)
        config["path"]["root"] = "experiments"  # each run sets its own
        return config
    from utils.config.load import load_options

    return load_options(os.path.join(ROOT, source), []).to_dict()


def with_value(base: dict, dotted: str, value) -> dict:
    """A copy of `base` with the dotted key set (blocks on the way created)."""
    config = copy.deepcopy(base)
    *parents, last = dotted.split(".")
    block = config
    for part in parents:
        if not isinstance(block.get(part), dict):
            block[part] = {}
        block = block[part]
    block[last] = value
    return config


def values_for(key: Key) -> list[tuple[str, object]]:
    """(label, value) pairs that a key declared as `key` must refuse in one sentence, or accept and run."""
    cases = []
    if not key.nullable and key.kind != "block":
        cases.append(("null", None))
    if key.kind in ("int", "float"):
        cases += [("text", "1"), ("bool", True), ("empty list", []), ("nan", math.nan), ("inf", math.inf)]
        if key.kind == "int":
            cases += [("fraction", 2.5), ("huge", HUGE), ("minus huge", -HUGE)]
        for bound, step in ((key.minimum, -1), (key.maximum, 1)):
            if bound is not None:
                exact = int(bound) if key.kind == "int" else float(bound)
                cases += [(f"boundary {exact}", exact), (f"past {exact}", exact + step)]
        if key.minimum is None:
            cases.append(("negative", -1 if key.kind == "int" else -1.0))
    elif key.kind == "str":
        cases += [("empty", ""), ("number", 5), ("list", ["a"])]
        if key.choices:
            cases.append(("unknown choice", "zzz"))
    elif key.kind == "bool":
        cases += [("text", "yes"), ("number", 2)]
    elif key.kind == "str|list":
        cases += [("empty list", []), ("number", 5), ("unknown in list", ["zzz"])]
    elif key.kind in ("int|list", "float|list"):
        cases += [("empty list", []), ("text in list", ["1"]), ("nan in list", [math.nan])]
        if key.kind == "int|list":
            cases.append(("huge in list", [HUGE]))
    elif key.kind == "block":
        cases += [("number", 5), ("text", "x")]
    return cases


def arch_key(param: inspect.Parameter) -> Key | None:
    """An arch config's parameter read as a `Key` (kind from its annotation or default), or None."""
    from utils.config.values import _POSITIVE, _expected_types

    expected = _expected_types(param)
    if expected is None:
        return None
    allowed, nullable = expected
    kinds = [k for t, k in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")) if t in allowed]
    if allowed & {list, tuple}:
        kind = (
            "int|list"
            if isinstance(param.default, (list, tuple))
            and all(isinstance(v, int) and not isinstance(v, bool) for v in param.default)
            else None
        )
    else:
        kind = "float" if "float" in kinds else (kinds[0] if len(kinds) == 1 else None)
    if kind is None:
        return None
    minimum = None
    if kind in ("int", "int|list") and _POSITIVE.search(param.name):
        default = param.default
        minimum = 1 if isinstance(default, int) and not isinstance(default, bool) and default >= 1 else 0
    return Key(param.default, kind, "", minimum=minimum, nullable=nullable)


def _arch_bases() -> dict[str, tuple[str, str]]:
    """arch type -> (base, dotted block that names it), from the bases themselves."""
    found = {}
    for name in [*TINY, *SHIPPED]:
        config = base_config(name)
        for where, block in _blocks(config):
            if where.rsplit(".", 1)[-1].startswith("network") and isinstance(block.get("type"), str):
                found.setdefault(block["type"], (name, where))
    return found


def _blocks(config: dict, prefix: str = ""):
    for name, value in config.items():
        if isinstance(value, dict):
            where = f"{prefix}{name}"
            yield where, value
            yield from _blocks(value, where + ".")


def _dataset_bases() -> dict[str, str]:
    found = {}
    for name in [*TINY, *SHIPPED]:
        for block in (base_config(name).get("datasets") or {}).values():
            found.setdefault(block.get("type"), name)
    return found


def declared_keys() -> list[tuple[str, Key, str]]:
    """(dotted key, declaration, base) for every key a run can be given."""
    from dataset import DATASET_REGISTRY
    from models import MODEL_REGISTRY, model_names
    from models.archs import available_arch_types, find_arch
    from utils.config.arch_signature import config_parameters

    keys = [(f"{path}.{name}" if path else name, key, "denoise") for path, block in BLOCKS.items()
            for name, key in block.items()]  # fmt: skip
    keys += [(f"datasets.train.{name}", key, "denoise") for name, key in DATASET.items()]
    for model in model_names():
        base = MODEL_BASES[model]
        for path, block in (MODEL_REGISTRY.get(model).config_keys or {}).items():
            keys += [(f"{path}.{name}" if path else name, key, base) for name, key in block.items()]
    datasets = _dataset_bases()
    for dataset in DATASET_REGISTRY.names():
        if dataset not in datasets:
            continue
        declared = DATASET_REGISTRY.get(dataset).config_keys or {}
        keys += [(f"datasets.train.{name}", key, datasets[dataset]) for name, key in declared.items()
                 if name not in DATASET]  # fmt: skip
    arches = _arch_bases()
    for arch in available_arch_types():
        if arch not in arches:
            continue
        base, where = arches[arch]
        for name, param in config_parameters(find_arch(arch)[0]).items():
            key = arch_key(param)
            if key is not None:
                keys.append((f"{where}.{name}", key, base))
    return keys


def cases() -> list[Case]:
    """Every wrong value of every declared key, each on the base that reads the key."""
    seen, result = set(), []
    for dotted, key, base in declared_keys():
        if (dotted, base) in seen:
            continue
        seen.add((dotted, base))
        result += [Case(dotted, label, value, base) for label, value in values_for(key)]
    return result


def config_check(config: dict) -> str | None:
    """The one line `trainer.py` would print for `config` refused by the config check, or None when the
    check accepts it. The files it names are not looked at: the bases name runs and data of other tests."""
    from unittest import mock

    import trainer
    from utils.config.load import Opt
    from utils.errors.files import describe_failure

    with mock.patch("engine.preflight.check_files"):
        try:
            trainer.check_config(Opt(config))
        except Exception as error:
            return describe_failure(error)
    return None


def by_key(all_cases: list[Case]) -> dict[str, list[Case]]:
    """The cases grouped as `base:key`, the id a failing key shows up under."""
    groups: dict[str, list[Case]] = {}
    for case in all_cases:
        groups.setdefault(f"{case.base}:{case.key}", []).append(case)
    return groups
