"""A run imports only the libraries it uses: a tiny run of a diffusers arch, from its start to its final
save, never executes MONAI, comet_ml, bitsandbytes, UMAP or plotly, nor does a script that loads its
weights (bench/startup.py measures what each import costs a run's start)."""

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

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
# Runs a script as `python scripts/NAME.py ARGS...` would, then lists the modules that were imported.
SCRIPT_AND_LIST = """
import json, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as done:
    status = done.code
from utils.cli.imports import is_deferred
imported = sorted(name for name, module in sys.modules.items() if not is_deferred(module))
print(json.dumps({"status": status, "modules": imported}))
"""


# Runs `python SCRIPT --help` for each script in turn, in one interpreter, then lists every module imported.
HELP_AND_LIST = """
import json, runpy, sys
for script in sys.argv[1:]:
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as done:
        assert done.code in (0, None), (script, done.code)
print(json.dumps({"status": 0, "modules": sorted(sys.modules)}))
"""
# The scripts that load a network only after parsing their arguments, so that `--help` answers at once.
QUICK_HELP = (
    "analyze_latents", "dataset_to_tifs", "export_pti", "generate", "make_sample_tifs", "vae_reconstruct",
    "vae_sample",
)  # fmt: skip


def run_and_list(code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 0, done.stderr[-3000:]
    report["modules"] = set(report["modules"])
    return report


def optional_libraries(modules: set) -> list:
    return sorted(m for m in modules if m.split(".")[0] in OPTIONAL)


@pytest.mark.e2e
def test_a_tiny_diffusers_run_and_a_script_on_it_never_import_the_libraries_they_do_not_use(tmp_path):
    config = in_folder(TINY_VAE, tmp_path)
    config["train"].update(max_train_steps=2, validation_steps=2, checkpointing_steps=2)
    report = run_and_list(RUN_AND_LIST, write_config(config, tmp_path / "exp.yml"))
    # The run did train, validate and save through diffusers' network.
    assert {"diffusers.models.autoencoders.autoencoder_kl", "accelerate", "safetensors.torch"} <= report[
        "modules"
    ]
    assert optional_libraries(report["modules"]) == []
    assert report["adam"] == "AdamW8bit"  # deferred, not gone: the first read imports it

    (final,) = tmp_path.glob("**/final")
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", np.random.default_rng(0).random((16, 16), dtype=np.float32))
    out = tmp_path / "recon"
    script = ["scripts/vae_reconstruct.py", "--run", str(final), "--input", str(images), "--out", str(out)]
    report = run_and_list(SCRIPT_AND_LIST, *script)
    assert (out / "a.tif").is_file() and "diffusers.models.autoencoders.autoencoder_kl" in report["modules"]
    assert optional_libraries(report["modules"]) == []


def test_the_scripts_answer_help_without_loading_a_network_library():
    report = run_and_list(HELP_AND_LIST, *(f"scripts/{name}.py" for name in QUICK_HELP))
    loaded = sorted(
        m for m in report["modules"] if m.split(".")[0] in ("diffusers", "monai") or m == "models.archs"
    )
    assert loaded == []


def test_a_deferred_library_runs_on_its_first_read_and_never_on_a_scan(tmp_path, monkeypatch):
    from utils.cli.imports import defer_unused_imports, is_deferred

    package = tmp_path / "deferred_probe"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import builtins\nbuiltins.probe_runs = getattr(builtins, 'probe_runs', 0) + 1\nvalue = 42\n"
    )
    (package / "sub" / "__init__.py").write_text("from deferred_probe import value\ndouble = 2 * value\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "deferred_probe", raising=False)
    import builtins

    monkeypatch.setattr(builtins, "probe_runs", 0, raising=False)
    defer_unused_imports(["deferred_probe"])
    import deferred_probe as placeholder  # what a library's module-level `import` keeps

    # What torch's operator registration does through inspect.getmodule: a scan of every module's __file__.
    inspect.getmodule(test_a_deferred_library_runs_on_its_first_read_and_never_on_a_scan)
    assert is_deferred(placeholder) and builtins.probe_runs == 0
    import deferred_probe.sub  # a submodule first: the package runs before it, as in a plain import

    assert deferred_probe.sub.double == 84 and builtins.probe_runs == 1
    assert placeholder.value == 42 and builtins.probe_runs == 1  # the placeholder hands reads on
    assert not is_deferred(placeholder) and sys.modules["deferred_probe"] is deferred_probe
    monkeypatch.delitem(sys.modules, "deferred_probe.sub")
    monkeypatch.delitem(sys.modules, "deferred_probe")
