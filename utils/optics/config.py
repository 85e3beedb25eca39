"""The `deeplens:` block of an experiment, turned into a ready PSF simulator (`lens_from_config`).

The block is in metres (its keys: `parse_block`); the `PSFSimulator` converts it once to the lens's
units (millimetres for lengths, micrometres for wavelengths).
"""

import math

import torch

from utils.config.schema import Key
from utils.errors import ConfigError, did_you_mean
from utils.optics.geolens import GeoLens, resolve_lens_file

BACKENDS = ("builtin", "deeplens")
# The lens keys, declared once: `parse_block` checks them, and a dataset that simulates PSFs
# (`PSFDataset`) declares them among its own keys, so the README's tables list them too.
LENS_KEYS = {
    "lens_file": Key(
        "cooke_triplet_f50.json", "str", "A lens file (relative: to the project root) or a shipped lens name."
    ),
    "spp": Key(16384, "int", "Rays per point and wavelength.", minimum=1),
    "kernel_size": Key(64, "int", "PSF kernel side, in pixels of the lens's sensor.", minimum=1),
    "wavelength_set_m": Key([450e-9, 550e-9, 650e-9], "float|list", "Wavelengths (m), one PSF channel each."),
    "fov": Key(
        None,
        "float",
        "Largest image height sampled, metres from the axis (default: the whole sensor).",
        minimum=0.0,
        above_minimum=True,
        nullable=True,
    ),
    "depth_min": Key(0.4, "float", "Nearest object distance (m).", minimum=0.0, above_minimum=True),
    "depth_max": Key(20.0, "float", "Farthest object distance (m).", minimum=0.0, above_minimum=True),
    "backend": Key("builtin", "str", "`deeplens` needs the deeplens package.", BACKENDS),
}
DEFAULTS = {name: key.default for name, key in LENS_KEYS.items()}
BLOCK_KEYS = set(LENS_KEYS)
# Rays that find best focus: stratified, they pin the sensor to well under a micrometre, and per
# sample they cost as much as a small PSF.
FOCUS_SPP = 1024


def as_plain_dict(block) -> dict:
    """A plain dict of a mapping, an OmegaConf node or the trainer's option object."""
    if block is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(block, DictConfig):
            return OmegaConf.to_container(block, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency of the trainer
        pass
    return {key: block[key] for key in block.keys()}


def check_keys(block: dict, known: set[str], where: str):
    for key in block:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}'{did_you_mean(key, known)}")


def _positive(where: str, key: str, value, kind=float):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key} must be a positive number, not {value!r}") from None
    if not (number > 0 and math.isfinite(number)) or (kind is int and number != float(value)):
        raise ConfigError(
            f"{where}.{key} must be a positive {'integer' if kind is int else 'number'}, not {value!r}"
        )
    return number


