"""Lens files, glasses and the `deeplens:` block: what loads, and what a mistake is told."""

import json

import pytest
import torch

from utils.errors import ConfigError, UserError
from utils.optics import GeoLens, LensError, Material, MaterialError, lens_from_config, shipped_lenses
from utils.optics.materials import WAVE_D


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tracer's tensors are small: on a shared 2-core machine a second thread mostly waits for a
    # busy core, and makes the run 10 times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Schott / Ohara / Malitson catalogue values: n_d and Abbe number V_d.
CATALOGUE = {
    "N-BK7": (1.51680, 64.17),
    "N-SF11": (1.78472, 25.68),
    "F2": (1.62004, 36.37),
    "N-SK16": (1.62041, 60.32),
    "N-SF5": (1.67271, 32.25),
    "N-BAF10": (1.67003, 47.11),
    "N-SF6": (1.80518, 25.36),
    "N-LAK22": (1.65113, 55.89),
    "N-SF10": (1.72828, 28.53),
    "N-BAK4": (1.56883, 55.98),
    "Fused Silica": (1.45846, 67.82),
}

# A lens file as DeepLens writes it: its bookkeeping keys, short glass names, a stop with "occluder".
DEEPLENS_COOKE = {
    "foclen": 49.81,
    "fnum": 4.0,
    "r_last": 18.175,
    "d_sensor": 60.44,
    "sensor_size": [25.70, 25.70],
    "surfaces": [
        {
            "type": "Spheric",
            "r": 7.5,
            "c": 0.0454,
            "roc": 22.026,
            "d": 0.0,
            "mat1": "air",
            "mat2": "sk16",
            "d_next": 3.259,
        },
        {
            "type": "Spheric",
            "r": 7.5,
            "c": -0.0023,
            "roc": -434.78,
            "d": 3.259,
            "mat1": "sk16",
            "mat2": "air",
            "d_next": 6.008,
        },
        {
            "type": "Spheric",
            "r": 7.5,
            "c": -0.045,
            "roc": -22.222,
            "d": 9.267,
            "mat1": "air",
            "mat2": "f2",
            "d_next": 1.0,
        },
        {
            "type": "Spheric",
            "r": 7.5,
            "c": 0.0493,
            "roc": 20.284,
            "d": 10.267,
            "mat1": "f2",
            "mat2": "air",
            "d_next": 2.118,
        },
        {"type": "Stop", "r": 5.0, "c": 0.0, "d": 12.385, "mat1": "air", "mat2": "occluder", "d_next": 2.75},
        {
            "type": "Spheric",
            "r": 7.5,
            "c": 0.0125,
            "roc": 80.0,
            "d": 15.135,
            "mat1": "occluder",
            "mat2": "sk16",
            "d_next": 2.952,
        },
        {
            "type": "Spheric",
            "r": 7.5,
            "c": -0.0544,
            "roc": -18.382,
            "d": 18.087,
            "mat1": "sk16",
            "mat2": "air",
            "d_next": 42.352,
        },
    ],
}

SINGLET = {
    "info": "example",
    "r_sensor": 3.0,
    "(d_sensor)": 40.699,
    "surfaces": [
        {"idx": 0, "type": "Spheric", "r": 5.0, "(c)": 0.025, "roc": 40.0, "mat2": "bk7", "d_next": 3.0},
        {"idx": 1, "type": "Spheric", "r": 5.0, "roc": -40.0, "mat2": "air", "d_next": 37.699},
    ],
}


