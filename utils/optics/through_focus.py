"""Through-focus PSF stacks: one point's rays traced once, splatted on D sensor planes around focus.

A stack is what a lens does to a point in 3D: the (D, K, K) PSFs on planes `offsets_mm` from the
sensor position, each centred on the chief ray of its plane (so the stack shows the blur, not the
lateral drift of an off-axis image), each plane summing to 1. Tracing once and moving only the plane
costs one trace per stack instead of one per plane.
"""

import torch

from utils.optics.psf import normalize_sum, splat
from utils.optics.ray_launch import trace_from_points
from utils.optics.tracing import propagate_to_z


@torch.no_grad()
def through_focus_stack(
    lens,
    point: torch.Tensor,
    wavelength_um: float,
    sensor_z_mm: float,
    offsets_mm: torch.Tensor,
    ks: int,
    spp: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PSFs of `point` (normalised x, y, depth in mm) at one wavelength on the planes at
    `sensor_z_mm + offsets_mm`: shape (D, ks, ks), each plane summing to 1 (0 where no ray lands)."""
    points = torch.as_tensor(point, dtype=torch.float32).reshape(1, 3)
    o, d, valid = trace_from_points(lens, points, torch.tensor([[float(wavelength_um)]]), spp, generator)
    planes = (float(sensor_z_mm) + torch.as_tensor(offsets_mm, dtype=torch.float32)).to(o.device)
    xy = propagate_to_z(o, d, planes.reshape(-1, 1))[..., :2]  # (D, S + 1, 2): every ray on every plane
    chief, chief_ok = xy[:, -1], bool(valid[0, -1])
    xy, hits = xy[:, :-1], valid[:, :-1].expand(len(planes), -1)
    if not chief_ok:  # a vignetted chief ray (the very edge of some fields): the rays' centroid instead
        weight = hits.unsqueeze(-1).float()
        chief = (torch.nan_to_num(xy) * weight).sum(1) / weight.sum(1).clamp(min=1.0)
    offset = -(xy - chief.unsqueeze(1)) / lens.pixel_size  # upright: +x on the sensor is -x in the scene
    half = (ks - 1) / 2.0
    return normalize_sum(splat(half - offset[..., 1], half + offset[..., 0], hits, ks))