class PSFSimulator:
    """A lens and the sampling settings of a `deeplens:` block, in millimetres and micrometres.

    Attributes:
        lens: the `GeoLens` (or DeepLens's GeoLens with `backend: deeplens`).
        spp, kernel_size: rays per point and wavelength, kernel side in pixels.
        wavelengths_um: tuple of wavelengths, one PSF channel each.
        field_extent: largest normalised |x| and |y| to sample (fov over the sensor half-diagonal).
        depth_min_mm, depth_max_mm: object distance range (positive mm; the points use -depth).
    """

    def __init__(
        self, lens, spp, kernel_size, wavelengths_um, field_extent, depth_min_mm, depth_max_mm, backend
    ):
        self.lens = lens
        self.spp = spp
        self.kernel_size = kernel_size
        self.wavelengths_um = tuple(wavelengths_um)
        self.field_extent = field_extent
        self.depth_min_mm = depth_min_mm
        self.depth_max_mm = depth_max_mm
        self.backend = backend

    @property
    def channels(self) -> int:
        return len(self.wavelengths_um)

    def sample_points(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 3) random points: x, y uniform in [-field_extent, field_extent], depth (negative mm)
        uniform in inverse distance, the variable that defocus blur is linear in."""
        xy = (2.0 * torch.rand(n, 2, generator=generator) - 1.0) * self.field_extent
        depth = -self.sample_depths(n, self.depth_min_mm, self.depth_max_mm, generator)
        return torch.cat([xy, depth.unsqueeze(-1)], dim=-1)

    @staticmethod
    def sample_depths(n, near_mm, far_mm, generator=None) -> torch.Tensor:
        """Positive distances in mm, uniform in 1/distance between `near_mm` and `far_mm`."""
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        inverse = 1.0 / far_mm + u * (1.0 / near_mm - 1.0 / far_mm)
        return (1.0 / inverse).float()

    def focus(self, depth_mm: float) -> float:
        """Move the sensor to best focus for an object at `depth_mm` (positive or negative)."""
        if self.backend == "deeplens":
            self.lens.refocus(-abs(depth_mm))
            return float(self.lens.d_sensor)
        return self.lens.refocus(-abs(depth_mm), spp=FOCUS_SPP)

    @torch.no_grad()
    def simulate(
        self, points, device=None, generator=None, wavelengths_um=None, focus_depths_mm=None
    ) -> torch.Tensor:
        """PSFs of (N, 3) points (normalised x, y, depth in mm), shape (N, C, K, K), each channel sum 1.

        `wavelengths_um` may override the block's set, as C floats or an (N, C) tensor.
        `focus_depths_mm`, (N,) object distances, focuses the lens anew for each point; without it
        the lens stays where `focus` last put it.
        """
        points = torch.as_tensor(points, dtype=torch.float32)
        waves = self.wavelengths_um if wavelengths_um is None else wavelengths_um
        if device is not None:
            self.lens.to(device)
        if self.backend == "deeplens":
            if focus_depths_mm is not None:
                raise ConfigError(
                    "per-point focus needs backend: builtin (DeepLens focuses one lens at a time)"
                )
            return self._simulate_deeplens(points, waves, device)
        sensor_z = None if focus_depths_mm is None else self.lens.best_focus_z(focus_depths_mm, spp=FOCUS_SPP)
        return self.lens.psf_batch(
            points, waves, ks=self.kernel_size, spp=self.spp, generator=generator, sensor_z=sensor_z
        )

    def _simulate_deeplens(self, points, waves, device):
        waves = torch.as_tensor(waves, dtype=torch.float32)
        if waves.dim() == 2:
            raise ConfigError(
                "per-point wavelengths need backend: builtin (DeepLens traces one wavelength per call)"
            )
        points = points.to(device or self.lens.device)
        channels = [self.lens.psf(points, ks=self.kernel_size, wvln=float(w), spp=self.spp) for w in waves]
        return torch.stack(channels, dim=1)

    def __repr__(self):
        return (
            f"PSFSimulator({self.lens!r}, spp={self.spp}, kernel_size={self.kernel_size}, "
            f"wavelengths_um={self.wavelengths_um}, field_extent={self.field_extent:.3f}, "
            f"depth {self.depth_min_mm:g}..{self.depth_max_mm:g} mm, backend={self.backend})"
        )


def parse_block(block, where: str = "deeplens") -> dict:
    """Checked block values with defaults filled in (still in metres):

        deeplens:
          lens_file: cooke_triplet_f50.json   # a path (relative: to the project root) or a shipped lens name
          spp: 16384                          # rays per point and wavelength
          kernel_size: 64                     # PSF kernel side, pixels of the lens's sensor
          wavelength_set_m: [450e-9, 550e-9, 650e-9]   # one PSF channel per wavelength
          fov: 0.015                          # largest image height sampled, metres (<= r_sensor)
          depth_min: 0.4                      # nearest object distance, metres
          depth_max: 20.0                     # farthest object distance, metres
          backend: builtin                    # or deeplens (needs the deeplens package)

    `lens_from_config` builds the simulator from these values.
    """
    block = as_plain_dict(block)
    check_keys(block, BLOCK_KEYS, where)
    values = {**DEFAULTS, **{k: v for k, v in block.items() if v is not None or k == "fov"}}
    values["spp"] = _positive(where, "spp", values["spp"], int)
    values["kernel_size"] = _positive(where, "kernel_size", values["kernel_size"], int)
    waves = values["wavelength_set_m"]
    if isinstance(waves, int | float):
        waves = [waves]
    waves = [_positive(where, "wavelength_set_m", w) for w in waves]
    if not waves or not all(100e-9 <= w <= 20e-6 for w in waves):
        raise ConfigError(
            f"{where}.wavelength_set_m must list wavelengths in metres "
            f"(e.g. [450e-9, 550e-9, 650e-9]), not {waves}"
        )
    values["wavelength_set_m"] = waves
    for key in ("depth_min", "depth_max"):
        values[key] = _positive(where, key, values[key])
    if values["depth_min"] > values["depth_max"]:
        raise ConfigError(
            f"{where}.depth_min ({values['depth_min']}) is larger than depth_max ({values['depth_max']})"
        )
    if values["fov"] is not None:
        values["fov"] = _positive(where, "fov", values["fov"])
    backend = str(values["backend"]).lower()
    if backend not in BACKENDS:
        raise ConfigError(f"{where}.backend must be one of {', '.join(BACKENDS)}, not {values['backend']!r}")
    values["backend"] = backend
    return values


def load_lens(lens_file, backend: str = "builtin", device=None, where: str = "deeplens"):
    path = resolve_lens_file(lens_file)
    if backend == "builtin":
        return GeoLens(filename=path, device=device)
    try:
        from deeplens import GeoLens as DeepLensGeoLens
    except ImportError:
        raise ConfigError(
            f"{where}.backend: deeplens needs the deeplens package, which is not installed here "
            "(pip install deeplens, which needs Python 3.12+ and torchvision), or use backend: builtin"
        ) from None
    return DeepLensGeoLens(filename=str(path), device=device)


def lens_from_config(block, device=None, where: str = "deeplens") -> PSFSimulator:
    """Build the simulator that a `deeplens:` block describes (its keys: `parse_block`)."""
    values = parse_block(block, where)
    lens = load_lens(values["lens_file"], values["backend"], device, where)
    r_sensor_mm = float(lens.r_sensor)
    if values["fov"] is None:
        field_extent = 1.0
    else:
        fov_mm = values["fov"] * 1000.0
        if fov_mm > r_sensor_mm * (1 + 1e-9):
            raise ConfigError(
                f"{where}.fov = {values['fov']} m is beyond the sensor of {values['lens_file']} "
                f"(half-diagonal {r_sensor_mm / 1000:g} m); leave it out to sample the whole sensor"
            )
        # x = y = extent puts the corner of the sampled square at image height fov.
        field_extent = fov_mm / r_sensor_mm
    return PSFSimulator(
        lens=lens,
        spp=values["spp"],
        kernel_size=values["kernel_size"],
        wavelengths_um=[w * 1e6 for w in values["wavelength_set_m"]],
        field_extent=field_extent,
        depth_min_mm=values["depth_min"] * 1000.0,
        depth_max_mm=values["depth_max"] * 1000.0,
        backend=values["backend"],
    )