def write(tmp_path, data, name="lens.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_sellmeier_glasses_match_the_catalogue(name):
    n_d, v_d = CATALOGUE[name]
    glass = Material(name)
    assert glass.n(WAVE_D) == pytest.approx(n_d, abs=2e-5)
    assert glass.abbe() == pytest.approx(v_d, abs=0.05)


def test_glass_names_and_the_nd_vd_form():
    assert Material("bk7").n(0.55) == Material("N-BK7").n(0.55) == Material("n-bk7").n(0.55)
    cauchy = Material("1.5168/64.17")
    assert cauchy.n(WAVE_D) == pytest.approx(1.5168, abs=1e-9)
    assert cauchy.abbe() == pytest.approx(64.17, abs=1e-6)
    assert cauchy.n(0.55) == pytest.approx(Material("N-BK7").n(0.55), abs=5e-4)
    assert Material("occluder").n(0.5) == Material("AIR").n(0.7) == 1.0
    waves = torch.tensor([0.45, 0.55, 0.65])
    assert torch.all(Material("f2").n(waves)[:-1] > Material("f2").n(waves)[1:])  # normal dispersion


def test_unknown_glass_lists_the_nearest_names():
    with pytest.raises(MaterialError, match="n-bk7"):
        Material("n-bk8")


def test_shipped_lenses_load_with_sensible_first_order_properties():
    names = {p.name for p in shipped_lenses()}
    assert {"bk7_singlet_f50.json", "achromat_ac254_100.json", "cooke_triplet_f50.json"} <= names
    achromat = GeoLens(filename="achromat_ac254_100.json")
    assert achromat.efl == pytest.approx(100.0, rel=2e-3)  # Thorlabs: f = 100.0 mm
    assert achromat.bfl == pytest.approx(97.1, abs=0.15)  # Thorlabs: BFL 97.1 mm
    assert achromat.pixel_size == pytest.approx(0.004, rel=1e-3)
    assert achromat.sensor_size == pytest.approx((8.0, 8.0), rel=1e-3)


def test_deeplens_files_load_unchanged(tmp_path):
    lens = GeoLens(filename=str(write(tmp_path, DEEPLENS_COOKE)))
    assert lens.efl == pytest.approx(49.8, rel=2e-3)
    assert lens.sensor_res == (2000, 2000)  # DeepLens's default
    assert lens.r_sensor == pytest.approx(25.70 * 2**0.5 / 2)  # from sensor_size when r_sensor is absent
    singlet = GeoLens(filename=str(write(tmp_path, SINGLET, "singlet.json")))
    assert singlet.d_sensor == pytest.approx(40.699)
    # Paraxial EFL (lensmaker: 39.20 mm). The file's "foclen" note, 38.87, is DeepLens's real-ray
    # estimate, which includes this fast singlet's spherical aberration.
    assert singlet.efl == pytest.approx(39.20, rel=1e-3)


def test_relative_lens_file_resolves_against_the_project_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert GeoLens(filename="utils/optics/lenses/bk7_singlet_f50.json").efl == pytest.approx(50.66, rel=1e-3)
    with pytest.raises(LensError, match="cooke_triplet_f50.json"):
        GeoLens(filename="no_such_lens.json")


def broken(changes):
    data = json.loads(json.dumps(SINGLET))
    for (index, key), value in changes.items():
        if value is None:
            del data["surfaces"][index][key]
        else:
            data["surfaces"][index][key] = value
    return data


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({(1, "d_next"): None}, r"surface 1 has no 'd_next'"),
        ({(0, "mat2"): "bk77"}, r"surface 0: 'mat2' is an unknown glass 'bk77'"),
        ({(1, "type"): "Cubic"}, r"surface 1: 'type' 'Cubic' is not supported"),
        ({(0, "d_next"): 0.5}, r"surface 0: 'd_next' = 0.5 makes it cross surface 1"),
        ({(0, "rr"): 5.0}, r"surface 0: unknown key 'rr' \(did you mean 'r'\?\)"),
        ({(0, "r"): 45.0}, r"surface 0: semi-aperture 'r' = 45.0 is larger than the surface"),
        ({(1, "r"): "big"}, r"surface 1: 'r' must be a finite number"),
    ],
)
def test_malformed_lens_files_name_file_surface_and_key(tmp_path, changes, expected):
    path = write(tmp_path, broken(changes))
    with pytest.raises(LensError, match=expected) as error:
        GeoLens(filename=str(path))
    assert str(path) in str(error.value)
    assert isinstance(error.value, UserError) and isinstance(error.value, ValueError)
    assert "\n" not in str(error.value)


