"""scripts/generate.py on tiny trained runs of every condition kind: labels, sample counts, the data's
intensity range, and one-sentence errors."""

import json
import os

import numpy as np
import pytest
import tifffile

from tests.helpers.scripts import run_generate, tiny_ldm_run

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def write_tifs(folder, values, seed):
    """16x16 float32 TIFs in a physical range, far from [0, 1]."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, high in enumerate(values):
        image = (100 + (high - 100) * rng.random((16, 16))).astype(np.float32)
        tifffile.imwrite(folder / f"im{i}.tif", image)


@pytest.fixture(scope="module")
def tif_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tifs")
    write_tifs(root / "gt", [900, 500, 700, 800] * 4, 0)
    write_tifs(root / "cond", [600, 650, 700, 750] * 4, 1)
    return root


def test_image_conditioned_outputs_are_in_the_data_range(stage1, tif_data, tmp_path):
    block = {
        "type": "TIFPairDataset",
        "gt_dir": str(tif_data / "gt"),
        "cond_dir": str(tif_data / "cond"),
        "normalize": "minmax",
        "value_range": [0.0, 1000.0],
    }
    datasets = {"train": dict(block), "val": dict(block)}
    final = tiny_ldm_run(tmp_path, stage1, "img", {"type": "image"}, datasets=datasets)
    common = ["--run", final, "--conditions", tif_data / "cond", "--steps", 2, "--seed", 1]
    assert run_generate(*common, "--out", tmp_path / "data_range") == 0
    assert run_generate(*common, "--out", tmp_path / "normalized", "--normalized") == 0
    for i in range(16):
        normalized = tifffile.imread(tmp_path / "normalized" / f"im{i}.tif")
        physical = tifffile.imread(tmp_path / "data_range" / f"im{i}.tif")
        np.testing.assert_allclose(physical, normalized * 1000.0, rtol=1e-5, atol=1e-3)
    assert np.abs(physical).max() > 10  # not the network's [0, 1] range
    assert json.load(open(os.path.join(final, "ldm.json")))["intensity"] == {
        "shift": 0.0,
        "scale": 1000.0,
        "varies": False,
    }
    assert run_generate("--run", final, "--out", tmp_path / "x", "--labels", "1") == 2  # not a class run

    # --targets: scored against targets of the same names; the samples themselves as targets score
    # exactly (PSNR capped at 100 dB, SSIM 1), and each against another condition's target does not
    targets = tmp_path / "targets"
    targets.mkdir()
    for i in range(16):
        tifffile.imwrite(targets / f"im{i}.tif", tifffile.imread(tmp_path / "data_range" / f"im{i}.tif"))
    assert run_generate(*common, "--targets", targets, "--out", tmp_path / "scored") == 0
    report = json.load(open(tmp_path / "scored" / "metrics.json"))
    assert len(report["samples"]) == 16 and "dice" not in report["mean"]  # not masks
    assert report["mean"]["psnr"] == pytest.approx(100.0) and report["mean"]["ssim"] == pytest.approx(1.0)
    assert report["shuffled_condition_baseline"]["psnr"] < 60
    assert report["mean_target_baseline"]["psnr"] < 60
    # two samples per condition: each scored against its condition's one target
    assert run_generate(*common, "--targets", targets, "--num-samples", 2, "--out", tmp_path / "two") == 0
    report = json.load(open(tmp_path / "two" / "metrics.json"))
    assert sorted(report["samples"])[:2] == ["im0_s00.tif", "im0_s01.tif"]
    assert report["samples"]["im0_s00.tif"]["psnr"] == pytest.approx(100.0)  # seed 1 + 0: the sample above
    assert report["samples"]["im0_s01.tif"]["psnr"] < 100.0


def test_unconditional_num_samples_and_mean_intensity(stage1, tif_data, tmp_path, capsys):
    block = {"type": "TIFFolderDataset", "dir": str(tif_data / "gt"), "normalize": "minmax"}
    final = tiny_ldm_run(
        tmp_path, stage1, "unc", {"type": "none"}, datasets={"train": dict(block), "val": dict(block)}
    )
    intensity = json.load(open(os.path.join(final, "ldm.json")))["intensity"]
    # per-image minmax: the stored stats are the mean over the targets (shift = min, scale = max - min)
    lows = [tifffile.imread(tif_data / "gt" / f"im{i}.tif").min() for i in range(16)]
    assert intensity["varies"] and intensity["shift"] == pytest.approx(np.mean(lows), rel=1e-6)
    assert run_generate("--run", final, "--out", tmp_path / "u", "--num-samples", 3, "--steps", 2) == 0
    assert sorted(os.listdir(tmp_path / "u")) == [
        ".written-by",  # the folder is generate.py's: a rerun may write into it again
        "grid.png",
        "sample_0000.tif",
        "sample_0001.tif",
        "sample_0002.tif",
    ]
    assert (
        run_generate(
            "--run", final, "--out", tmp_path / "n", "--num-samples", 3, "--steps", 2, "--normalized"
        )
        == 0
    )
    a, b = (tifffile.imread(tmp_path / d / "sample_0001.tif") for d in ("u", "n"))
    np.testing.assert_allclose(a, b * intensity["scale"] + intensity["shift"], rtol=1e-5)
    capsys.readouterr()
    assert run_generate("--run", final, "--out", tmp_path / "v", "--vector", "1,2") == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_labels_and_one_sentence_errors(stage1, tmp_path, capsys):
    best = {"best_metric": "val_loss", "best_mode": "min", "validation_steps": 1}
    final = tiny_ldm_run(
        tmp_path, stage1, "cls", {"type": "class", "key": "x", "num_classes": 64}, train=best
    )
    # best/ holds what generation needs, like final/
    best_folder = os.path.join(os.path.dirname(final), "best")
    assert run_generate("--run", best_folder, "--out", tmp_path / "b", "--labels", "1", "--steps", 2) == 0
    assert (
        run_generate(
            "--run", final, "--out", tmp_path / "c", "--labels", "3", "7,3", "--steps", 2, "--seed", 5
        )
        == 0
    )
    names = sorted(os.listdir(tmp_path / "c"))
    assert names == [".written-by", "class3_0000.tif", "class3_0002.tif", "class7_0001.tif", "grid.png"]
    # the same label and seed give the same sample; another seed another one
    first, third = (tifffile.imread(tmp_path / "c" / n) for n in ("class3_0000.tif", "class3_0002.tif"))
    assert not np.array_equal(first, third)
    # --num-samples N: N samples of each condition, sample i of the list from the noise of seed + i
    many = ["--run", final, "--labels", "3", "7", "--num-samples", "2", "--steps", 2, "--seed", 5]
    assert run_generate(*many, "--out", tmp_path / "m") == 0
    names = sorted(n for n in os.listdir(tmp_path / "m") if n.endswith(".tif"))
    assert names == [
        "class3_0000_s00.tif",
        "class3_0000_s01.tif",
        "class7_0001_s00.tif",
        "class7_0001_s01.tif",
    ]
    read = {n: tifffile.imread(tmp_path / "m" / n) for n in names}
    assert np.array_equal(read["class3_0000_s00.tif"], first)  # seed 5 + 0, label 3: the sample above
    assert not np.array_equal(read["class3_0000_s00.tif"], read["class3_0000_s01.tif"])
    capsys.readouterr()
    for args, expected in (
        ([], "give --labels with indices from 0 to 63"),
        (["--labels", "64"], "--labels has [64], but this LDM knows 64 classes"),
        (["--labels", "a"], "--labels takes whole numbers"),
    ):
        assert run_generate("--run", final, "--out", tmp_path / "e", *args) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert run_generate("--run", tmp_path / "c", "--out", tmp_path / "e") == 2
    assert "ldm.json" in capsys.readouterr().err
