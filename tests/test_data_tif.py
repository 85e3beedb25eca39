"""TIF folder and pair datasets on real TIF files: pairing, normalisation, splits, augmentation, caching."""

import json

import numpy as np
import pytest
import tifffile
import torch
from torch.utils.data import DataLoader

from dataset import create_dataset
from dataset.common.normalization import Normalization, denormalize
from dataset.tif_dataset import TIFFolderDataset, TIFPairDataset
from utils.errors import ConfigError, DataError


def write_tif(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(array))
    return path


def ramp(value, size=16):
    """An image whose pixels encode `value` (and position), so an item can be traced to its file."""
    return (np.arange(size * size, dtype=np.float32).reshape(size, size) / 1000 + value).astype(np.float32)


@pytest.fixture
def patients(tmp_path):
    """Paired folders: 4 patients x 3 slices; condition = target + 0.5, so pairs can be checked by value."""
    for p in range(4):
        for s in range(3):
            value = 10 * p + s
            write_tif(tmp_path / "edente" / f"p{p:02d}_slice{s}.tif", ramp(value))
            write_tif(tmp_path / "dente" / f"p{p:02d}_slice{s}.tif", ramp(value + 0.5))
    return tmp_path


def pair_opt(root, **extra):
    return {"gt_dir": str(root / "edente"), "cond_dir": str(root / "dente"), "phase": "train", **extra}


# ---------------------------------------------------------------------------------------------- folders


def test_folder_reads_2d_float32_channel_first(tmp_path):
    write_tif(tmp_path / "a.tif", ramp(1))
    write_tif(tmp_path / "b.tiff", ramp(2).astype(np.uint16))
    dataset = TIFFolderDataset({"dir": str(tmp_path)})
    assert len(dataset) == 2
    item = dataset[0]
    assert item["gt"].dtype == torch.float32 and item["gt"].shape == (1, 16, 16)
    assert item["name"] == "a"
    np.testing.assert_allclose(item["gt"][0].numpy(), ramp(1))


def test_folder_reads_volumes_recursively_and_resizes(tmp_path):
    write_tif(tmp_path / "p01" / "vol.tif", np.ones((6, 12, 12), np.float32))
    write_tif(tmp_path / "p02" / "vol.tif", np.ones((8, 16, 16), np.float32))
    dataset = TIFFolderDataset(
        {"dir": str(tmp_path), "recursive": True, "spatial_dims": 3, "patch_size": [4, 8, 8]}
    )
    assert [r.name for r in dataset.records] == ["p01/vol", "p02/vol"]
    assert dataset[1]["gt"].shape == (1, 4, 8, 8)


def test_folder_crop_is_random_in_train_and_centred_in_val(tmp_path):
    write_tif(tmp_path / "a.tif", ramp(0, size=32))
    train = TIFFolderDataset({"dir": str(tmp_path), "patch_size": 8, "patch_mode": "crop"})
    val = TIFFolderDataset({"dir": str(tmp_path), "patch_size": 8, "patch_mode": "crop", "phase": "val"})
    torch.manual_seed(0)
    corners = {float(train[0]["gt"][0, 0, 0]) for _ in range(10)}
    assert len(corners) > 1
    np.testing.assert_allclose(val[0]["gt"][0].numpy(), ramp(0, size=32)[12:20, 12:20])


def test_registry_finds_the_tif_datasets(patients):
    dataset = create_dataset({"type": "TIFPairDataset", **pair_opt(patients)})
    assert isinstance(dataset, TIFPairDataset) and len(dataset) == 12


def test_unknown_key_suggests_the_nearest(patients):
    with pytest.raises(ConfigError, match="did you mean 'train_split'"):
        TIFPairDataset(pair_opt(patients, train_splt=0.8))


# ---------------------------------------------------------------------------------------------- pairs


