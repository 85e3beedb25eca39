"""Physics of the built-in ray tracer: first-order optics, PSF shape, colour, defocus, determinism."""

import math

import pytest
import torch

from utils.optics import GeoLens
from utils.optics.materials import WAVE_C, WAVE_D, WAVE_F, Material
from utils.optics.tracing import refract


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tracer's tensors are small: on a shared 2-core machine a second thread mostly waits for a
    # busy core, and makes the run 10 times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def singlet():
    return GeoLens(filename="bk7_singlet_f50.json")


@pytest.fixture(scope="module")
def cooke():
    return GeoLens(filename="cooke_triplet_f50.json")


def second_moment_diameter(kernel, pixel_mm):
    """Diameter (mm) of the uniform disc with the same mean squared radius as the kernel."""
    ks = kernel.shape[-1]
    coords = torch.arange(ks, dtype=torch.float64) - (ks - 1) / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    k = kernel.double() / kernel.sum()
    cx, cy = (k * xx).sum(), (k * yy).sum()
    mean_r2 = (k * ((xx - cx) ** 2 + (yy - cy) ** 2)).sum()
    return 2.0 * math.sqrt(2.0 * float(mean_r2)) * pixel_mm


def test_singlet_efl_matches_the_lensmaker_equation(singlet):
    n = Material("n-bk7").n(WAVE_D)
    front, back = [s for s in singlet.surfaces if not s.is_stop]
    r1, r2, t = 1 / front.c, 1 / back.c, back.z - front.z
    power = (n - 1) * (1 / r1 - 1 / r2 + (n - 1) * t / (n * r1 * r2))
    assert singlet.efl == pytest.approx(1 / power, rel=1e-3)
    assert singlet.fnum == pytest.approx(singlet.efl / (2 * 6.25), rel=1e-6)  # stop in front: pupil = stop


def test_cooke_first_order_matches_the_published_design(cooke):
    # DeepLens's cooke.json quotes foclen 49.81 and F/4.0 for the same prescription.
    assert cooke.efl == pytest.approx(49.8, rel=2e-3)
    assert cooke.fnum == pytest.approx(4.0, rel=2e-2)
    assert cooke.stop_index == 4
    assert 9.267 < cooke.entrance_pupil_z < 12.385 + 5  # the stop's image lies near the stop
    assert math.degrees(cooke.hfov) == pytest.approx(math.degrees(math.atan(18.0 / cooke.efl)))


def test_on_axis_psf_is_symmetric_and_centred(singlet):
    lens = GeoLens(filename="bk7_singlet_f50.json")
    lens.refocus(-5000.0)
    lens.d_sensor += 0.3  # a defocused disc shows asymmetries far better than a focused spot
    kernel = lens.psf(torch.tensor([0.0, 0.0, -5000.0]), ks=33, spp=65536, seed=0)
    assert kernel.shape == (33, 33)
    for mirrored in (kernel.flip(0), kernel.flip(1), kernel.T):
        assert (kernel - mirrored).abs().sum() < 0.03
    coords = torch.arange(33.0) - 16
    assert abs(float((kernel.sum(0) * coords).sum())) < 0.02
    assert abs(float((kernel.sum(1) * coords).sum())) < 0.02


def test_blue_focuses_shorter_than_red_for_a_crown_singlet(singlet):
    lens = GeoLens(filename="bk7_singlet_f50.json")
    blue = lens.refocus(float("-inf"), wvln=WAVE_F)
    green = lens.refocus(float("-inf"), wvln=WAVE_D)
    red = lens.refocus(float("-inf"), wvln=WAVE_C)
    assert blue < green < red
    # Longitudinal colour of a thin lens is f / V.
    assert red - blue == pytest.approx(lens.efl / Material("n-bk7").abbe(), rel=0.1)
    assert lens.paraxial_image_z(float("-inf"), WAVE_F) < lens.paraxial_image_z(float("-inf"), WAVE_C)


def test_blur_grows_with_defocus_as_the_circle_of_confusion_predicts():
    lens = GeoLens(filename="achromat_ac254_100.json")  # well corrected, so defocus dominates
    focus = 10000.0
    lens.refocus(-focus)
    aperture = 2 * lens.entrance_pupil_r
    f = lens.efl
    previous = 0.0
    for depth in (7000.0, 5000.0, 4000.0):
        expected = aperture * abs(depth - focus) / depth * f / (focus - f)
        kernel = lens.psf(torch.tensor([0.0, 0.0, -depth]), ks=96, spp=65536, seed=0)
        measured = second_moment_diameter(kernel, lens.pixel_size)
        assert measured == pytest.approx(expected, rel=0.05), depth
        assert measured > previous
        previous = measured


def test_hyperbolic_plano_convex_lens_focuses_a_point_perfectly():
    # A plane facing the collimated beam, then a hyperboloid of conic -n^2: the textbook stigmatic
    # singlet. Exercises the aspheric intersection and normals; its sphere has visible aberration.
    n = Material("n-bk7").n(WAVE_D)
    radius = (n - 1) * 50.0

    def lens_with(kind, k):
        return GeoLens.from_dict(
            {
                "r_sensor": 1.0,
                "sensor_res": [1000, 1000],
                "surfaces": [
                    {"type": "Plane", "r": 10.0, "d_next": 5.0, "mat2": "n-bk7"},
                    {"type": kind, "r": 10.0, "roc": -radius, "k": k, "d_next": 50.0, "mat2": "air"},
                ],
            }
        )

    asphere = lens_with("Aspheric", -n * n)
    sphere = lens_with("Spheric", 0.0)
    paraxial = asphere.paraxial_image_z(float("-inf"), WAVE_D)
    point = torch.tensor([[0.0, 0.0, float("-inf")]])
    for lens in (asphere, sphere):
        lens.d_sensor = paraxial
    sharp = asphere.psf(point, ks=15, wvln=WAVE_D, spp=4096)[0]
    blurred = sphere.psf(point, ks=15, wvln=WAVE_D, spp=4096)[0]
    assert sharp[7, 7] > 0.99  # every ray within one 2 um pixel
    assert blurred[7, 7] < 0.5
    assert asphere.refocus(float("-inf")) == pytest.approx(paraxial, abs=1e-3)


