"""From rays to PSF kernels: pupil sampling, splatting on the pixel grid, and diffraction blur."""

import math

import torch


def pupil_samples(
    n_points: int, spp: int, generator: torch.Generator | None = None, stratified: bool = True
) -> torch.Tensor:
    """Points on the unit disc, shape (n_points, m*m, 2), with m = round(sqrt(spp)).

    Stratified: one jittered sample per cell of an m x m grid on the square, carried onto the disc by
    Shirley and Chiu's concentric map, which keeps areas (so every ray has the same weight) and keeps
    cells compact (so the strata stay strata). Its Monte-Carlo noise falls like spp^-3/4 instead of
    spp^-1/2 for independent samples. Not stratified: independent uniform samples, as DeepLens does.
    Always drawn on the CPU, so a seed gives the same rays on every device.
    """
    m = max(1, round(math.sqrt(spp)))
    if not stratified:
        radius = torch.sqrt(torch.rand(n_points, m * m, generator=generator))
        angle = 2.0 * math.pi * torch.rand(n_points, m * m, generator=generator)
        return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)
    cells = torch.arange(m, dtype=torch.float32) / m
    grid_a, grid_b = torch.meshgrid(cells, cells, indexing="ij")
    jitter = torch.rand(n_points, m * m, 2, generator=generator) / m
    a = 2.0 * (grid_a.reshape(-1) + jitter[..., 0]) - 1.0
    b = 2.0 * (grid_b.reshape(-1) + jitter[..., 1]) - 1.0
    a_major = a.abs() > b.abs()
    radius = torch.where(a_major, a, b)
    ratio = torch.where(a_major, b / torch.where(a == 0, 1.0, a), a / torch.where(b == 0, 1.0, b))
    angle = torch.where(a_major, (math.pi / 4) * ratio, (math.pi / 2) - (math.pi / 4) * ratio)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


def splat(rows: torch.Tensor, cols: torch.Tensor, valid: torch.Tensor, ks: int) -> torch.Tensor:
    """Bilinear splatting of unit-weight hits at fractional pixel (row, col) into (..., ks, ks) kernels.

    Each ray spreads its weight over the four nearest pixel centres; what falls outside the kernel
    is dropped.
    """
    batch_shape = rows.shape[:-1]
    n_kernels = math.prod(batch_shape)
    rows = rows.reshape(n_kernels, -1)
    cols = cols.reshape(n_kernels, -1)
    valid = valid.reshape(n_kernels, -1)
    rows = torch.where(valid, rows, -2.0)
    cols = torch.where(valid, cols, -2.0)
    r0 = torch.floor(rows)
    c0 = torch.floor(cols)
    fr = rows - r0
    fc = cols - c0
    r0 = r0.long()
    c0 = c0.long()
    offset = (torch.arange(n_kernels, device=rows.device) * (ks * ks)).unsqueeze(-1)
    indices, weights = [], []
    for dr, dc, w in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        r, c = r0 + dr, c0 + dc
        inside = (r >= 0) & (r < ks) & (c >= 0) & (c < ks)
        indices.append(torch.where(inside, offset + r * ks + c, 0))
        weights.append(torch.where(inside, w, 0.0))
    kernel = torch.bincount(
        torch.cat(indices, dim=-1).reshape(-1),
        weights=torch.cat(weights, dim=-1).reshape(-1),
        minlength=n_kernels * ks * ks,
    )
    return kernel.to(rows.dtype).reshape(*batch_shape, ks, ks)


def normalize_sum(kernel: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return kernel / (kernel.sum(dim=(-2, -1), keepdim=True) + eps)


def airy_kernels(size: int, pixel_um: float, wvln_um: torch.Tensor, fnum: torch.Tensor, supersample: int = 5):
    """Airy patterns integrated over square pixels, shape (*wvln_um.shape, size, size), sum 1.

    Intensity (2 J1(x) / x)^2 with x = pi r / (lambda N): first dark ring at r = 1.22 lambda N.
    `size` must be odd so that the pattern is centred on a pixel.
    """
    centre = (size - 1) / 2
    sub = (torch.arange(size * supersample, dtype=torch.float64) + 0.5) / supersample - 0.5 - centre
    yy, xx = torch.meshgrid(sub, sub, indexing="ij")
    r_um = torch.sqrt(xx * xx + yy * yy) * pixel_um
    scale = (math.pi / (wvln_um * fnum)).double().reshape(*wvln_um.shape, 1, 1)
    x = r_um * scale
    safe_x = torch.where(x == 0, 1.0, x)
    amplitude = torch.where(x == 0, 1.0, 2.0 * torch.special.bessel_j1(safe_x) / safe_x)
    intensity = amplitude**2
    intensity = intensity.reshape(*wvln_um.shape, size, supersample, size, supersample).mean(dim=(-3, -1))
    return normalize_sum(intensity).float()


def convolve_same(kernels: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
    """Convolve each (ks, ks) kernel with its own odd-sized, centred `blur`; output keeps ks x ks."""
    ks, kb = kernels.shape[-1], blur.shape[-1]
    full = ks + kb - 1
    spectrum = torch.fft.rfft2(kernels, s=(full, full)) * torch.fft.rfft2(blur, s=(full, full))
    out = torch.fft.irfft2(spectrum, s=(full, full))
    start = (kb - 1) // 2
    return out[..., start : start + ks, start : start + ks].clamp(min=0.0)
