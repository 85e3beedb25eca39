"""Exact ray tracing through rotationally symmetric surfaces, batched in torch.

Rays are tensors of shape (..., 3): origins `o`, unit directions `d` travelling towards +z, and a
boolean `valid` that drops a ray for good once it misses a surface, hits outside a semi-aperture or
is totally internally reflected. The refractive index may differ per ray (one wavelength each), so
indices are tensors that broadcast against `valid`.
"""

import torch

from utils.optics.lens_file import Surface

# Newton steps from the sphere's intersection to an even asphere's; the base sphere is already
# within a few micrometres for real lenses, and convergence is quadratic.
ASPHERE_NEWTON_STEPS = 6


def sag_and_slope(surface: Surface, rho2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sag z(rho^2) and its derivative dz/d(rho^2); points off the conic get a NaN (rejected later)."""
    c, k = surface.c, surface.k
    root = torch.sqrt(1.0 - (1.0 + k) * c * c * rho2)
    z = c * rho2 / (1.0 + root)
    dz = c / (2.0 * root)
    power = torch.ones_like(rho2)
    for i, a in enumerate(surface.ai):
        # a_i multiplies rho^(2i+2) = (rho^2)^(i+1); its derivative in rho^2 is (i+1) a_i (rho^2)^i.
        dz = dz + (i + 1) * a * power
        power = power * rho2
        z = z + a * power
    return z, dz


def intersect(surface: Surface, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points where the rays meet the surface, and whether they do within its semi-aperture."""
    oz = o[..., 2] - surface.z
    c = surface.c
    if c == 0.0:
        t = -oz / d[..., 2]
        hit = torch.isfinite(t)
    else:
        # Sphere through the vertex: c |p|^2 - 2 p_z = 0 with p = o + t d - vertex. The root taken is
        # the one that tends to the plane's as c -> 0, written so that it does not cancel.
        b = c * (o[..., 0] * d[..., 0] + o[..., 1] * d[..., 1] + oz * d[..., 2]) - d[..., 2]
        cc = c * (o[..., 0] ** 2 + o[..., 1] ** 2 + oz**2) - 2.0 * oz
        disc = b * b - c * cc
        hit = disc >= 0
        t = cc / (-b - torch.copysign(torch.sqrt(disc.clamp(min=0.0)), b))
    if not surface.is_sphere:
        for _ in range(ASPHERE_NEWTON_STEPS):
            x = o[..., 0] + t * d[..., 0]
            y = o[..., 1] + t * d[..., 1]
            z_sag, dz = sag_and_slope(surface, x * x + y * y)
            f = oz + t * d[..., 2] - z_sag
            df = d[..., 2] - 2.0 * dz * (x * d[..., 0] + y * d[..., 1])
            t = t - f / df
    p = o + t.unsqueeze(-1) * d
    rho2 = p[..., 0] ** 2 + p[..., 1] ** 2
    hit = hit & (rho2 <= surface.r**2)
    if not surface.is_sphere:
        z_sag, _ = sag_and_slope(surface, rho2)
        hit = hit & (torch.abs(p[..., 2] - surface.z - z_sag) < 1e-4)  # Newton converged onto it
    return p, hit


def normal(surface: Surface, p: torch.Tensor) -> torch.Tensor:
    """Unit surface normal at `p`, pointing towards +z."""
    if surface.c == 0.0 and not surface.ai:
        return torch.zeros_like(p) + p.new_tensor([0.0, 0.0, 1.0])
    _, dz = sag_and_slope(surface, p[..., 0] ** 2 + p[..., 1] ** 2)
    nx = -2.0 * dz * p[..., 0]
    ny = -2.0 * dz * p[..., 1]
    n = torch.stack([nx, ny, torch.ones_like(nx)], dim=-1)
    return n / torch.linalg.vector_norm(n, dim=-1, keepdim=True)


def refract(d: torch.Tensor, n: torch.Tensor, eta) -> tuple[torch.Tensor, torch.Tensor]:
    """Vector Snell's law for unit `d` and unit normal `n` (n . d > 0); `eta` = n_before / n_after.

    Returns the refracted direction and False where the ray is totally internally reflected.
    """
    eta = torch.as_tensor(eta, dtype=d.dtype, device=d.device)
    cos_i = (d * n).sum(-1)
    sin2_t = eta * eta * (1.0 - cos_i * cos_i)
    passes = sin2_t <= 1.0
    cos_t = torch.sqrt((1.0 - sin2_t).clamp(min=0.0))
    eta_d = eta.unsqueeze(-1) * d if eta.dim() else eta * d
    return eta_d + (cos_t - eta * cos_i).unsqueeze(-1) * n, passes


def trace(
    surfaces: list[Surface],
    o: torch.Tensor,
    d: torch.Tensor,
    valid: torch.Tensor,
    indices: list,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Trace rays through all surfaces and return them on the last one.

    `indices[i]` is the refractive index after surface i (air before the first), a float or a tensor
    that broadcasts against `valid`, or None where the surface does not change the medium (a stop).
    """
    n_before = 1.0
    for surface, n_after in zip(surfaces, indices):
        o, hit = intersect(surface, o, d)
        valid = valid & hit
        if n_after is not None:
            d, passes = refract(d, normal(surface, o), n_before / n_after)
            valid = valid & passes
            n_before = n_after
    return o, d, valid


def propagate_to_z(o: torch.Tensor, d: torch.Tensor, z) -> torch.Tensor:
    """Points where the rays cross the plane at `z` (a float or a tensor broadcasting to the rays)."""
    t = (z - o[..., 2]) / d[..., 2]
    return o + t.unsqueeze(-1) * d
