"""The data fast paths give exactly what the plain paths give: uncompressed TIFs read at the offset their
header gave, and cached batches copied out of the cache in one step per key (dataset/common/)."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile
import torch
from torch.utils.data import DataLoader

from dataset.common import files
from dataset.common.cached_batch import KEEP_BATCHES, FetchedItems
from dataset.manifest_dataset import ManifestDataset
from dataset.tif_dataset import TIFFolderDataset, TIFPairDataset
from engine.data import NamedCollate
from utils.errors import DataError


def write(path, array, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **options)
    return path


def pixels(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).random(shape).astype(dtype)


# ---------------------------------------------------------------------------------------------- raw reads


@pytest.mark.parametrize(
    "array, options",
    [
        (pixels((24, 20)), {}),
        (pixels((5, 12, 10)), {}),  # a volume: several pages
        (pixels((12, 10, 3)), {"photometric": "rgb"}),
        (pixels((24, 20), dtype=np.float64), {"byteorder": ">"}),  # big-endian
        ((pixels((24, 20)) * 60000).astype(np.uint16), {}),
    ],
    ids=["2d", "volume", "rgb", "big-endian", "uint16"],
)
def test_uncompressed_tifs_are_read_at_their_offset_with_the_same_pixels(tmp_path, array, options):
    path = write(tmp_path / "a.tif", array, **options)
    header = files.probe(path, channels=3 if array.shape[-1] == 3 else 1)
    assert header.raw is not None
    raw = files.read(path, raw=header.raw)
    expected = tifffile.imread(path)
    assert raw.dtype.isnative and raw.dtype == expected.dtype.newbyteorder("=")
    np.testing.assert_array_equal(raw, expected)
    np.testing.assert_array_equal(raw, array)


def test_compressed_tifs_go_through_tifffile(tmp_path):
    array = pixels((24, 20))
    path = write(tmp_path / "a.tif", array, compression="zlib")
    header = files.probe(path)
    assert header.raw is None and header.shape == (24, 20)
    np.testing.assert_array_equal(files.read(path, raw=header.raw), array)


def test_a_file_changed_after_probing_is_read_again_through_tifffile(tmp_path):
    path = write(tmp_path / "a.tif", pixels((24, 20), seed=0))
    header = files.probe(path)
    new = pixels((24, 20), seed=1)
    write(path, new, compression="zlib", description="rewritten")  # the old offset now points at junk
    os.utime(path, ns=(header.raw.mtime_ns + 1, header.raw.mtime_ns + 1))
    np.testing.assert_array_equal(files.read(path, raw=header.raw), new)


def test_a_file_truncated_after_the_dataset_was_built_is_named(tmp_path):
    path = write(tmp_path / "images" / "a.tif", pixels((24, 20)))
    dataset = TIFFolderDataset({"dir": str(tmp_path / "images")})
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(DataError, match="a.tif"):
        dataset[0]


# ---------------------------------------------------------------------------------------------- cached batches


@pytest.fixture
def pairs(tmp_path):
    for i in range(10):
        write(tmp_path / "gt" / f"p{i}.tif", pixels((12, 16), seed=i))
        write(tmp_path / "cond" / f"p{i}.tif", pixels((12, 16), seed=100 + i))
    return {"gt_dir": str(tmp_path / "gt"), "cond_dir": str(tmp_path / "cond"), "normalize": "zscore"}


def batches(dataset, workers=0, collate=None, batch_size=4):
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        num_workers=workers,
        collate_fn=collate,
    )
    return list(loader)


def assert_same_batches(ours, plain):
    assert len(ours) == len(plain)
    for a, b in zip(ours, plain):
        assert list(a) == list(b)
        for key in a:
            if isinstance(a[key], dict):
                assert list(a[key]) == list(b[key])
                for k in a[key]:
                    assert a[key][k].dtype == b[key][k].dtype
                    torch.testing.assert_close(a[key][k], b[key][k], rtol=0, atol=0)
            elif torch.is_tensor(a[key]):
                assert a[key].dtype == b[key].dtype and a[key].is_contiguous()
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
            else:
                assert a[key] == b[key]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("cache_rate", [1.0, 0.5])
def test_cached_batches_equal_torchs_collate(pairs, workers, cache_rate):
    dataset = TIFPairDataset({**pairs, "phase": "val", "cache_rate": cache_rate})
    collate = NamedCollate("val", "TIFPairDataset")
    assert_same_batches(batches(dataset, workers, collate), batches(dataset, workers))
    fetched = dataset.__getitems__([0, 3, 9])  # item 9 is cached only with cache_rate 1
    assert isinstance(fetched, FetchedItems) == (cache_rate == 1.0)


def test_cached_batches_keep_labels_and_latents(tmp_path):
    rows = ["path,latent,kind,score"]
    for i in range(6):
        write(tmp_path / f"i{i}.tif", pixels((8, 8), seed=i))
        np.save(tmp_path / f"l{i}.npy", np.full((4, 2, 2), i, np.float32))
        rows.append(f"i{i}.tif,l{i}.npy,{'ab'[i % 2]},{i / 3}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    opt = {
        "csv": str(tmp_path / "m.csv"),
        "columns": {"gt": "path"},
        "label_columns": ["kind", "score"],
        "latent_column": "latent",
        "cache_rate": 1.0,
        "phase": "val",
    }
    dataset = ManifestDataset(opt)
    ours = batches(dataset, collate=NamedCollate("val", "ManifestDataset"), batch_size=3)
    assert isinstance(dataset.__getitems__([0, 1]), FetchedItems)
    assert_same_batches(ours, batches(dataset, batch_size=3))
    assert set(ours[0]) == {"gt", "kind", "score", "latent", "name", "norm"}


def test_per_item_work_takes_the_item_path(pairs):
    augmented = TIFPairDataset({**pairs, "phase": "train", "cache_rate": 1.0, "augment": {"flip": True}})
    cropped = TIFPairDataset(
        {**pairs, "phase": "val", "cache_rate": 1.0, "patch_size": 8, "patch_mode": "crop"}
    )
    for dataset in (augmented, cropped):
        assert not isinstance(dataset.__getitems__([0, 1]), FetchedItems)
    plain_train = TIFPairDataset({**pairs, "phase": "train", "cache_rate": 1.0})
    assert isinstance(plain_train.__getitems__([0, 1]), FetchedItems)


def test_a_subclass_with_its_own_items_keeps_them(pairs):
    class Doubled(TIFPairDataset):
        def __getitem__(self, idx):
            item = super().__getitem__(idx)
            item["gt"] = item["gt"] * 2
            return item

    dataset = Doubled({**pairs, "phase": "val", "cache_rate": 1.0})
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=NamedCollate("val", "Doubled"))))
    torch.testing.assert_close(batch["gt"][0], TIFPairDataset({**pairs, "phase": "val"})[0]["gt"] * 2)


def test_a_cached_batch_changed_in_place_leaves_the_cache_alone(pairs):
    dataset = TIFPairDataset({**pairs, "phase": "val", "cache_rate": 1.0})
    before = dataset[0]["gt"].clone()
    loader = DataLoader(dataset, batch_size=4, collate_fn=NamedCollate("val", "TIFPairDataset"))
    for batch in loader:
        batch["gt"].mul_(0)
        batch["norm"]["gt"].mul_(0)
    torch.testing.assert_close(dataset[0]["gt"], before)
    assert float(next(iter(loader))["norm"]["gt"].abs().sum()) > 0


def test_the_trainers_collate_never_makes_the_items_and_a_plain_reader_gets_them(pairs, monkeypatch):
    dataset = TIFPairDataset({**pairs, "phase": "val", "cache_rate": 1.0})
    made = []
    real_item = dataset._item
    monkeypatch.setattr(
        dataset, "_item", lambda idx, protect_cache: made.append(idx) or real_item(idx, protect_cache)
    )
    batch = NamedCollate("val", "TIFPairDataset")(dataset.__getitems__([4, 1]))
    assert made == [] and batch["name"] == ["p4", "p1"]
    fetched = dataset.__getitems__([4, 1])
    items = list(fetched)
    assert made == [4, 1] and len(fetched) == 2 and fetched[-1] is items[1]
    torch.testing.assert_close(items[0]["gt"], dataset[4]["gt"])
    torch.testing.assert_close(batch["gt"][0], dataset[4]["gt"])


def test_a_batch_storage_is_reused_only_once_nothing_holds_it(pairs):
    dataset = TIFPairDataset({**pairs, "phase": "val", "cache_rate": 1.0})
    collate = NamedCollate("val", "TIFPairDataset")
    expected = [dataset[i]["gt"] for i in range(len(dataset))]

    def fetch(indices):
        return collate(dataset.__getitems__(indices))

    first = fetch([0, 1])
    first_storage = first["gt"].data_ptr()
    kept = [first["gt"][1:], first["norm"]["gt"].numpy()]  # a slice and a numpy array of the batch
    del first
    storages = set()
    for _ in range(3 * KEEP_BATCHES):
        batch = fetch([2, 3])
        storages.add(batch["gt"].data_ptr())
        del batch
    assert len(storages) == 1 and first_storage not in storages  # one storage, recycled
    torch.testing.assert_close(kept[0][0], expected[1])  # the batch still held was never written over
    del kept
    again = fetch([5, 6])
    assert again["gt"].data_ptr() == first_storage
    torch.testing.assert_close(again["gt"][1], expected[6])
    held = [fetch([i, i + 1]) for i in range(len(dataset) - 1)]  # more than the pool keeps, all held
    for i, batch in enumerate(held):
        torch.testing.assert_close(batch["gt"][1], expected[i + 1])


def test_threads_fetching_cached_batches_at_once_each_get_their_own(pairs):
    dataset = TIFPairDataset({**pairs, "phase": "val", "cache_rate": 1.0})
    collate = NamedCollate("val", "TIFPairDataset")
    expected = torch.stack([dataset[i]["gt"] for i in range(len(dataset))])

    def check(offset):
        for step in range(200):
            indices = [(offset + step + k) % len(dataset) for k in range(3)]
            batch = collate(dataset.__getitems__(indices))
            if not torch.equal(batch["gt"], expected[indices]):
                return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(check, range(4)))


def test_headers_shared_by_files_are_parsed_once_and_still_right(tmp_path):
    arrays = {
        "a": pixels((32, 32)),
        "b": pixels((32, 32), seed=1),  # same header as a
        "c": (pixels((32, 64)) * 1000).astype(np.uint16),  # same file size as a, another header
        "d": pixels((2, 16, 32)),  # a volume of the same size
        "e": pixels((32, 32), seed=2),
    }
    paths = {name: write(tmp_path / f"{name}.tif", array) for name, array in arrays.items()}
    write(paths["e"], arrays["e"], description="written by another program")
    paths["f"] = write(tmp_path / "f.tif", arrays["a"], description="x" * 70000)  # too long to compare
    known = files.KnownHeaders()
    parsed = []
    real_parse = files.tif_headers.parse

    def counting_parse(path):
        parsed.append(os.path.basename(path))
        return real_parse(path)

    files.tif_headers.parse = counting_parse
    try:
        headers = {name: files.probe(path, known=known) for name, path in paths.items()}
        again = files.probe(tmp_path / "f.tif", known=known)
    finally:
        files.tif_headers.parse = real_parse
    assert "b.tif" not in parsed and {"a.tif", "c.tif", "d.tif", "e.tif"} <= set(parsed)
    assert parsed.count("f.tif") == 2 and again == headers["f"]
    for name, path in paths.items():
        assert headers[name][:2] == files.probe(path)[:2], name
        np.testing.assert_array_equal(files.read(path, raw=headers[name].raw), tifffile.imread(path))
    assert headers["b"].raw.mtime_ns == os.stat(paths["b"]).st_mtime_ns
