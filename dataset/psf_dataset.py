"""PSFDataset: point spread functions ray-traced on the fly, so no data set is stored.

Each item is the PSF of one randomly drawn object point, seen through a lens focused at a randomly
drawn distance, at each wavelength of `wavelength_set_m` (one channel each). Item i depends only on
(seed, i), not on workers or order, so a validation set with a fixed seed is fixed. The keys are
`config_keys` plus the lens keys of the `deeplens:` block (in metres).

Item: {'gt': (C, K, K) float32 PSF, 'coords': float32 [x, y, depth_mm, focus_depth_mm, *wavelengths_um],
'x': index}; x, y are normalised field coordinates (1 = sensor edge), depths are positive mm.
"""

import numpy as np
import torch
from torch.utils import data

from dataset.common.options import COMMON_KEYS, ITEM_SEED
from utils.cli.console import preparation_bar
from utils.config.schema import Key
from utils.errors import ConfigError
from utils.optics.config import BLOCK_KEYS, LENS_KEYS, as_plain_dict, check_keys, lens_from_config

NORMALIZATIONS = ("peak", "sum")
KERNEL_FILL = 0.8  # the margin leaves room for aberrations on top of defocus


class PSFDataset(data.Dataset):
    config_keys = {
        "size": Key(1000, "int", "Items per epoch.", minimum=1),
        "seed": ITEM_SEED,
        "normalize": Key(
            "peak",
            "str",
            "`peak`: the brightest pixel over all channels is 1; `sum`: each channel sums to 1.",
            NORMALIZATIONS,
        ),
        "focus_depth_min": Key(
            None,
            "float",
            "Nearest focus distance (m); default: `depth_min`.",
            minimum=0.0,
            above_minimum=True,
            nullable=True,
        ),
        "focus_depth_max": Key(
            None,
            "float",
            "Farthest focus distance (m); default: `depth_max`.",
            minimum=0.0,
            above_minimum=True,
            nullable=True,
        ),
        "wavelength_jitter_m": Key(
            0.0, "float", "Each channel's wavelength is drawn within +- this (m).", minimum=0.0
        ),
        "keep_in_kernel": Key(True, "bool", "Draw depths only where the defocus blur fits in the kernel."),
        "cache": Key(
            False, "bool", "Keep simulated items in memory (per worker) and replay them every epoch."
        ),
        **LENS_KEYS,
    }

    def __init__(self, opt):
        opt = as_plain_dict(opt)
        check_keys(opt, set(self.config_keys) | COMMON_KEYS, "datasets.PSFDataset")
        keys = {name: opt.get(name, key.default) for name, key in self.config_keys.items()}
        self.size = int(keys["size"])
        # Train and validation draw different points unless the YAML gives each block its own seed.
        seed = keys["seed"]
        self.seed = int(seed if seed is not None else (0 if opt.get("phase", "train") == "train" else 1))
        self.normalize = str(keys["normalize"]).lower()
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(
                f"datasets.PSFDataset.normalize must be {' or '.join(map(repr, NORMALIZATIONS))}, "
                f"not {self.normalize!r}"
            )
        self.simulator = lens_from_config(
            {k: opt[k] for k in BLOCK_KEYS if k in opt}, where="datasets.PSFDataset"
        )
        focus_min = keys["focus_depth_min"]
        focus_max = keys["focus_depth_max"]
        self.focus_min_mm = self.simulator.depth_min_mm if focus_min is None else float(focus_min) * 1000.0
        self.focus_max_mm = self.simulator.depth_max_mm if focus_max is None else float(focus_max) * 1000.0
        if not 0 < self.focus_min_mm <= self.focus_max_mm:
            raise ConfigError("datasets.PSFDataset: need 0 < focus_depth_min <= focus_depth_max (metres)")
        self.wavelength_jitter_um = float(keys["wavelength_jitter_m"]) * 1e6
        self.keep_in_kernel = bool(keys["keep_in_kernel"])
        lens = self.simulator.lens
        # Defocus blur (thin lens, objects far beyond f) is A f |1/depth - 1/focus| across; keep it
        # within KERNEL_FILL of the kernel so the kernel holds the whole PSF.
        kernel_mm = self.simulator.kernel_size * float(lens.pixel_size)
        self.max_defocus_per_mm = KERNEL_FILL * kernel_mm / (2.0 * lens.entrance_pupil_r * lens.efl)
        # An item is a pure function of (seed, index), so a cache can never disagree with a fresh
        # simulation: with `cache: true` the set is ray-traced once, here, and replayed every epoch.
        # Filled up front (see dataset/common/cache.py for why) with a bar, so the wait before the
        # first step says what it is instead of a silent first epoch.
        self.cache = None
        if keys["cache"]:
            what = f"ray-tracing {self.size} PSFs (cache: true, kept in memory)"
            self.cache = {i: self._simulate(i) for i in preparation_bar(range(self.size), self.size, what)}

    def _depth_range_in_kernel(self, focus_mm: float) -> tuple[float, float]:
        """The part of [depth_min, depth_max] whose defocus blur at this focus fits the kernel."""
        sim = self.simulator
        inverse_far = max(1.0 / sim.depth_max_mm, 1.0 / focus_mm - self.max_defocus_per_mm)
        inverse_near = min(1.0 / sim.depth_min_mm, 1.0 / focus_mm + self.max_defocus_per_mm)
        if inverse_near <= inverse_far:  # focus outside the depth range and too far from it
            return sim.depth_min_mm, sim.depth_max_mm
        return 1.0 / inverse_near, 1.0 / inverse_far

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        if not 0 <= index < self.size:
            raise IndexError(f"PSFDataset index {index} out of range (size {self.size})")
        if self.cache is not None:
            return dict(self.cache[index])
        return self._simulate(index)

    def _simulate(self, index):
        # Mixing (seed, index) through SeedSequence keeps neighbouring items independent.
        state = np.random.SeedSequence([self.seed, int(index)]).generate_state(1, dtype=np.uint64)
        generator = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
        sim = self.simulator
        focus_mm = float(sim.sample_depths(1, self.focus_min_mm, self.focus_max_mm, generator)[0])
        point = sim.sample_points(1, generator)
        if self.keep_in_kernel:
            near, far = self._depth_range_in_kernel(focus_mm)
            point[0, 2] = -sim.sample_depths(1, near, far, generator)[0]
        waves = torch.tensor(sim.wavelengths_um, dtype=torch.float32).unsqueeze(0)
        if self.wavelength_jitter_um > 0:
            waves = (
                waves + (2.0 * torch.rand(waves.shape, generator=generator) - 1.0) * self.wavelength_jitter_um
            )
        psf = sim.simulate(
            point,
            generator=generator,
            wavelengths_um=waves if self.wavelength_jitter_um > 0 else None,
            focus_depths_mm=torch.tensor([focus_mm]),
        )[0]
        if self.normalize == "peak":
            psf = psf / psf.amax().clamp(min=1e-12)
        coords = torch.cat([point[0, :2], point[0, 2:].abs(), torch.tensor([focus_mm]), waves[0]]).to(
            torch.float32
        )
        return {"gt": psf.float().cpu(), "coords": coords, "x": index}
