"""PSFStackDataset: through-focus PSF stacks ray-traced by the shipped lens model, for 3D models.

Each item is the (1, D, K, K) stack of one randomly drawn object point at one wavelength of
`wavelength_set_m`: the PSFs on D sensor planes spread evenly over +- `focus_range_m` around the
sensor position that focuses the point's depth at the reference (green) wavelength. A red or blue
point therefore comes to focus on another plane of the stack (the lens's chromatic focal shift), an
off-axis point shows its astigmatism as two line foci on either side of best focus. Item i depends only
on (seed, i), so a validation set with a fixed seed is fixed. The keys are `config_keys` plus the lens
keys of the `deeplens:` block (in metres; `kernel_size` is H and W).

Item: {'gt': (1, D, K, K) float32, 'coords': float32 [x, y, depth_mm, wavelength_um], 'x': index};
x, y are normalised field coordinates (1 = sensor edge), the depth is in positive mm.
"""

import numpy as np
import torch
from torch.utils import data

from dataset.common.options import COMMON_KEYS, ITEM_SEED
from utils.cli.console import preparation_bar
from utils.config.schema import Key
from utils.optics.config import BLOCK_KEYS, LENS_KEYS, as_plain_dict, check_keys, lens_from_config
from utils.optics.through_focus import through_focus_stack


class PSFStackDataset(data.Dataset):
    config_keys = {
        "size": Key(1000, "int", "Items per epoch.", minimum=1),
        "seed": ITEM_SEED,
        "num_planes": Key(16, "int", "Sensor planes per stack (the depth D of each volume).", minimum=1),
        "focus_range_m": Key(
            2e-4,
            "float",
            "The planes span +- this distance (m) around best focus; the defocus blur of the outermost "
            "plane is about 2 x range / F-number across.",
            minimum=0.0,
        ),
        "cache": Key(False, "bool", "Ray-trace the whole set once, up front, and replay it every epoch."),
        **LENS_KEYS,
    }

    def __init__(self, opt):
        opt = as_plain_dict(opt)
        check_keys(opt, set(self.config_keys) | COMMON_KEYS, "datasets.PSFStackDataset")
        keys = {name: opt.get(name, key.default) for name, key in self.config_keys.items()}
        self.size = int(keys["size"])
        seed = keys["seed"]
        self.seed = int(seed if seed is not None else (0 if opt.get("phase", "train") == "train" else 1))
        self.simulator = lens_from_config(
            {k: opt[k] for k in BLOCK_KEYS if k in opt}, where="datasets.PSFStackDataset"
        )
        range_mm = float(keys["focus_range_m"]) * 1000.0
        self.offsets_mm = torch.linspace(-range_mm, range_mm, int(keys["num_planes"]))
        self.cache = None
        if keys["cache"]:
            what = f"ray-tracing {self.size} through-focus stacks (cache: true, kept in memory)"
            self.cache = {i: self._simulate(i) for i in preparation_bar(range(self.size), self.size, what)}

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        if not 0 <= index < self.size:
            raise IndexError(f"PSFStackDataset index {index} out of range (size {self.size})")
        if self.cache is not None:
            return dict(self.cache[index])
        return self._simulate(index)

    def _simulate(self, index):
        # Mixing (seed, index) through SeedSequence keeps neighbouring items independent.
        state = np.random.SeedSequence([self.seed, int(index)]).generate_state(1, dtype=np.uint64)
        generator = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
        sim = self.simulator
        point = sim.sample_points(1, generator)[0]
        waves = sim.wavelengths_um
        wavelength = float(waves[int(torch.randint(len(waves), (1,), generator=generator))])
        focus_z = float(sim.lens.best_focus_z(point[2:].abs(), spp=1024)[0])
        stack = through_focus_stack(
            sim.lens, point, wavelength, focus_z, self.offsets_mm, sim.kernel_size, sim.spp, generator
        )
        stack = stack / stack.amax().clamp(min=1e-12)  # the brightest voxel of the stack is 1
        coords = torch.tensor([float(point[0]), float(point[1]), float(point[2].abs()), wavelength])
        return {"gt": stack[None].float().cpu(), "coords": coords, "x": index}