def test_a_lens_without_r_sensor_or_surfaces_is_refused(tmp_path):
    with pytest.raises(LensError, match="has no 'r_sensor'"):
        GeoLens(filename=str(write(tmp_path, {"surfaces": SINGLET["surfaces"]})))
    with pytest.raises(LensError, match="non-empty 'surfaces'"):
        GeoLens(filename=str(write(tmp_path, {"r_sensor": 3.0, "surfaces": []})))


SEED_BLOCK = {
    "lens_file": "cooke_triplet_f50.json",
    "spp": 1024,
    "kernel_size": 32,
    "wavelength_set_m": [450e-9, 550e-9, 650e-9],
    "fov": 0.015,
    "depth_min": 400e-3,
    "depth_max": 20000e-3,
    "backend": "builtin",
}


def test_lens_from_config_converts_units_and_simulates():
    sim = lens_from_config(SEED_BLOCK)
    assert sim.wavelengths_um == pytest.approx((0.45, 0.55, 0.65))
    assert (sim.depth_min_mm, sim.depth_max_mm) == pytest.approx((400.0, 20000.0))
    assert sim.field_extent == pytest.approx(15.0 / 18.0)
    points = sim.sample_points(4, torch.Generator().manual_seed(0))
    assert torch.all(points[:, :2].abs() <= sim.field_extent)
    assert torch.all((-points[:, 2] >= 400.0 - 1e-3) & (-points[:, 2] <= 20000.0 + 1e-2))
    sim.focus(2000.0)
    psfs = sim.simulate(points, device="cpu")
    assert psfs.shape == (4, 3, 32, 32)
    assert torch.allclose(psfs.sum((-2, -1)), torch.ones(4, 3), atol=1e-5)


def test_lens_from_config_reads_an_omegaconf_block():
    from omegaconf import OmegaConf

    sim = lens_from_config(OmegaConf.create({"deeplens": SEED_BLOCK}).deeplens)
    assert sim.spp == 1024 and sim.kernel_size == 32


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"sp": 10}, r"deeplens: unknown key 'sp' \(did you mean 'spp'\?\)"),
        ({"fov": 0.5}, r"deeplens.fov = 0.5 m is beyond the sensor"),
        ({"backend": "zemax"}, r"deeplens.backend must be one of builtin, deeplens"),
        ({"wavelength_set_m": [450, 550]}, r"wavelengths in metres"),
        ({"depth_min": 30.0}, r"depth_min \(30.0\) is larger than depth_max"),
        ({"spp": 0}, r"deeplens.spp must be a positive integer"),
    ],
)
def test_bad_deeplens_blocks_get_one_sentence(change, expected):
    with pytest.raises(ConfigError, match=expected):
        lens_from_config({**SEED_BLOCK, **change})


def test_deeplens_backend_without_the_package_says_how_to_get_it():
    try:
        import deeplens  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install deeplens.*Python 3.12\+ and torchvision"):
            lens_from_config({**SEED_BLOCK, "backend": "deeplens"})
    else:  # pragma: no cover
        pytest.skip("deeplens is installed")


def test_per_point_focus_matches_refocusing_the_lens():
    sim = lens_from_config(SEED_BLOCK)
    points = torch.tensor([[0.2, 0.1, -1000.0], [0.5, -0.4, -3000.0]])
    focus = torch.tensor([800.0, 5000.0])
    together = sim.simulate(points, generator=torch.Generator().manual_seed(0), focus_depths_mm=focus)
    assert sim.lens.best_focus_z(focus).tolist() == pytest.approx(
        [sim.focus(800.0), sim.focus(5000.0)], abs=1e-3
    )
    sim.focus(800.0)
    alone = sim.simulate(points[:1], generator=torch.Generator().manual_seed(0))  # the same pupil samples
    assert torch.allclose(together[:1], alone, atol=1e-4)


def test_a_lens_that_blocks_every_ray_names_the_surface(tmp_path):
    data = json.loads(json.dumps(SINGLET))
    data["surfaces"].insert(0, {"type": "Stop", "r": 4.0, "d_next": 1.0})
    data["surfaces"][2]["r"] = 1e-4  # a typo: the back surface is a pinhole
    with pytest.raises(LensError, match=r"surface 2: no ray gets past it; check its 'r'"):
        GeoLens(filename=str(write(tmp_path, data)))
