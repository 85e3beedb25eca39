"""Refractive indices of optical glasses, as a function of wavelength in micrometres.

A material is named either by its catalogue name (Sellmeier coefficients below, from the Schott and
Ohara datasheets; Malitson for fused silica and CaF2) or by the string "n_d/V_d", e.g. "1.5168/64.17",
which is turned into a two-term Cauchy law through the d line with the given Abbe number. Names
match case-insensitively; DeepLens's short names ("bk7", "sk16") are aliases of the Schott N-glasses.
"""

import re

import torch

from utils.errors import UserError, nearest

# Fraunhofer lines (micrometres) that define n_d and the Abbe number V_d = (n_d - 1) / (n_F - n_C).
WAVE_D = 0.5875618
WAVE_F = 0.4861327
WAVE_C = 0.6562725

# n^2 - 1 = sum_i B_i lambda^2 / (lambda^2 - C_i), lambda in micrometres, C_i in micrometres^2.
SELLMEIER = {
    "n-bk7": ((1.03961212, 0.231792344, 1.01046945), (0.00600069867, 0.0200179144, 103.560653)),
    "n-k5": ((1.08511833, 0.199562005, 0.930511663), (0.00661099503, 0.024110866, 111.982777)),
    "n-bak4": ((1.28834642, 0.132817724, 0.945395373), (0.00779980626, 0.0315631177, 105.965875)),
    "n-sk16": ((1.34317774, 0.241144399, 0.994317969), (0.00704687339, 0.0229005, 92.7508526)),
    "n-baf10": ((1.5851495, 0.143559385, 1.08521269), (0.00926681282, 0.0424489805, 105.613573)),
    "n-lak22": ((1.14229781, 0.535138441, 1.04088385), (0.00585778594, 0.0198546147, 100.834017)),
    "f2": ((1.34533359, 0.209073176, 0.937357162), (0.00997743871, 0.0470450767, 111.886764)),
    "n-sf2": ((1.47343127, 0.163681849, 1.36920899), (0.0109019098, 0.0585683687, 127.404933)),
    "n-sf5": ((1.52481889, 0.187085527, 1.42729015), (0.011254756, 0.0588995392, 129.141675)),
    "n-sf6": ((1.77931763, 0.338149866, 2.08734474), (0.0133714182, 0.0617533621, 174.01759)),
    "n-sf10": ((1.62153902, 0.256287842, 1.64447552), (0.0122241457, 0.0595736775, 147.468793)),
    "n-sf11": ((1.73759695, 0.313747346, 1.89878101), (0.013188707, 0.0623068142, 155.23629)),
    "n-lasf9": ((2.00029547, 0.298926886, 1.80691843), (0.0121426017, 0.0538736236, 156.530829)),
    "fused silica": ((0.6961663, 0.4079426, 0.8974794), (0.0684043**2, 0.1162414**2, 9.896161**2)),
    "caf2": ((0.5675888, 0.4710914, 3.8484723), (0.050263605**2, 0.1003909**2, 34.649040**2)),
}

# Other names in use for the same glasses. The HT ("high transmission") variants share the
# dispersion formula; the old lead-containing SK16 and BK7 differ from the N-glasses only in the
# fourth decimal of n_d, well below what a PSF can tell apart.
ALIASES = {
    "bk7": "n-bk7",
    "k5": "n-k5",
    "h-k51": "n-k5",  # CDGM's equivalent of N-K5
    "hk51": "n-k5",
    "sk16": "n-sk16",
    "baf10": "n-baf10",
    "sf2": "n-sf2",
    "sf5": "n-sf5",
    "sf6": "n-sf6",
    "n-sf6ht": "n-sf6",
    "sf10": "n-sf10",
    "sf11": "n-sf11",
    "lasf9": "n-lasf9",
    "fused_silica": "fused silica",
    "fusedsilica": "fused silica",
    "silica": "fused silica",
    "sio2": "fused silica",
    "uvfs": "fused silica",
}

# Media with n = 1: "occluder" is what DeepLens writes for the space behind an aperture stop.
VACUUM_LIKE = {"air", "vacuum", "occluder"}

_ND_VD = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*/\s*([0-9]*\.?[0-9]+)\s*$")


class MaterialError(UserError, ValueError):
    """A glass name that is not in the catalogue."""


def known_materials() -> list[str]:
    return sorted(SELLMEIER) + sorted(ALIASES) + sorted(VACUUM_LIKE)


class Material:
    """The refractive index law of one medium; `n(wvln)` accepts floats or tensors (micrometres)."""

    def __init__(self, name: str):
        self.name = name
        key = name.strip().lower()
        key = ALIASES.get(key, key)
        self.sellmeier = None
        self.cauchy = None
        if key in VACUUM_LIKE:
            self.cauchy = (1.0, 0.0)
        elif key in SELLMEIER:
            self.sellmeier = SELLMEIER[key]
        elif match := _ND_VD.match(key):
            self.cauchy = cauchy_from_abbe(float(match.group(1)), float(match.group(2)))
        else:
            close = nearest(name, known_materials(), n=3)
            hint = f"; nearest: {', '.join(close)}" if close else ""
            raise MaterialError(
                f"unknown glass '{name}' (known: catalogue names or 'n_d/V_d' like '1.5168/64.17'{hint})"
            )

    @property
    def is_air(self) -> bool:
        return self.cauchy == (1.0, 0.0)

    def n(self, wvln):
        """Refractive index at `wvln` micrometres (float in, float out; tensor in, tensor out)."""
        if self.cauchy is not None:
            a, b = self.cauchy
            return a + b / wvln**2
        bs, cs = self.sellmeier
        w2 = wvln**2
        n2 = 1.0 + sum(b * w2 / (w2 - c) for b, c in zip(bs, cs))
        return torch.sqrt(n2) if torch.is_tensor(n2) else n2**0.5

    def abbe(self) -> float:
        return (self.n(WAVE_D) - 1.0) / (self.n(WAVE_F) - self.n(WAVE_C))

    def __repr__(self):
        return f"Material({self.name!r})"


def cauchy_from_abbe(n_d: float, v_d: float) -> tuple[float, float]:
    """(A, B) of n = A + B / lambda^2 that gives `n_d` at the d line and Abbe number `v_d`."""
    b = (n_d - 1.0) / v_d / (WAVE_F**-2 - WAVE_C**-2)
    return n_d - b / WAVE_D**2, b
