"""Built-in optics: lens files, glasses, paraxial optics and ray-traced PSFs (see docs/optics.md).

from utils.optics import GeoLens
lens = GeoLens(filename="cooke_triplet_f50.json")
lens.refocus(-10000.0)                                   # object at 10 m
psf = lens.psf(torch.tensor([[0.5, 0.0, -10000.0]]), ks=64, wvln=0.55, spp=16384)
"""

from utils.optics.config import PSFSimulator, lens_from_config
from utils.optics.geolens import WAVE_RGB, GeoLens, resolve_lens_file, shipped_lenses
from utils.optics.lens_file import LensError, parse_lens, read_lens_file
from utils.optics.materials import Material, MaterialError

__all__ = [
    "GeoLens",
    "LensError",
    "Material",
    "MaterialError",
    "PSFSimulator",
    "WAVE_RGB",
    "lens_from_config",
    "parse_lens",
    "read_lens_file",
    "resolve_lens_file",
    "shipped_lenses",
]