def test_pairs_are_matched_by_name_not_by_sort_order(patients):
    # An extra target sorts first, so pairing by position would shift every pair by one.
    write_tif(patients / "edente" / "a_extra.tif", ramp(99))
    dataset = TIFPairDataset(pair_opt(patients, unmatched="skip"))
    assert dataset.skipped == 1 and len(dataset) == 12
    for item in dataset:
        assert float(item["cond"][0, 0, 0] - item["gt"][0, 0, 0]) == pytest.approx(0.5)
        p, s = int(item["name"][1:3]), int(item["name"][-1])
        assert float(item["gt"][0, 0, 0]) == pytest.approx(10 * p + s)


def test_pairs_ignore_suffix_case_and_tif_vs_tiff(tmp_path):
    write_tif(tmp_path / "gt" / "x.tif", ramp(1))
    write_tif(tmp_path / "cond" / "x.TIFF", ramp(1.5))
    dataset = TIFPairDataset({"gt_dir": str(tmp_path / "gt"), "cond_dir": str(tmp_path / "cond")})
    assert len(dataset) == 1


def test_unmatched_names_are_listed(patients):
    write_tif(patients / "edente" / "p09_slice0.tif", ramp(0))
    write_tif(patients / "dente" / "p08_slice5.tif", ramp(0))
    with pytest.raises(DataError) as error:
        TIFPairDataset(pair_opt(patients))
    message = str(error.value)
    assert "p09_slice0" in message and "p08_slice5" in message and "unmatched: skip" in message


def test_item_keys_follow_gt_key_and_lq_key(patients):
    item = TIFPairDataset(pair_opt(patients, gt_key="edente", lq_key="dente"))[0]
    assert {"edente", "dente", "name", "norm"} <= set(item)
    with pytest.raises(ConfigError, match="lq_key"):
        TIFPairDataset(pair_opt(patients, gt_key="x", lq_key="x"))


# ---------------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("mode", ["none", "minmax", "percentile", "zscore", "zscore_foreground"])
def test_every_normalisation_inverts(mode):
    image = np.random.default_rng(0).normal(100, 20, (1, 32, 32)).astype(np.float32)
    image[:, :8] = 0  # background for zscore_foreground
    norm = Normalization(mode=mode, percentiles=(0, 100))
    normalised, stats = norm(image)
    assert normalised.dtype == np.float32
    restored = denormalize(normalised, stats, foreground=image != 0 if mode == "zscore_foreground" else None)
    np.testing.assert_allclose(restored, image, rtol=1e-5, atol=1e-3)


def test_normalisation_ranges():
    image = np.linspace(-5, 5, 100, dtype=np.float32).reshape(1, 10, 10)
    out, _ = Normalization("minmax", norm_range=(-1, 1))(image)
    assert out.min() == pytest.approx(-1) and out.max() == pytest.approx(1)
    out, _ = Normalization("percentile", percentiles=(10, 90))(image)
    assert out.min() == 0 and out.max() == pytest.approx(1) and (out == 0).sum() > 1
    out, _ = Normalization("minmax", value_range=(0, 10))(image)
    assert out.min() == 0 and out.max() == pytest.approx(0.5)
    out, _ = Normalization("zscore")(image)
    assert abs(out.mean()) < 1e-5 and out.std() == pytest.approx(1, rel=1e-4)


def test_foreground_zscore_keeps_background_at_zero():
    image = np.zeros((1, 8, 8), np.float32)
    image[0, 2:6, 2:6] = np.arange(16).reshape(4, 4) + 100
    out, stats = Normalization("zscore_foreground")(image)
    assert (out[image == 0] == 0).all()
    assert out[image != 0].mean() == pytest.approx(0, abs=1e-5) and out[image != 0].std() == pytest.approx(1)
    assert stats[0] == pytest.approx(107.5)


@pytest.mark.parametrize("mode", ["minmax", "percentile", "zscore", "zscore_foreground"])
def test_all_background_image_gives_no_nan(tmp_path, mode):
    write_tif(tmp_path / "empty.tif", np.zeros((16, 16), np.float32))
    item = TIFFolderDataset({"dir": str(tmp_path), "normalize": mode})[0]
    assert torch.isfinite(item["gt"]).all() and torch.isfinite(item["norm"]["gt"]).all()