def test_asphere_with_no_asphericity_traces_like_the_sphere(singlet):
    data = {
        "r_sensor": 5.657,
        "surfaces": [
            {"type": "Stop", "r": 6.25, "d_next": 2.0},
            {
                "type": "Aspheric",
                "r": 12.7,
                "roc": 51.5,
                "k": 0.0,
                "ai": [0.0],
                "d_next": 5.0,
                "mat2": "n-bk7",
            },
            {"type": "Spheric", "r": 12.7, "roc": -51.5, "d_next": 48.988, "mat2": "air"},
        ],
    }
    lens = GeoLens.from_dict(data)
    point = torch.tensor([[0.5, 0.3, -3000.0]])
    a = lens.psf(point, ks=32, spp=4096, seed=1)
    b = singlet.psf(point, ks=32, spp=4096, seed=1)
    assert torch.allclose(a, b, atol=1e-6)


def test_total_internal_reflection_drops_the_ray():
    normal = torch.tensor([0.0, 0.0, 1.0])
    steep = torch.tensor([math.sin(math.radians(60)), 0.0, math.cos(math.radians(60))])
    _, passes = refract(steep, normal, 1.5)  # glass to air beyond the 41.8 degree critical angle
    assert not passes
    gentle = torch.tensor([math.sin(math.radians(20)), 0.0, math.cos(math.radians(20))])
    out, passes = refract(gentle, normal, 1.5)
    assert passes
    assert float(out[0]) == pytest.approx(1.5 * math.sin(math.radians(20)), rel=1e-6)  # Snell


def test_kernels_sum_to_one_for_every_entry_point(cooke):
    points = torch.tensor([[0.0, 0.0, -2000.0], [0.8, -0.6, -800.0], [-1.0, 1.0, -20000.0]])
    for ks in (31, 32):
        assert torch.allclose(cooke.psf(points, ks=ks, spp=1024).sum((-2, -1)), torch.ones(3), atol=1e-5)
        rgb = cooke.psf_rgb(points, ks=ks, spp=1024)
        assert rgb.shape == (3, 3, ks, ks)
        assert torch.allclose(rgb.sum((-2, -1)), torch.ones(3, 3), atol=1e-5)
    psf_map = cooke.psf_map(-5000.0, grid=(3, 2), ks=16, spp=256)
    assert psf_map.shape == (3, 2, 1, 16, 16)
    assert torch.allclose(psf_map.sum((-2, -1)), torch.ones(3, 2, 1), atol=1e-5)
    with_diffraction = cooke.psf(points, ks=31, spp=1024, diffraction=True)
    assert torch.allclose(with_diffraction.sum((-2, -1)), torch.ones(3), atol=1e-5)


def test_identical_seeds_give_identical_psfs(cooke):
    point = torch.tensor([[0.3, 0.4, -1500.0]])
    a = cooke.psf_rgb(point, ks=32, spp=2048, seed=7)
    b = cooke.psf_rgb(point, ks=32, spp=2048, seed=7)
    c = cooke.psf_rgb(point, ks=32, spp=2048, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_lateral_colour_separates_the_channels_off_axis(cooke):
    lens = GeoLens(filename="cooke_triplet_f50.json")
    lens.refocus(-10000.0)
    rgb = lens.psf_rgb(torch.tensor([[0.9, 0.0, -10000.0]]), ks=32, spp=4096, seed=0)[0]
    coords = torch.arange(32.0)
    centroids = [(channel.sum(0) * coords).sum() for channel in rgb]
    assert len({round(float(c), 2) for c in centroids}) == 3
    assert abs(float(centroids[1]) - 15.5) < 1.0  # green is centred on its own chief ray


def test_stratified_sampling_is_less_noisy_than_independent_sampling(singlet):
    point = torch.tensor([[0.4, 0.2, -3000.0]])
    reference = singlet.psf(point, ks=32, spp=262144, seed=0)
    errors = {}
    for stratified in (True, False):
        kernels = [singlet.psf(point, ks=32, spp=4096, seed=s, stratified=stratified) for s in range(3)]
        errors[stratified] = sum(float((k - reference).abs().sum()) for k in kernels) / 3
    assert errors[True] < 0.7 * errors[False]


def test_diffraction_only_matters_near_focus():
    lens = GeoLens(filename="achromat_ac254_100.json")
    lens.refocus(-10000.0)
    point = torch.tensor([[0.0, 0.0, -10000.0]])
    focused = lens.psf(point, ks=33, spp=4096, seed=0)
    diffracted = lens.psf(point, ks=33, spp=4096, seed=0, diffraction=True)
    assert float(diffracted.max()) < 0.8 * float(focused.max())  # the Airy disc (6.7 um) spreads it
    far = torch.tensor([[0.0, 0.0, -3000.0]])
    blurred = lens.psf(far, ks=33, spp=4096, seed=0)
    blurred_diffracted = lens.psf(far, ks=33, spp=4096, seed=0, diffraction=True)
    assert float((blurred - blurred_diffracted).abs().sum()) < 0.3
