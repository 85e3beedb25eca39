"""PSFDataset: on-the-fly PSFs, reproducible per (seed, index), usable by a DataLoader."""

import pytest
import torch
from torch.utils.data import DataLoader

from dataset.psf_dataset import PSFDataset
from utils.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tracer's tensors are small: on a shared 2-core machine a second thread mostly waits for a
    # busy core, and makes the run 10 times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


OPT = {
    "type": "PSFDataset",
    "size": 6,
    "seed": 3,
    "lens_file": "cooke_triplet_f50.json",
    "spp": 1024,
    "kernel_size": 32,
    "wavelength_set_m": [450e-9, 550e-9, 650e-9],
    "fov": 0.015,
    "depth_min": 0.4,
    "depth_max": 20.0,
    "batch_size": 2,
}


def test_items_hold_the_psf_its_coordinates_and_the_index():
    dataset = PSFDataset(OPT)
    assert len(dataset) == 6
    item = dataset[2]
    assert item["x"] == 2
    assert item["gt"].shape == (3, 32, 32) and item["gt"].dtype == torch.float32
    assert float(item["gt"].max()) == pytest.approx(1.0)  # normalize: peak by default
    x, y, depth, focus, *waves = item["coords"].tolist()
    assert abs(x) <= 15 / 18 and abs(y) <= 15 / 18
    assert 400 <= depth <= 20000 and 400 <= focus <= 20000
    assert waves == pytest.approx([0.45, 0.55, 0.65])


def test_items_are_reproducible_per_seed_and_index_in_any_order():
    a = PSFDataset(OPT)
    b = PSFDataset(OPT)
    later = [b[i]["gt"] for i in (4, 1)]
    assert torch.equal(a[1]["gt"], later[1])
    assert torch.equal(a[4]["gt"], later[0])
    assert not torch.equal(a[1]["coords"], a[4]["coords"])
    other_seed = PSFDataset({**OPT, "seed": 4})
    assert not torch.equal(other_seed[1]["coords"], a[1]["coords"])


def test_sum_normalisation_and_wavelength_jitter():
    dataset = PSFDataset({**OPT, "normalize": "sum", "wavelength_jitter_m": 10e-9})
    item = dataset[0]
    assert torch.allclose(item["gt"].sum((-2, -1)), torch.ones(3), atol=1e-5)
    waves = item["coords"][4:]
    assert torch.all((waves - torch.tensor([0.45, 0.55, 0.65])).abs() <= 0.01 + 1e-6)
    assert not torch.allclose(waves, torch.tensor([0.45, 0.55, 0.65]))


def test_fixed_focus_and_a_dataloader_batch():
    dataset = PSFDataset({**OPT, "focus_depth_min": 2.0, "focus_depth_max": 2.0})
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch["gt"].shape == (3, 3, 32, 32)
    assert torch.allclose(batch["coords"][:, 3], torch.full((3,), 2000.0))
    assert batch["x"].tolist() == [0, 1, 2]


def test_config_keys_cover_the_block_and_typos_are_named():
    assert {
        "size",
        "seed",
        "lens_file",
        "spp",
        "kernel_size",
        "wavelength_set_m",
        "fov",
        "depth_min",
        "depth_max",
        "backend",
        "normalize",
    } <= set(PSFDataset.config_keys)
    with pytest.raises(ConfigError, match=r"unknown key 'kernel_sise' \(did you mean 'kernel_size'\?\)"):
        PSFDataset({**OPT, "kernel_sise": 32})
    with pytest.raises(ConfigError, match="normalize"):
        PSFDataset({**OPT, "normalize": "max"})


def test_depths_are_drawn_where_the_blur_fits_the_kernel():
    dataset = PSFDataset({**OPT, "size": 12})
    for i in range(12):
        item = dataset[i]
        depth, focus = item["coords"][2:4].tolist()
        assert abs(1 / depth - 1 / focus) <= dataset.max_defocus_per_mm * (1 + 1e-4)
        # Little of the PSF touches the kernel's border: it holds the whole blur.
        psf = item["gt"] / item["gt"].sum((-2, -1), keepdim=True)
        border = psf.sum((-2, -1)) - psf[:, 1:-1, 1:-1].sum((-2, -1))
        assert float(border.max()) < 0.05
    free = PSFDataset({**OPT, "keep_in_kernel": False, "size": 12})
    spread = [abs(1 / d - 1 / f) for d, f in (free[i]["coords"][2:4].tolist() for i in range(12))]
    assert max(spread) > dataset.max_defocus_per_mm