def test_dataset_denormalize_restores_a_collated_batch(patients):
    dataset = TIFPairDataset(pair_opt(patients, normalize="minmax", norm_range=[-1, 1]))
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["gt"].min() >= -1 and batch["norm"]["gt"].shape == (4, 2)
    restored = dataset.denormalize(batch["gt"], batch, "gt")
    expected = torch.stack(
        [torch.from_numpy(ramp(10 * 0 + s))[None] for s in range(3)] + [torch.from_numpy(ramp(10))[None]]
    )
    torch.testing.assert_close(restored, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(
        dataset.denormalize(batch["cond"], batch, "cond"), expected + 0.5, rtol=1e-5, atol=1e-4
    )


# ---------------------------------------------------------------------------------------------- augmentation


def test_augmentation_moves_target_and_condition_together(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.random((24, 24)).astype(np.float32) + 1
    write_tif(tmp_path / "gt" / "a.tif", image)
    write_tif(tmp_path / "cond" / "a.tif", 2 * image)
    augment = {"flip": True, "rot90": True, "degrees": 15, "scale": 0.1, "translate": 0.1}
    opt = {"gt_dir": str(tmp_path / "gt"), "cond_dir": str(tmp_path / "cond"), "augment": augment}
    dataset = TIFPairDataset(opt)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        item = dataset[0]
        torch.testing.assert_close(item["cond"], 2 * item["gt"])
        seen.add(round(float(item["gt"].sum()), 3))
    assert len(seen) > 6  # the transform really varies
    val = TIFPairDataset({**opt, "phase": "val"})
    np.testing.assert_array_equal(val[0]["gt"][0].numpy(), image)


def test_flips_and_turns_alone_are_exact_permutations(tmp_path):
    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    write_tif(tmp_path / "a.tif", image)
    dataset = TIFFolderDataset({"dir": str(tmp_path), "augment": {"flip": True, "rot90": True}})
    torch.manual_seed(3)
    for _ in range(8):
        out = dataset[0]["gt"][0].numpy()
        assert sorted(out.ravel()) == sorted(image.ravel()) and out[0, 0] in (0, 7, 56, 63)


def test_bad_augment_key_is_named(patients):
    with pytest.raises(ConfigError, match="did you mean 'rot90'"):
        TIFPairDataset(pair_opt(patients, augment={"rot_90": True}))


# ---------------------------------------------------------------------------------------------- splits


def test_split_by_patient_never_leaks_and_is_written(patients, tmp_path):
    split_file = tmp_path / "run" / "split.json"
    opt = pair_opt(patients, train_split=0.5, seed=3, split_by=r"^(p\d+)_", split_file=str(split_file))
    train, val = TIFPairDataset(opt), TIFPairDataset({**opt, "phase": "val"})
    train_patients = {r.name[:3] for r in train.records}
    val_patients = {r.name[:3] for r in val.records}
    assert len(train) + len(val) == 12 and len(train_patients) == len(val_patients) == 2
    assert not train_patients & val_patients
    record = json.loads(split_file.read_text())
    assert sorted(record["groups"]["val"]) == sorted(val_patients)
    assert not list(split_file.parent.glob(".split-*"))  # no temporary file left behind


def test_split_file_is_reused_on_resume(patients, tmp_path):
    split_file = tmp_path / "split.json"
    opt = pair_opt(patients, train_split=0.5, split_by=r"^(p\d+)_", split_file=str(split_file))
    first = [r.name for r in TIFPairDataset(opt).records]
    # A hand-edited split (as an older run might have drawn it) wins over a fresh draw.
    record = json.loads(split_file.read_text())
    record["train"], record["val"] = record["val"], record["train"]
    split_file.write_text(json.dumps(record))
    resumed = [r.name for r in TIFPairDataset(opt).records]
    assert resumed == sorted(record["train"]) and set(resumed).isdisjoint(first)


def test_split_file_mismatches_are_errors(patients, tmp_path):
    split_file = tmp_path / "split.json"
    opt = pair_opt(patients, train_split=0.5, split_file=str(split_file))
    TIFPairDataset(opt)
    with pytest.raises(ConfigError, match="seed"):
        TIFPairDataset({**opt, "seed": 1, "phase": "val"})
    write_tif(patients / "edente" / "p07_slice0.tif", ramp(0))
    write_tif(patients / "dente" / "p07_slice0.tif", ramp(0))
    with pytest.raises(DataError, match="new 1 .*p07_slice0"):
        TIFPairDataset(opt)


def test_val_block_without_the_split_is_refused(patients, tmp_path):
    split_file = str(tmp_path / "split.json")
    TIFPairDataset(pair_opt(patients, train_split=0.75, split_file=split_file))
    with pytest.raises(ConfigError, match="validate on training items"):
        TIFPairDataset(pair_opt(patients, phase="val", split_file=split_file))


def test_val_dirs_replace_the_split(patients, tmp_path):
    write_tif(tmp_path / "vgt" / "v.tif", ramp(0))
    write_tif(tmp_path / "vcond" / "v.tif", ramp(0))
    opt = pair_opt(patients, val_gt_dir=str(tmp_path / "vgt"), val_cond_dir=str(tmp_path / "vcond"))
    assert len(TIFPairDataset(opt)) == 12
    assert [r.name for r in TIFPairDataset({**opt, "phase": "val"}).records] == ["v"]
    with pytest.raises(ConfigError, match="train_split"):
        TIFPairDataset({**opt, "train_split": 0.5})


# ---------------------------------------------------------------------------------------------- caching


def test_cache_with_two_workers_gives_the_items_of_no_workers(patients):
    opt = pair_opt(patients, normalize="zscore", phase="val")
    plain = [(b["name"], b["gt"], b["cond"]) for b in DataLoader(TIFPairDataset(opt), batch_size=4)]
    cached_dataset = TIFPairDataset({**opt, "cache_rate": 0.5})
    assert len(cached_dataset.cache) == 6
    loader = DataLoader(cached_dataset, batch_size=4, num_workers=2)
    for (name, gt, cond), batch in zip(plain, loader, strict=True):
        assert list(name) == list(batch["name"])
        torch.testing.assert_close(gt, batch["gt"])
        torch.testing.assert_close(cond, batch["cond"])


def test_cached_items_cannot_be_corrupted_by_callers(patients):
    dataset = TIFPairDataset(pair_opt(patients, cache_rate=1.0, phase="val"))
    before = dataset[0]["gt"].clone()
    dataset[0]["gt"].mul_(0)
    torch.testing.assert_close(dataset[0]["gt"], before)
    for batch in DataLoader(dataset, batch_size=4):  # the batched fetch, without the defensive copy
        batch["gt"].mul_(0)
    torch.testing.assert_close(next(iter(DataLoader(dataset, batch_size=4)))["gt"][0], before)
    for item in DataLoader(dataset, batch_size=None):  # no batching: each item as __getitem__ gives it
        item["gt"].mul_(0)
    torch.testing.assert_close(dataset[0]["gt"], before)


# ---------------------------------------------------------------------------------------------- through the trainer


@pytest.mark.e2e
def test_trainer_trains_on_a_split_tif_pair_folder(tiny_config, tmp_path):
    from conftest import run_folder, run_trainer

    for p in range(3):
        for s in range(4):
            image = np.random.default_rng(10 * p + s).random((20, 20)).astype(np.float32)
            write_tif(tmp_path / "edente" / f"p{p}_s{s}.tif", image)
            write_tif(tmp_path / "dente" / f"p{p}_s{s}.tif", image + 0.1)
    block = {
        "type": "TIFPairDataset",
        **pair_opt(tmp_path),
        "patch_size": 16,
        "patch_mode": "crop",
        "normalize": "minmax",
        "train_split": 0.67,
        "split_by": r"^(p\d+)_",
        "augment": {"flip": True},
        "cache_rate": 1.0,
    }
    del block["phase"]  # the trainer sets it from the block's name
    tiny_config["datasets"] = {"train": dict(block), "val": dict(block)}
    assert run_trainer(tiny_config, tmp_path) == 0
    split = json.loads((tmp_path / run_folder(tiny_config) / "split_TIFPairDataset.json").read_text())
    assert len(split["groups"]["train"]) == 2 and len(split["groups"]["val"]) == 1
