"""A run imports only the libraries it uses: a tiny run of a diffusers arch, from its start to its final
save, never executes MONAI, comet_ml, bitsandbytes, UMAP or plotly (bench/startup.py measures what
each import costs a run's start)."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TINY_VAE, in_folder, write_config

OPTIONAL = ("monai", "comet_ml", "bitsandbytes", "umap", "plotly")
# Runs trainer.main in a fresh interpreter, then lists the modules that were imported (a placeholder of
# utils/cli/imports.py is not), then reads bitsandbytes' 8-bit AdamW, as `use_8bit_adam` does.
RUN_AND_LIST = """
import json, sys
import trainer
from utils.cli.imports import is_deferred
status = trainer.main(["-opt", sys.argv[1]])
imported = sorted(name for name, module in sys.modules.items() if not is_deferred(module))
import bitsandbytes
adam = bitsandbytes.optim.AdamW8bit.__name__
print(json.dumps({"status": status, "modules": imported, "adam": adam}))
"""


@pytest.mark.e2e
def test_a_tiny_diffusers_run_never_imports_the_libraries_it_does_not_use(tmp_path):
    config = in_folder(TINY_VAE, tmp_path)
    config["train"].update(max_train_steps=2, validation_steps=2, checkpointing_steps=2)
    path = write_config(config, tmp_path / "exp.yml")
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, path], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 0, done.stderr[-3000:]
    modules = set(report["modules"])
    # The run did train, validate and save through diffusers' network.
    assert {"diffusers.models.autoencoders.autoencoder_kl", "accelerate", "safetensors.torch"} <= modules
    loaded = sorted(m for m in modules if m.split(".")[0] in OPTIONAL)
    assert loaded == []
    assert report["adam"] == "AdamW8bit"  # deferred, not gone: the first read imports it
