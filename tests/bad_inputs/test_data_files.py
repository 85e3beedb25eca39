"""Issue 4, item 9: each kind of bad data gets one sentence that names the file."""

import numpy as np
import pytest
import tifffile
from PIL import Image
from torch.utils.data import DataLoader

from dataset.manifest_dataset import ManifestDataset
from dataset.tif_dataset import TIFFolderDataset, TIFPairDataset
from tests.conftest import run_trainer
from tests.helpers.bad_inputs import assert_one_sentence, vae
from utils.errors import DataError


def good(path, shape=(8, 8), dtype=np.float32):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.ones(shape, dtype))
    return path


def load_all(dataset):
    for _ in DataLoader(dataset, batch_size=2):
        pass


def corrupt(folder):
    good(folder / "a.tif")
    (folder / "b.tif").write_bytes(b"this is not a TIF file at all")
    return folder / "b.tif", lambda: TIFFolderDataset({"dir": str(folder)})


def png_named_tif(folder):
    good(folder / "a.tif")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "photo.png")
    (folder / "photo.png").rename(folder / "photo.tif")
    return folder / "photo.tif", lambda: TIFFolderDataset({"dir": str(folder)})


def truncated(folder):
    good(folder / "a.tif", shape=(256, 256))
    path = good(folder / "b.tif", shape=(256, 256))
    path.write_bytes(path.read_bytes()[:-100_000])  # the header survives, the pixels do not
    return path, lambda: load_all(TIFFolderDataset({"dir": str(folder)}))


def complex_dtype(folder):
    good(folder / "a.tif")
    return good(folder / "b.tif", dtype=np.complex64), lambda: TIFFolderDataset({"dir": str(folder)})


def volume_where_images_expected(folder):
    good(folder / "a.tif")
    return good(folder / "b.tif", shape=(5, 8, 8)), lambda: TIFFolderDataset({"dir": str(folder)})


def image_where_volumes_expected(folder):
    good(folder / "a.tif", shape=(4, 8, 8))
    return good(folder / "b.tif"), lambda: TIFFolderDataset({"dir": str(folder), "spatial_dims": 3})


def mixed_shapes(folder):
    good(folder / "a.tif")
    return good(folder / "b.tif", shape=(8, 9)), lambda: TIFFolderDataset({"dir": str(folder)})


def crop_larger_than_image(folder):
    good(folder / "a.tif", shape=(16, 16))
    path = good(folder / "b.tif", shape=(6, 6))
    return path, lambda: TIFFolderDataset({"dir": str(folder), "patch_size": 8, "patch_mode": "crop"})


def nan_pixels(folder):
    good(folder / "a.tif")
    image = np.ones((8, 8), np.float32)
    image[2, 3] = np.nan
    path = folder / "b.tif"
    tifffile.imwrite(path, image)
    return path, lambda: load_all(TIFFolderDataset({"dir": str(folder)}))


def inf_pixels_found_while_caching(folder):
    good(folder / "a.tif")
    image = np.ones((8, 8), np.float32)
    image[0, 0] = -np.inf
    path = folder / "b.tif"
    tifffile.imwrite(path, image)
    return path, lambda: TIFFolderDataset({"dir": str(folder), "cache_rate": 1.0})


def empty_folder(folder):
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    return folder, lambda: TIFFolderDataset({"dir": str(folder)})


def tifs_only_in_subfolders(folder):
    good(folder / "p01" / "a.tif")
    return "recursive: true", lambda: TIFFolderDataset({"dir": str(folder)})


def missing_folder(folder):
    return folder / "nope", lambda: TIFFolderDataset({"dir": str(folder / "nope")})


def missing_pair(folder):
    good(folder / "gt" / "a.tif")
    good(folder / "gt" / "lonely.tif")
    good(folder / "cond" / "a.tif")
    return "lonely", lambda: TIFPairDataset({"gt_dir": str(folder / "gt"), "cond_dir": str(folder / "cond")})


def csv_missing_column(folder):
    good(folder / "a.tif")
    manifest = folder / "m.csv"
    manifest.write_text("image_path,label\na.tif,1\n")
    return manifest, lambda: ManifestDataset({"csv": str(manifest), "columns": {"gt": "path"}})


def csv_row_with_missing_file(folder):
    good(folder / "a.tif")
    manifest = folder / "m.csv"
    manifest.write_text("path\na.tif\ngone.tif\n")
    return "gone.tif", lambda: ManifestDataset({"csv": str(manifest)})


CASES = [
    corrupt,
    png_named_tif,
    truncated,
    complex_dtype,
    volume_where_images_expected,
    image_where_volumes_expected,
    mixed_shapes,
    crop_larger_than_image,
    nan_pixels,
    inf_pixels_found_while_caching,
    empty_folder,
    tifs_only_in_subfolders,
    missing_folder,
    missing_pair,
    csv_missing_column,
    csv_row_with_missing_file,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_data_is_one_sentence_naming_the_file(case, tmp_path):
    culprit, build = case(tmp_path / "data")
    with pytest.raises(DataError) as error:
        build()
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    assert str(culprit) in message, message


@pytest.mark.e2e
def test_worker_errors_reach_the_user_as_the_workers_own_sentence(tmp_path, capsys):
    import numpy as np
    import tifffile

    folder = tmp_path / "tifs"
    folder.mkdir()
    for i in range(4):
        tifffile.imwrite(folder / f"img{i}.tif", np.random.rand(16, 16).astype(np.float32))
    # Its header is fine, so the dataset's set-up accepts it; its pixels are read, and refused, in the worker.
    tifffile.imwrite(folder / "img2.tif", np.full((16, 16), np.nan, dtype=np.float32))
    config = vae(datasets={"train": {"type": "TIFFolderDataset", "dir": str(folder), "num_workers": 1}})
    config["path"]["root"] = str(tmp_path / "experiments")
    config["train"]["batch_size"] = 4
    status = run_trainer(config, tmp_path)
    err = capsys.readouterr().err
    assert_one_sentence(err, status, "img2.tif' has 256 NaN and 0 Inf pixels")
    assert "DataLoader worker" not in err and "Original Traceback" not in err
