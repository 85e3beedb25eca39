"""Inputs and runs are read-only to every output path: the trainer's run folder, a `-test` folder and each
script's `--out` are refused, in one sentence and before anything is written, when they are, contain or lie
inside an input, a weights folder or another run."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from tests.helpers import TINY_DENOISE, TINY_VAE
from tests.helpers.bad_inputs import assert_one_sentence, fingerprints
from tests.helpers.runs import ROOT, run_folder, run_trainer, write_config
from utils.outputs import OutputError, _run_entry, check_output


@pytest.fixture
def tree(tmp_path):
    """data/ (images), runs/exp/run/ (a run with final/net_g weights), loose/ (bare weights)."""
    (tmp_path / "data" / "sub").mkdir(parents=True)
    for name in ("a", "sub/b"):
        tifffile.imwrite(tmp_path / "data" / f"{name}.tif", np.ones((8, 8), np.float32))
    run = tmp_path / "runs" / "exp" / "run"
    (run / "final" / "net_g").mkdir(parents=True)
    (run / "train.log").write_text("a run's log\n")
    (run / "final" / "net_g" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "model.safetensors").write_bytes(b"weights")
    return tmp_path


@pytest.mark.parametrize(
    "out, expected",
    [
        ("data", "--out '{t}/data' is --input '{t}/data'"),
        ("data/sub/new", "--out '{t}/data/sub/new' is inside --input"),
        (".", "--out '{t}' contains --input"),
        ("link_to_data", "is --input"),  # a symbolic link to the input is the input
        ("runs/exp/run", "is a run folder"),
        ("runs/exp/run/final/samples", "is inside a run folder"),
        ("runs/exp/run/checkpoint-2", "is inside a run folder"),
        ("runs/exp/run/final/net_g", "is a weights folder"),
        ("runs", "contains a run folder"),
        ("loose/out", "is inside a weights folder"),
    ],
)
def test_an_output_over_an_input_a_run_or_weights_is_refused(tree, out, expected):
    os.symlink(tree / "data", tree / "link_to_data")
    with pytest.raises(OutputError) as error:
        check_output("--out", tree / out if out != "." else tree, {"--input": tree / "data"})
    assert expected.format(t=tree) in str(error.value)
    assert "\n" not in str(error.value) and str(error.value).endswith(".")  # one sentence


def test_outputs_beside_the_inputs_pass(tree):
    check_output("--out", tree / "recon", {"--input": tree / "data", "--run": tree / "runs/exp/run/final"})
    # a new results folder inside the run, beside what the trainer wrote there
    check_output("--out", tree / "runs/exp/run/latent_maps", {"--run": tree / "runs/exp/run/final"})
    check_output("--out", tree / "data-out", {"--input": tree / "data"})  # a prefix is not a parent
    # a resumed run's own folder, and a test folder kept inside the run it scores
    check_output("The run folder", tree / "runs/exp/run", {}, own_results=True)
    check_output("The run folder", tree / "runs/exp/run/test/1", {}, inside_a_run=True)
    with pytest.raises(OutputError, match="is inside a run folder"):
        check_output("The run folder", tree / "runs/exp/run/other", {}, own_results=True, beside_a_run=False)


@pytest.mark.parametrize("script", ["vae_reconstruct", "analyze_latents", "generate", "vae_sample"])
def test_a_script_never_writes_over_its_input(tree, script, capsys):
    import importlib

    data, final = str(tree / "data"), str(tree / "runs/exp/run/final")
    argv = {
        "vae_reconstruct": ["--run", final, "--input", data, "--out", data],
        "analyze_latents": ["--run", final, "--group", f"a={data}", "--out", f"{data}/maps"],
        "generate": ["--run", final, "--conditions", data, "--out", f"{final}/samples"],
        "vae_sample": ["--run", final, "--out", str(tree / "runs/exp/run/images")],
    }[script]
    before = fingerprints(tree)
    assert importlib.import_module(f"scripts.{script}").main(argv) == 2
    assert_one_sentence(capsys.readouterr().err, 2, "--out '")
    assert fingerprints(tree) == before


def _tif_vae(tmp_path, data: str) -> dict:
    config = copy.deepcopy(TINY_VAE)
    block = {"type": "TIFFolderDataset", "dir": data, "normalize": "minmax", "patch_size": 8}
    config["datasets"] = {"train": dict(block), "val": dict(block)}
    config["network"]["sample_size"] = 8
    config["train"].update(batch_size=2, max_train_steps=1, validation_steps=1, checkpointing_steps=1)
    config["path"]["root"] = str(tmp_path / "experiments")
    return config


@pytest.mark.e2e
@pytest.mark.parametrize(
    "place, expected",
    [
        ({"root": "{t}/data"}, "is inside 'datasets.train.dir' '{t}/data'"),
        ({"root": "{t}", "name": "data", "experiment_key": "sub"}, "is 'datasets.train.dir'"),
        ({"root": "{t}/runs/exp/run"}, "is inside a run folder '{t}/runs/exp/run'"),
        ({"root": "{t}/runs/exp/run/final"}, "is inside a run folder"),
        ({"root": "{t}/loose"}, "is inside a weights folder '{t}/loose'"),
    ],
    ids=["root in data", "run folder is data", "inside a run", "inside final", "inside weights"],
)
def test_the_run_folder_never_overlaps_inputs_runs_or_weights(
    tree, tmp_path_factory, capsys, place, expected
):
    data = str(tree / "data" / "sub") if place.get("experiment_key") else str(tree / "data")
    config = _tif_vae(tree, data)
    config["path"]["root"] = place.pop("root").format(t=tree)
    config.update(place)
    before = fingerprints(tree)
    status = run_trainer(config, tmp_path_factory.mktemp("config"))
    assert_one_sentence(capsys.readouterr().err, status, expected.format(t=tree))
    assert fingerprints(tree) == before  # nothing written anywhere


@pytest.mark.e2e
def test_a_test_of_bare_weights_never_touches_a_training_run_of_the_same_name(tmp_path):
    """`-test` of weights outside any run, with the `experiment_key` of an existing training run: the
    run's `config.yml` and `train.log` stay as they were; the scores go to a new folder of their own."""
    config = copy.deepcopy(TINY_DENOISE)
    config["path"]["root"] = str(tmp_path / "experiments")
    assert run_trainer(config, tmp_path) == 0
    run = run_folder(config)
    unknown = [e for e in os.listdir(run) if not _run_entry(os.path.join(run, e), run)]
    assert not unknown, f"utils/outputs.py RUN_ENTRIES lacks what a run writes: {unknown}"
    bare = tmp_path / "exported"
    os.rename(os.path.join(run, "final"), bare)  # weights that belong to no run folder
    kept = fingerprints(tmp_path / "experiments")
    tested = dict(config, path={**config["path"], "pretrained": str(bare)})
    assert run_trainer(tested, tmp_path, "-test", name="test.yml") == 0
    assert fingerprints(tmp_path / "experiments").items() >= kept.items()  # nothing changed, only added
    (folder,) = os.listdir(tmp_path / "experiments" / "tiny" / "test")
    assert os.path.isfile(tmp_path / "experiments" / "tiny" / "test" / folder / "test_metrics.json")


