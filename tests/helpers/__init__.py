"""What several test modules share: the tiny configs, the in-process trainer run, readers of a run's
files. Test modules import from here (or the fixtures from conftest.py), never from one another."""

from tests.helpers.configs import (
    MASK_DATA,
    TINY_CONTROLNET,
    TINY_DENOISE,
    TINY_EMB_NETWORK,
    TINY_LDM,
    TINY_MASK_LDM,
    TINY_MULTITASK,
    TINY_PSF,
    TINY_VAE,
    emb_config,
    in_folder,
    ldm_config,
    load_experiment,
    multitask_config,
    opt_with,
)
from tests.helpers.runs import (
    ROOT,
    read_scalars,
    record_validations,
    reset_accelerate,
    run_folder,
    run_trainer,
    write_config,
)

__all__ = [
    "MASK_DATA",
    "ROOT",
    "TINY_CONTROLNET",
    "TINY_DENOISE",
    "TINY_EMB_NETWORK",
    "TINY_LDM",
    "TINY_MASK_LDM",
    "TINY_MULTITASK",
    "TINY_PSF",
    "TINY_VAE",
    "emb_config",
    "in_folder",
    "ldm_config",
    "load_experiment",
    "multitask_config",
    "opt_with",
    "read_scalars",
    "record_validations",
    "reset_accelerate",
    "run_folder",
    "run_trainer",
    "write_config",
]
