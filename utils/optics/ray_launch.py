"""Rays launched from object points through a lens: the pupil disc, the chief ray, the trace to the
last surface, and the pupil overfill that keeps every passing ray inside the launched disc."""

import math

import torch

from utils.optics.lens_file import LensError
from utils.optics.materials import WAVE_D
from utils.optics.psf import pupil_samples
from utils.optics.tracing import trace

CHIEF_RAY_WAVE = WAVE_D
PUPIL_PROBE = 2.0
PUPIL_PROBE_SPP = 128 * 128


def _object_points(lens, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Object positions (mm) of normalised points, and which of them are at infinity."""
    depth = points[:, 2]
    at_infinity = torch.isinf(depth)
    scale = torch.where(at_infinity, 0.0, depth.abs()) / lens.efl
    half_w, half_h = lens.sensor_size[0] / 2.0, lens.sensor_size[1] / 2.0
    obj = torch.stack([points[:, 0] * half_w * scale, points[:, 1] * half_h * scale, -depth.abs()], dim=-1)
    return obj, at_infinity


def trace_from_points(lens, points, wvlns, spp, generator=None, stratified=True):
    """Trace spp rays per point and wavelength, plus one green chief ray per point, to the last
    surface; `wvlns` is (N, W). Returns (o, d, valid) of shape (N, W*S + 1, ...), chief rays last.
    """
    device = lens.device
    n, n_waves = wvlns.shape

    # The same pupil samples serve every wavelength of a point, so colour channels differ by
    # dispersion, not by Monte-Carlo noise.
    disc = pupil_samples(n, spp, generator, stratified).to(device)
    s = disc.shape[1]
    disc = torch.cat([disc.repeat(1, n_waves, 1), disc.new_zeros(n, 1, 2)], dim=1)
    pupil_r = lens.entrance_pupil_r * lens.pupil_overfill
    pupil = torch.cat(
        [disc * pupil_r, torch.full_like(disc[..., :1], lens.entrance_pupil_z)], dim=-1
    )  # (N, R, 3)

    obj, at_infinity = _object_points(lens, points.to(device))
    to_pupil = pupil - obj.unsqueeze(1)
    # A point at infinity sends parallel rays at the field angle whose paraxial image lands at
    # the same normalised position.
    half_w, half_h = lens.sensor_size[0] / 2.0, lens.sensor_size[1] / 2.0
    parallel = (
        torch.stack(
            [
                points[:, 0].to(device) * half_w / lens.efl,
                points[:, 1].to(device) * half_h / lens.efl,
                torch.ones(n, device=device),
            ],
            dim=-1,
        )
        .unsqueeze(1)
        .expand_as(to_pupil)
    )
    d = torch.where(at_infinity.view(n, 1, 1), parallel, to_pupil)
    d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)
    # Rays start on the pupil plane (exactly on the ray), not at the far object: float32 would
    # lose micrometres over a path of metres.
    o = pupil
    valid = torch.ones(o.shape[:-1], dtype=torch.bool, device=device)

    ray_waves = torch.cat([wvlns.repeat_interleave(s, dim=1), torch.full((n, 1), CHIEF_RAY_WAVE)], dim=1).to(
        device
    )
    indices = []
    medium = None  # air in front of the lens
    for surface in lens.surfaces:
        unchanged = surface.mat2 is medium or (surface.mat2.is_air and (medium is None or medium.is_air))
        if unchanged:
            indices.append(None)
        else:
            indices.append(1.0 if surface.mat2.is_air else surface.mat2.n(ray_waves))
        medium = surface.mat2
    o, d, valid = trace(lens.surfaces, o, d, valid, indices)
    return o, d, valid


@torch.no_grad()
def measure_pupil_overfill(lens) -> float:
    """The smallest disc (in paraxial pupil radii) that holds every ray passing the lens.

    Probed along the field diagonal (the lens is rotationally symmetric) at infinity and at a
    close 8 focal lengths, with a fine disc of rays PUPIL_PROBE times the paraxial pupil.
    """
    field = torch.linspace(0.0, 1.0, 6)
    points = torch.cat(
        [
            torch.stack([field, field, torch.full_like(field, depth)], dim=-1)
            for depth in (float("-inf"), -8.0 * lens.efl)
        ]
    )
    generator = fixed_generator()
    disc = pupil_samples(points.shape[0], PUPIL_PROBE_SPP, fixed_generator())
    waves = torch.full((points.shape[0], 1), CHIEF_RAY_WAVE)
    _, _, valid = trace_from_points(lens, points, waves, PUPIL_PROBE_SPP, generator)
    radius = torch.linalg.vector_norm(disc, dim=-1) * PUPIL_PROBE
    valid = valid[:, :-1].cpu()
    if not valid.any():
        _raise_blocking_surface(lens, points, waves)
    # Two probe cells of margin cover what falls between the probe rays.
    margin = 2.0 * PUPIL_PROBE / math.sqrt(PUPIL_PROBE_SPP)
    return min(PUPIL_PROBE, float(radius[valid].max()) + margin)


def _raise_blocking_surface(lens, points, waves):
    """Name the first surface that stops every ray (an error in the lens file)."""
    source = lens.prescription.source
    for index in range(len(lens.surfaces)):
        all_surfaces = lens.surfaces
        try:
            lens.surfaces = all_surfaces[: index + 1]
            _, _, valid = trace_from_points(lens, points, waves, 1024, fixed_generator())
        finally:
            lens.surfaces = all_surfaces
        if not valid[:, :-1].any():
            raise LensError(
                f"lens file {source}, surface {index}: no ray gets past it; check its 'r' and the "
                f"'d_next' before it"
            )
    raise LensError(f"lens file {source}: no ray reaches the sensor")


def fixed_generator() -> torch.Generator:
    # Refocusing is part of the lens set-up, not of the sampled data: always the same rays.
    return torch.Generator().manual_seed(0)