@pytest.mark.e2e
def test_two_tests_started_together_keep_both_results(tmp_path):
    """Two `-test` processes of the same weights started in the same second: two folders, two results."""
    config = copy.deepcopy(TINY_DENOISE)
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"].update(max_train_steps=1, validation_steps=1, checkpointing_steps=1)
    assert run_trainer(config, tmp_path) == 0
    tested = dict(config, path={**config["path"], "pretrained": os.path.join(run_folder(config), "final")})
    path = write_config(tested, tmp_path / "test.yml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "trainer.py", "-opt", path, "-test"]
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    assert [p.wait(timeout=300) for p in runs] == [0, 0], [p.stderr.read().decode()[-2000:] for p in runs]
    folders = os.listdir(os.path.join(run_folder(config), "test"))
    assert len(folders) == 2
    for folder in folders:
        assert os.path.isfile(os.path.join(run_folder(config), "test", folder, "test_metrics.json"))


def test_a_folder_of_other_files_is_never_an_output(tree, capsys):
    """`--out` a folder that holds files no earlier run of the script wrote (another data set with the
    same file names): refused before anything is loaded; a script's own folder can be written again;
    a folder a failed script created goes again."""
    import scripts.vae_reconstruct as vae_reconstruct
    from utils.outputs import claim_output_folder

    other = tree / "other_data"
    other.mkdir()
    tifffile.imwrite(other / "a.tif", np.zeros((8, 8), np.float32))  # the name an output would take
    before = fingerprints(tree)
    argv = ["--run", str(tree / "runs/exp/run/final"), "--input", str(tree / "data")]
    assert vae_reconstruct.main([*argv, "--out", str(other)]) == 2
    assert_one_sentence(capsys.readouterr().err, 2, f"--out '{other}' holds files that no earlier run")
    assert vae_reconstruct.main([*argv, "--out", str(tree / "new")]) == 2  # fails: the run has no config
    assert "config.yml" in capsys.readouterr().err
    assert fingerprints(tree) == before and not (tree / "new").exists()
    assert claim_output_folder("--out", tree / "mine", "generate.py") is True
    (tree / "mine" / "x.tif").write_bytes(b"")
    assert claim_output_folder("--out", tree / "mine", "generate.py") is False  # its own: again
    with pytest.raises(OutputError, match="written by generate.py"):
        claim_output_folder("--out", tree / "mine", "vae_sample.py")
