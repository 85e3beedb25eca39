"""GeoLens: a lens file, its first-order properties, and its geometric PSFs by exact ray tracing.

Shaped like DeepLens's `GeoLens` so that code written for it runs here: lengths in millimetres,
wavelengths in micrometres, `points` as (N, 3) tensors of normalised field x, y in [-1, 1] and depth
in mm (negative: in front of the first surface). Each kernel sums to 1.
"""

import math
from pathlib import Path

import torch

from utils.optics.lens_file import LensError, LensPrescription, parse_lens, read_lens_file
from utils.optics.materials import WAVE_C, WAVE_D, WAVE_F
from utils.optics.paraxial import first_order, image_distance, image_space_slope
from utils.optics.psf import airy_kernels, convolve_same, normalize_sum, splat
from utils.optics.ray_launch import (
    CHIEF_RAY_WAVE,
    PUPIL_PROBE,
    fixed_generator,
    measure_pupil_overfill,
    trace_from_points,
)
from utils.optics.tracing import propagate_to_z

LENS_DIR = Path(__file__).parent / "lenses"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_WAVE = 0.587  # micrometres, as in DeepLens
WAVE_RGB = (WAVE_C, WAVE_D, WAVE_F)  # red, green, blue Fraunhofer lines, as in DeepLens
# Off-axis, the real entrance pupil is shifted and stretched against the paraxial one (pupil
# aberrations), so rays are aimed at a larger disc and the real stop cuts the beam; each lens measures
# how much larger at load time, probing up to this factor.
MAX_RAYS_PER_TRACE = 1 << 21


