"""Reading lens files in DeepLens's JSON format (all lengths in millimetres).

`read_lens_file(path)` gives a checked `LensPrescription` (its surfaces, sensor and entrance pupil);
`parse_lens` says the format. DeepLens's own files load unchanged.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from utils.errors import UserError, did_you_mean
from utils.optics.materials import Material, MaterialError

SURFACE_TYPES = {
    "spheric": "Spheric",
    "aspheric": "Aspheric",
    "stop": "Stop",
    "aperture": "Stop",
    "plane": "Plane",
}

# Keys that DeepLens writes and that we recompute or do not need.
DEEPLENS_LENS_KEYS = {
    "foclen",
    "fnum",
    "d_sensor",
    "sensor_size",
    "is_square",
    "r_last",
    "hfov",
    "float_enpd",
}
DEEPLENS_SURFACE_KEYS = {
    "d",
    "mat1",
    "idx",
    "ai2",
    "ai4",
    "ai6",
    "ai8",
    "ai10",
    "ai12",
    "ai14",
    "ai16",
    "is_square",
}
LENS_KEYS = {"surfaces", "r_sensor", "sensor_res", "enpd", "info"}
SURFACE_KEYS = {"type", "r", "roc", "c", "d_next", "mat2", "k", "ai"}

DEFAULT_SENSOR_RES = (2000, 2000)


class LensError(UserError, ValueError):
    """A lens file that cannot be used as it is."""


@dataclass
class Surface:
    """One surface of a lens; `z` is the vertex position (mm) with the first surface at 0."""

    kind: str  # "Spheric", "Aspheric", "Stop" or "Plane"
    r: float  # semi-aperture
    c: float  # vertex curvature (1/mm)
    z: float
    mat2: Material  # medium after the surface
    k: float = 0.0
    ai: tuple[float, ...] = ()

    @property
    def is_stop(self) -> bool:
        return self.kind == "Stop"

    @property
    def is_sphere(self) -> bool:
        return self.k == 0.0 and not self.ai

    @property
    def paraxial_c(self) -> float:
        # The r^2 term of the polynomial bends paraxial rays just like the base curvature does.
        return self.c + (2.0 * self.ai[0] if self.ai else 0.0)


@dataclass
class LensPrescription:
    surfaces: list[Surface]
    d_sensor: float  # sensor position (mm) as written in the file
    r_sensor: float
    sensor_res: tuple[int, int]
    enpd: float | None = None
    info: str = ""
    source: str = "<dict>"
    extra: dict = field(default_factory=dict)


def _is_ignored(key: str) -> bool:
    return key.startswith("(") and key.endswith(")")


def _check_key(where: str, key: str, known: set[str], tolerated: set[str]):
    """Reject a key that looks like a misspelling of ours; ignore other foreign keys.

    Lens files from other tools carry bookkeeping keys of their own, so an unknown key is only an
    error when it is close to one we read (a typo would otherwise silently change the lens).
    """
    if _is_ignored(key) or key in known or key in tolerated:
        return
    hint = did_you_mean(key, known)
    if hint:
        raise LensError(f"{where}: unknown key '{key}'{hint}")


def _is_pair(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and v > 0 for v in value)
    )


def _number(where: str, block: dict, key: str, default=None) -> float:
    if key not in block:
        if default is not None:
            return default
        raise LensError(f"{where} has no '{key}'")
    value = block[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LensError(f"{where}: '{key}' must be a finite number, not {value!r}")
    return float(value)


def parse_lens(data: dict, source: str = "<dict>") -> LensPrescription:
    """Check and convert the parsed JSON of a lens file; `source` names the file in error messages.

        {
          "info": "free text",                        optional
          "r_sensor": 5.657,                          sensor half-diagonal
          "sensor_res": [2000, 2000],                 [W, H] pixels, optional (DeepLens's default)
          "enpd": 12.5,                               entrance pupil diameter, optional (else from the stop)
          "surfaces": [
            {"type": "Stop", "r": 6.25, "d_next": 2.0},
            {"type": "Spheric", "r": 12.7, "roc": 51.5, "d_next": 5.0, "mat2": "n-bk7"},
            {"type": "Aspheric", "r": 6.35, "c": 0.21, "k": -1.2, "ai": [5e-4, 1e-5],
             "d_next": 7.5, "mat2": "air"},
            ...
          ]
        }

    `roc` (radius of curvature, 0 is flat) or `c` (curvature) gives the vertex curvature; `d_next` is
    the axial gap to the next surface, for the last surface the gap to the sensor; `mat2` is the medium
    after the surface. Keys in parentheses, and DeepLens's bookkeeping keys, are ignored."""
    if not isinstance(data, dict):
        raise LensError(f"lens file {source} must hold a JSON object with a 'surfaces' list")
    for key in data:
        _check_key(f"lens file {source}", key, LENS_KEYS, DEEPLENS_LENS_KEYS)
    surfaces_data = data.get("surfaces")
    if not isinstance(surfaces_data, list) or not surfaces_data:
        raise LensError(f"lens file {source} needs a non-empty 'surfaces' list")

    surfaces = []
    z = 0.0
    medium = Material("air")
    for index, block in enumerate(surfaces_data):
        where = f"lens file {source}, surface {index}"
        if not isinstance(block, dict):
            raise LensError(f"{where} must be a JSON object")
        for key in block:
            _check_key(where, key, SURFACE_KEYS, DEEPLENS_SURFACE_KEYS)
        if "type" not in block:
            raise LensError(f"{where} has no 'type' (one of Spheric, Aspheric, Stop, Plane)")
        kind = SURFACE_TYPES.get(str(block["type"]).lower())
        if kind is None:
            raise LensError(
                f"{where}: 'type' {block['type']!r} is not supported (one of Spheric, Aspheric, Stop, "
                f"Aperture, Plane){did_you_mean(str(block['type']), SURFACE_TYPES.values())}"
            )
        r = _number(where, block, "r")
        if r <= 0:
            raise LensError(f"{where}: semi-aperture 'r' must be positive, not {r}")
        c = 0.0
        if kind in ("Spheric", "Aspheric"):
            if "roc" in block:
                roc = _number(where, block, "roc")
                c = 0.0 if roc == 0 else 1.0 / roc
            elif "c" in block:
                c = _number(where, block, "c")
            else:
                raise LensError(f"{where} has neither 'roc' nor 'c' (use 'roc': 0 for a flat surface)")
        k = _number(where, block, "k", 0.0) if kind == "Aspheric" else 0.0
        ai = ()
        if kind == "Aspheric" and "ai" in block:
            if not isinstance(block["ai"], list) or not all(
                isinstance(a, int | float) and not isinstance(a, bool) for a in block["ai"]
            ):
                raise LensError(f"{where}: 'ai' must be a list of numbers (coefficients of r^2, r^4, ...)")
            ai = tuple(float(a) for a in block["ai"])
            while ai and ai[-1] == 0.0:
                ai = ai[:-1]
        if kind == "Spheric" or kind == "Aspheric":
            # Beyond |c| r = 1 a sphere has no sag; the aperture must fit on the surface.
            if (1.0 + k) * c * c * r * r >= 1.0:
                raise LensError(
                    f"{where}: semi-aperture 'r' = {r} is larger than the surface ('roc' = {1 / c:g})"
                )
        d_next = _number(where, block, "d_next")
        if d_next < 0:
            raise LensError(f"{where}: 'd_next' must not be negative, not {d_next}")

        if "mat2" in block:
            try:
                mat2 = Material(str(block["mat2"]))
            except MaterialError as error:
                raise LensError(f"{where}: 'mat2' is an {error}") from None
        elif kind == "Stop":
            mat2 = medium  # a stop sits in a medium; it does not change it
        else:
            raise LensError(f"{where} has no 'mat2' (the medium after the surface, e.g. 'air' or 'n-bk7')")
        if (
            kind == "Stop"
            and mat2.name.strip().lower() != medium.name.strip().lower()
            and not (mat2.is_air and medium.is_air)
        ):
            raise LensError(
                f"{where}: a Stop cannot change the medium ('mat2' {mat2.name!r} after {medium.name!r})"
            )
        surfaces.append(Surface(kind=kind, r=r, c=c, z=z, mat2=mat2, k=k, ai=ai))
        medium = mat2
        z += d_next

    last = len(surfaces) - 1
    if not medium.is_air:
        raise LensError(f"lens file {source}, surface {last}: 'mat2' must be air in front of the sensor")
    _check_gaps(surfaces, source)

    if "r_sensor" in data:
        r_sensor = _number(f"lens file {source}", data, "r_sensor")
    elif _is_pair(data.get("sensor_size")):
        # Older DeepLens files give only the sensor's [W, H] in mm.
        r_sensor = math.hypot(*data["sensor_size"]) / 2.0
    else:
        raise LensError(f"lens file {source} has no 'r_sensor' (the sensor half-diagonal in mm)")
    if r_sensor <= 0:
        raise LensError(f"lens file {source}: 'r_sensor' must be positive, not {r_sensor}")
    sensor_res = data.get("sensor_res", DEFAULT_SENSOR_RES)
    if (
        not isinstance(sensor_res, list | tuple)
        or len(sensor_res) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sensor_res)
    ):
        raise LensError(f"lens file {source}: 'sensor_res' must be [W, H] in pixels, not {sensor_res!r}")
    enpd = None
    if "enpd" in data and data["enpd"] is not None:
        enpd = _number(f"lens file {source}", data, "enpd")
        if enpd <= 0:
            raise LensError(f"lens file {source}: 'enpd' must be positive, not {enpd}")
    return LensPrescription(
        surfaces=surfaces,
        d_sensor=z,
        r_sensor=r_sensor,
        sensor_res=(int(sensor_res[0]), int(sensor_res[1])),
        enpd=enpd,
        info=str(data.get("info", "")),
        source=source,
    )


