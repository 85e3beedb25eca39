"""scripts/make_sample_tifs.py writes deterministic TIF folders that the datasets read as documented;
scripts/dataset_to_tifs.py writes a config's dataset items as TIFs."""

import filecmp
import importlib.util
import os

import numpy as np
import tifffile
import yaml

from dataset.tif_dataset import TIFFolderDataset, TIFPairDataset
from tests.helpers.runs import ROOT

SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "make_sample_tifs.py"
)


def make_samples(out):
    spec = importlib.util.spec_from_file_location("make_sample_tifs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(out), "--patients", "3", "--slices", "2", "--size", "32"])


def test_sample_folders_are_deterministic_and_readable(tmp_path):
    make_samples(tmp_path / "a")
    make_samples(tmp_path / "b")
    compared = filecmp.dircmp(tmp_path / "a" / "dente", tmp_path / "b" / "dente")
    assert len(compared.same_files) == 6 and not compared.diff_files
    single = TIFFolderDataset({"dir": str(tmp_path / "a" / "tif"), "normalize": "zscore_foreground"})
    assert len(single) == 6 and single[0]["gt"].shape == (1, 32, 32)
    opt = {
        "gt_dir": str(tmp_path / "a" / "edente"),
        "cond_dir": str(tmp_path / "a" / "dente"),
        "train_split": 0.67,
        "split_by": r"^(p\d+)_",
    }
    train, val = TIFPairDataset(opt), TIFPairDataset({**opt, "phase": "val"})
    assert (len(train), len(val)) == (4, 2)
    assert (train[0]["cond"] != train[0]["gt"]).any()  # the condition carries the added "teeth"
    volumes = TIFFolderDataset({"dir": str(tmp_path / "a" / "volumes"), "spatial_dims": 3})
    assert volumes[0]["gt"].shape == (1, 2, 32, 32)


def test_dataset_to_tifs_writes_the_items_the_run_sees(tmp_path):
    """A config's `datasets.val` items as TIFs, exactly as the dataset gives them, with overrides."""
    import scripts.dataset_to_tifs as dataset_to_tifs
    from dataset.synthetic_masks_dataset import SyntheticMasksDataset

    config = os.path.join(ROOT, "checkpoints", "ControlNet", "exp.yml")
    argv = ["--config", config, "--keys", "mask", "image", "--count", "3", "--out", str(tmp_path / "m")]
    assert dataset_to_tifs.main([*argv, "datasets.val.seed=7"]) == 0
    expected = SyntheticMasksDataset(
        {"size": 16, "image_size": 32, "num_kinds": 3, "seed": 7, "phase": "val"}
    )
    for i in range(3):
        item = expected[i]
        mask = tifffile.imread(tmp_path / "m" / "mask" / f"{item['name']}.tif")
        image = tifffile.imread(tmp_path / "m" / "image" / f"{item['name']}.tif")
        assert np.array_equal(mask, item["mask"].float().numpy()) and set(np.unique(mask)) <= {0, 1, 2, 3}
        assert np.array_equal(image, item["image"].squeeze(0).numpy())
    assert len(os.listdir(tmp_path / "m" / "mask")) == 3


def test_dataset_to_tifs_writes_vectors_as_csv_rows_beside_targets_named_as_generate_names_samples(
    tmp_path, capsys
):
    """A vector key (a PSF stack's coordinates) becomes one CSV row per item, in the order of the target
    TIFs `sample_NNNN.tif`, the names `generate.py --vectors` gives its samples, so `--targets` pairs them."""
    import scripts.dataset_to_tifs as dataset_to_tifs
    from dataset.psf_stack_dataset import PSFStackDataset
    from models.ldm.generation_inputs import read_vectors

    config = os.path.join(ROOT, "checkpoints", "LDM", "3d.yml")
    out = tmp_path / "stacks"
    assert (
        dataset_to_tifs.main(
            ["--config", config, "--keys", "gt", "coords", "--count", "2", "--out", str(out)]
        )
        == 0
    )
    block = yaml.safe_load(open(config))["datasets"]["val"]
    expected = PSFStackDataset({**block, "phase": "val"})
    vectors = read_vectors(out / "coords.csv", [])
    assert sorted(os.listdir(out / "gt")) == ["sample_0000.tif", "sample_0001.tif"]
    for i in range(2):
        assert np.allclose(vectors[i], expected[i]["coords"].tolist(), rtol=1e-7)
        assert np.array_equal(
            tifffile.imread(out / "gt" / f"sample_{i:04d}.tif"), expected[i]["gt"][0].numpy()
        )
    assert dataset_to_tifs.main(["--config", config, "--keys", "cords", "--out", str(tmp_path / "x")]) == 2
    assert "its vectors: coords" in capsys.readouterr().err