def resolve_lens_file(filename: str | Path) -> Path:
    """An existing path as given, else relative to the project root, else a shipped lens by name."""
    path = Path(filename).expanduser()
    candidates = [path] if path.is_absolute() else [path, PROJECT_ROOT / path, LENS_DIR / path.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shipped = sorted(p.name for p in LENS_DIR.glob("*.json"))
    raise LensError(f"lens file {filename} does not exist (shipped lenses: {', '.join(shipped)})")


def shipped_lenses() -> list[Path]:
    return sorted(LENS_DIR.glob("*.json"))


class GeoLens:
    """A sequential lens of refractive surfaces, simulated by geometric ray tracing.

    Field x = 1 images at the sensor's right edge: the object sits at x * (sensor half-width) * |depth|
    / EFL, as in DeepLens. Kernels are in the orientation of the upright scene (the sensor image turned
    by 180 degrees, rows from top to bottom, +y up), centred on the green chief ray: its image falls on
    the kernel's centre ((ks - 1) / 2, (ks - 1) / 2), a pixel centre for odd ks and the corner of the
    four central pixels for even ks.

    Args:
        filename: a lens JSON file (see `utils.optics.lens_file`); a relative path resolves against
            the working directory, then the project root, then the shipped lenses by bare name.
        device: where the rays are traced (the lens itself is a handful of floats).
        prescription: an already parsed lens, instead of `filename`.
    """

    def __init__(self, filename=None, device=None, prescription: LensPrescription | None = None):
        if (filename is None) == (prescription is None):
            raise ValueError("GeoLens needs exactly one of filename= or prescription=")
        if prescription is None:
            self.lens_file = resolve_lens_file(filename)
            prescription = read_lens_file(self.lens_file)
        else:
            self.lens_file = None
        self.prescription = prescription
        self.surfaces = prescription.surfaces
        self.device = torch.device(device or "cpu")
        self.sensor_res = prescription.sensor_res
        self.r_sensor = prescription.r_sensor
        w, h = self.sensor_res
        diagonal_px = math.hypot(w, h)
        self.pixel_size = 2.0 * self.r_sensor / diagonal_px  # mm, square pixels
        self.sensor_size = (w * self.pixel_size, h * self.pixel_size)  # (W, H) mm
        self.d_sensor = prescription.d_sensor

        first = first_order(self.surfaces, WAVE_D, prescription.enpd, prescription.source)
        if first.efl <= 0:
            raise LensError(f"lens file {prescription.source} has a negative focal length ({first.efl:g} mm)")
        self.first_order = first
        self.efl = self.foclen = first.efl
        self.bfl = first.bfl
        self.fnum = first.fnum
        self.entrance_pupil_z = first.entrance_pupil_z
        self.entrance_pupil_r = first.entrance_pupil_r
        self.stop_index = first.stop_index
        self.hfov = math.atan(self.r_sensor / self.efl)  # half diagonal field of view, radians
        self.pupil_overfill = PUPIL_PROBE
        self.pupil_overfill = measure_pupil_overfill(self)

    @classmethod
    def from_dict(cls, data: dict, device=None, source="<dict>"):
        return cls(prescription=parse_lens(data, source), device=device)

    def to(self, device):
        self.device = torch.device(device)
        return self

    def __repr__(self):
        name = self.lens_file.name if self.lens_file else self.prescription.source
        return (
            f"GeoLens({name}: EFL {self.efl:.3f} mm, F/{self.fnum:.2f}, "
            f"{len(self.surfaces)} surfaces, sensor at {self.d_sensor:.3f} mm)"
        )

    # ------------------------------------------------------------------ focus

    @torch.no_grad()
    def refocus(self, depth: float = float("-inf"), spp: int = 4096, wvln: float = CHIEF_RAY_WAVE) -> float:
        """Move the sensor to best focus for an axial point at `depth` mm (see `best_focus_z`).

        Returns the new `d_sensor`.
        """
        self.d_sensor = float(self.best_focus_z(torch.tensor([float(depth)]), spp, wvln)[0])
        return self.d_sensor

    @torch.no_grad()
    def best_focus_z(self, depths, spp: int = 4096, wvln: float = CHIEF_RAY_WAVE) -> torch.Tensor:
        """Sensor positions (mm, shape (N,)) of least RMS spot for axial points at `depths` mm, at
        `wvln` micrometres (green by default); the lens is left as it is.

        Each ray's height varies linearly with the sensor position, so the RMS spot radius is a
        quadratic whose minimum is found in closed form.
        """
        depths = -torch.as_tensor(depths, dtype=torch.float32).reshape(-1).abs()
        n = depths.shape[0]
        points = torch.stack([torch.zeros(n), torch.zeros(n), depths], dim=-1)
        waves = torch.full((n, 1), float(wvln))
        o, d, valid = trace_from_points(self, points, waves, spp, generator=fixed_generator())
        o, d, valid = o[:, :-1], d[:, :-1], valid[:, :-1]
        weight = valid.unsqueeze(-1).to(o.dtype)
        count = weight.sum(1, keepdim=True).clamp(min=1.0)
        slope = torch.nan_to_num(d[..., :2] / d[..., 2:]) * weight
        at_zero = torch.nan_to_num(o[..., :2] - slope * o[..., 2:]) * weight  # heights extrapolated to z = 0
        slope = (slope - slope.sum(1, keepdim=True) / count) * weight
        at_zero = (at_zero - at_zero.sum(1, keepdim=True) / count) * weight
        z = -(at_zero * slope).sum((1, 2)) / (slope * slope).sum((1, 2))
        bad = ~torch.isfinite(z) | (z <= self.surfaces[-1].z) | ~valid.any(1)
        if bad.any():
            depth = float(depths[bad.nonzero()[0, 0]])
            raise LensError(f"the lens {self!r} forms no real image of an axial point at depth {depth:g} mm")
        return z

    def paraxial_image_z(self, depth: float, wvln: float = WAVE_D) -> float:
        """Paraxial image position (mm from the first vertex) of an axial point at `depth` mm."""
        return image_distance(self.surfaces, depth, wvln)

    # ------------------------------------------------------------------ PSFs

    def psf(self, points, ks: int = 64, wvln: float = DEFAULT_WAVE, spp: int = 16384, **kwargs):
        """Monochromatic PSFs, shape (N, ks, ks) (or (ks, ks) for one point given as shape (3,))."""
        kernels, single = self._psf_any(points, [wvln], ks, spp, **kwargs)
        kernels = kernels[:, 0]
        return kernels[0] if single else kernels

    def psf_rgb(self, points, ks: int = 64, spp: int = 16384, **kwargs):
        """PSFs at the C, d and F lines (red, green, blue), shape (N, 3, ks, ks) (or (3, ks, ks))."""
        kernels, single = self._psf_any(points, WAVE_RGB, ks, spp, **kwargs)
        return kernels[0] if single else kernels

    def psf_spectral(self, points, wvlns, ks: int = 64, spp: int = 16384, **kwargs):
        """PSFs at any wavelengths (micrometres), shape (N, len(wvlns), ks, ks)."""
        kernels, _ = self._psf_any(points, wvlns, ks, spp, **kwargs)
        return kernels

    def psf_map(
        self,
        depth: float = -20000.0,
        grid=(7, 7),
        ks: int = 64,
        spp: int = 16384,
        wvln=DEFAULT_WAVE,
        **kwargs,
    ):
        """PSFs on a field grid at one depth, shape (grid_rows, grid_cols, 1, ks, ks).

        Grid points sit at the centres of equal cells tiling the sensor; row 0 is the top of the
        scene (+y), column 0 its left (-x), like an image.
        """
        rows, cols = (grid, grid) if isinstance(grid, int) else grid
        y = 1.0 - (2.0 * torch.arange(rows) + 1.0) / rows
        x = (2.0 * torch.arange(cols) + 1.0) / cols - 1.0
        yy, xx = torch.meshgrid(y, x, indexing="ij")
        points = torch.stack([xx, yy, torch.full_like(xx, -abs(float(depth)))], dim=-1).reshape(-1, 3)
        kernels = self.psf(points, ks=ks, wvln=wvln, spp=spp, **kwargs)
        return kernels.reshape(rows, cols, 1, ks, ks)

    def _psf_any(self, points, wvlns, ks, spp, **kwargs):
        points = torch.as_tensor(points, dtype=torch.float32)
        single = points.dim() == 1
        points = points.reshape(-1, 3)
        return self.psf_batch(points, wvlns, ks=ks, spp=spp, **kwargs), single

    @torch.no_grad()
    def psf_batch(
        self,
        points: torch.Tensor,
        wvlns,
        ks: int = 64,
        spp: int = 16384,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        diffraction: bool = False,
        stratified: bool = True,
        sensor_z=None,
    ) -> torch.Tensor:
        """PSFs of N points at W wavelengths, shape (N, W, ks, ks), each summing to 1.

        Args:
            points: (N, 3) normalised x, y and depth in mm (negative; -inf for a point at infinity).
            wvlns: wavelengths in micrometres, a sequence of W floats or an (N, W) tensor (one set per point).
            spp: rays per point and wavelength (rounded to a square number, see `pupil_samples`).
            generator / seed: the source of the pupil jitter; the same seed gives the same kernels.
            diffraction: convolve with the Airy pattern of the working F-number at each wavelength.
            stratified: stratified pupil sampling (default) or independent samples as in DeepLens.
            sensor_z: sensor position(s) in mm, a float or an (N,) tensor (one focus per point, e.g.
                from `best_focus_z`); default `self.d_sensor`.
        """
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        points = points.to(torch.float32)
        n = points.shape[0]
        wvlns = torch.as_tensor(wvlns, dtype=torch.float32)
        if wvlns.dim() == 1:
            wvlns = wvlns.unsqueeze(0).expand(n, -1)
        n_waves = wvlns.shape[1]

        if sensor_z is None:
            sensor_z = torch.full((n,), float(self.d_sensor))
        sensor_z = torch.as_tensor(sensor_z, dtype=torch.float32).reshape(-1).expand(n)
        # A few million rays at a time: larger batches only add memory traffic (and on a GPU, risk).
        chunk = max(1, MAX_RAYS_PER_TRACE // (n_waves * spp))
        kernels = torch.cat(
            [
                self._psf_chunk(
                    points[i : i + chunk],
                    wvlns[i : i + chunk],
                    ks,
                    spp,
                    generator,
                    stratified,
                    sensor_z[i : i + chunk],
                )
                for i in range(0, n, chunk)
            ]
        )
        if diffraction:
            kernels = normalize_sum(self._diffraction_blur(kernels, points, wvlns))
        return kernels

    def _psf_chunk(self, points, wvlns, ks, spp, generator, stratified, sensor_z):
        n, n_waves = wvlns.shape
        o, d, valid = trace_from_points(self, points, wvlns, spp, generator, stratified)
        xy = propagate_to_z(o, d, sensor_z.to(o.device).reshape(-1, 1))[..., :2]
        chief, chief_ok = xy[:, -1], valid[:, -1]
        xy, valid = xy[:, :-1], valid[:, :-1]
        # Where the chief ray is vignetted (only at the very edge of some fields), centre on the
        # centroid of the rays instead.
        weight = valid.unsqueeze(-1).float()
        centroid = (torch.nan_to_num(xy) * weight).sum(1) / weight.sum(1).clamp(min=1.0)
        centre = torch.where(chief_ok.unsqueeze(-1), chief, centroid)

        # Turn the image upright: a displacement +x on the sensor is -x in the scene.
        offset = -(xy - centre.unsqueeze(1)) / self.pixel_size
        half = (ks - 1) / 2.0
        cols = (half + offset[..., 0]).reshape(n, n_waves, -1)
        rows = (half - offset[..., 1]).reshape(n, n_waves, -1)
        return normalize_sum(splat(rows, cols, valid.reshape(n, n_waves, -1), ks))

    def _diffraction_blur(self, kernels, points, wvlns):
        """Convolve with the Airy pattern of the working F-number of each point and wavelength."""
        depth = points[:, 2].tolist()
        size = kernels.shape[-1] | 1
        fnum = torch.empty(wvlns.shape)
        for i, z in enumerate(depth):
            for j, w in enumerate(wvlns[i].tolist()):
                slope = image_space_slope(
                    self.surfaces, -abs(z), self.entrance_pupil_z, self.entrance_pupil_r, w
                )
                fnum[i, j] = 1.0 / (2.0 * abs(math.sin(math.atan(slope))))
        blur = airy_kernels(size, self.pixel_size * 1000.0, wvlns.cpu(), fnum).to(kernels.device)
        return convolve_same(kernels, blur)