def _check_gaps(surfaces: list[Surface], source: str):
    """Reject gaps that make neighbouring surfaces cross inside their common aperture.

    Where two surfaces overlap, no ray can pass from one to the next in order, and the trace would
    silently lose every ray; that is a typo in `d_next`, so it gets named here.
    """
    for index in range(len(surfaces) - 1):
        front, back = surfaces[index], surfaces[index + 1]
        r = min(front.r, back.r)
        for fraction in (0.0, 0.5, 1.0):
            rho2 = (fraction * r) ** 2
            if back.z + sag(back, rho2) < front.z + sag(front, rho2) - 1e-6:
                raise LensError(
                    f"lens file {source}, surface {index}: 'd_next' = {back.z - front.z:g} makes it cross "
                    f"surface {index + 1} within the aperture (at height {fraction * r:g} mm), so rays "
                    "would miss every surface after it"
                )


def sag(surface: Surface, rho2: float) -> float:
    """Surface height (mm) at squared radial distance `rho2` (scalar version, for checks):
    `c r^2 / (1 + sqrt(1 - (1 + k) c^2 r^2)) + sum_i ai[i] r^(2i+2)`."""
    c, k = surface.c, surface.k
    value = c * rho2 / (1.0 + math.sqrt(max(1.0 - (1.0 + k) * c * c * rho2, 0.0)))
    for i, a in enumerate(surface.ai):
        value += a * rho2 ** (i + 1)
    return value


def read_lens_file(path: str | Path) -> LensPrescription:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LensError(f"lens file {path} does not exist") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise LensError(f"lens file {path} is not valid JSON (line {error.lineno}: {error.msg})") from None
    return parse_lens(data, source=str(path))
