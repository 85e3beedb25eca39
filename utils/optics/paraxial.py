"""First-order (paraxial) optics of a lens: focal lengths, pupils, F-number, field of view.

Paraxial rays are traced with the y-nu method: a ray is its height y and reduced angle n*u; a surface
of curvature c between indices n and n' changes n*u by -y (n' - n) c, and a gap t moves y by t * u.
Everything is linear in (y, u), so two traced rays describe the whole system.
"""

import math
from dataclasses import dataclass

from utils.optics.lens_file import LensError, Surface
from utils.optics.materials import WAVE_D


def trace_paraxial(surfaces: list[Surface], y: float, u: float, wvln: float = WAVE_D):
    """Trace a paraxial ray given at the first vertex's plane (height y, angle u in air).

    Returns the heights on every surface and the angle after the last one (in air).
    """
    heights = []
    n = 1.0
    nu = u
    for i, surface in enumerate(surfaces):
        heights.append(y)
        n_after = surface.mat2.n(wvln)
        nu = nu - y * (n_after - n) * surface.paraxial_c
        n = n_after
        if i + 1 < len(surfaces):
            y = y + (surfaces[i + 1].z - surface.z) * nu / n
    return heights, nu / n


@dataclass
class FirstOrder:
    """Paraxial properties (mm) at one wavelength; z positions are measured from the first vertex."""

    efl: float
    bfl: float  # from the last vertex to the rear focal point
    stop_index: int
    entrance_pupil_z: float
    entrance_pupil_r: float
    fnum: float


def first_order(surfaces: list[Surface], wvln: float = WAVE_D, enpd: float | None = None, source=""):
    """Focal length, back focal length, stop, entrance pupil and F-number at `wvln` micrometres."""
    heights_a, u_a = trace_paraxial(surfaces, 1.0, 0.0, wvln)  # from an axial point at infinity
    heights_b, _ = trace_paraxial(surfaces, 0.0, 1.0, wvln)  # through the first vertex
    if u_a == 0.0:
        raise LensError(f"lens file {source} is afocal (no focal length): it cannot form a PSF on a sensor")
    efl = -1.0 / u_a
    bfl = -heights_a[-1] / u_a

    stops = [i for i, s in enumerate(surfaces) if s.is_stop]
    if stops:
        stop = stops[0]
    else:
        # Without a declared stop, the aperture stop is by definition the surface that limits the
        # axial beam first.
        stop = min(
            range(len(surfaces)),
            key=lambda i: surfaces[i].r / abs(heights_a[i]) if heights_a[i] != 0 else math.inf,
        )
    if heights_a[stop] == 0.0:
        raise LensError(f"lens file {source}, surface {stop}: the stop sits at a focus, so there is no pupil")
    # The entrance pupil is the stop's image through the surfaces in front of it: the object-space
    # ray aimed at it crosses the axis there, and the axial beam filling it has radius r / y_a.
    pupil_z = heights_b[stop] / heights_a[stop]
    pupil_r = surfaces[stop].r / abs(heights_a[stop])
    if enpd is not None:
        pupil_r = enpd / 2.0
    return FirstOrder(
        efl=efl,
        bfl=bfl,
        stop_index=stop,
        entrance_pupil_z=pupil_z,
        entrance_pupil_r=pupil_r,
        fnum=abs(efl) / (2.0 * pupil_r),
    )


def image_distance(surfaces: list[Surface], depth: float, wvln: float = WAVE_D) -> float:
    """Paraxial image position (z, mm) of an axial point at `depth` (negative, or -inf)."""
    if math.isinf(depth):
        y0, u0 = 1.0, 0.0
    else:
        y0, u0 = -depth * 1.0, 1.0  # a ray from (0, depth) rising with unit slope
    heights, u = trace_paraxial(surfaces, y0, u0, wvln)
    return surfaces[-1].z - heights[-1] / u


def image_space_slope(surfaces: list[Surface], depth: float, pupil_z: float, pupil_r: float, wvln: float):
    """Paraxial slope, behind the lens, of the marginal ray from an axial point at `depth`.

    The working F-number, which sets the size of the Airy disc, is 1 / (2 |slope|).
    """
    if math.isinf(depth):
        y0, u0 = pupil_r, 0.0
    else:
        u0 = pupil_r / (pupil_z - depth)
        y0 = -depth * u0
    _, u = trace_paraxial(surfaces, y0, u0, wvln)
    return u
