"""PSF_model: learn a lens's PSF as a function of field position and depth, from PSFs ray-traced on the fly.

    deeplens: block -> a PSFSimulator (utils/optics), focused once at `train.focus_depth`
    DummyDataset indices -> coordinates -> ray-traced PSFs, on the accelerator's device -> self.sample
    net_g(coordinates) -> predicted PSFs, trained with `train.loss`

`feed_data` fills `self.sample` with 'inp' (N, 3) coordinates and 'psf' (N, C, K, K): the contract
subclasses rely on (they call `super().feed_data`).
"""

import numpy as np
import torch

from engine import BaseModel
from models.archs import define_network
from models.shared_keys import LOSS_KEYS
from utils.config.schema import Key
from utils.errors import ConfigError
from utils.losses import Loss
from utils.optics import lens_from_config
from utils.optics.config import LENS_KEYS

NORMALIZATIONS = ("peak", "sum")
TRAIN_KEYS = {
    "focus_depth": Key(
        None,
        "float",
        "Focus distance (m); default: where the blur at depth_min and depth_max is equal.",
        minimum=0.0,
        nullable=True,
    ),
    "psf_normalize": Key(
        "peak", "str", "`peak`: brightest pixel = 1; `sum`: each channel sums to 1.", NORMALIZATIONS
    ),
}
VAL_KEYS = {"num_images": Key(8, "int", "Rows in each logged PSF grid.", minimum=1)}
TRAIN_STREAM, VAL_STREAM = 0, 1  # separate random streams: validation points are never training points


class PSF_model(BaseModel):
    """Builds `self.net_g` from the `network` block only when its own `optimize_parameters` is the one in
    use: a subclass that writes its own training step builds its networks itself, as a seed-style
    subclass does (`self.net_vae = define_network(opt.network)`), and gets no second, unused network."""

    config_keys = {
        "": {
            "deeplens": Key(
                None,
                "block",
                "The lens simulation (docs/optics.md; metres).",
                nullable=True,
                fill_default=False,
            )
        },
        "deeplens": LENS_KEYS,
        "train": {**TRAIN_KEYS, **LOSS_KEYS},
        "val": VAL_KEYS,
    }

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        if opt.get("deeplens") is None:
            raise ConfigError(
                f"{type(self).__name__} simulates its PSFs from a 'deeplens:' block (lens_file, spp, kernel_size, "
                "wavelength_set_m, fov, depth_min, depth_max in metres; see docs/optics.md); the config has none."
            )
        self.simulator = lens_from_config(opt["deeplens"], device=self.accelerator.device)
        hp = self.config_values("train")
        self.psf_normalize = hp["psf_normalize"]
        self.focus_depth_mm = self._focus_depth_mm(hp["focus_depth"])
        self.simulator.focus(self.focus_depth_mm)
        self._warn_if_blur_exceeds_kernel()
        self.criterion = Loss(hp["loss"]).to(self.accelerator.device)
        self._validation_items = {}

        if type(self).optimize_parameters is PSF_model.optimize_parameters:
            self.net_g = self.add_network("net_g", define_network(opt.network))
            self.check_network_fits(self.net_g)

    # ------------------------------------------------------------------ the lens

    def _focus_depth_mm(self, focus_depth_m) -> float:
        sim = self.simulator
        if focus_depth_m is None:
            # Where the defocus blur at depth_min and at depth_max is the same: the smallest largest blur.
            return 2.0 / (1.0 / sim.depth_min_mm + 1.0 / sim.depth_max_mm)
        if not float(focus_depth_m) > 0:
            raise ConfigError(
                f"'train.focus_depth' is {focus_depth_m!r}; give the focus distance in metres (> 0)."
            )
        return float(focus_depth_m) * 1000.0

    def _warn_if_blur_exceeds_kernel(self):
        lens, sim = self.simulator.lens, self.simulator
        if not all(hasattr(lens, a) for a in ("entrance_pupil_r", "efl", "pixel_size")):
            return  # the DeepLens backend's lens describes its pupil differently
        defocus = max(abs(1.0 / d - 1.0 / self.focus_depth_mm) for d in (sim.depth_min_mm, sim.depth_max_mm))
        blur_px = 2.0 * float(lens.entrance_pupil_r) * float(lens.efl) * defocus / float(lens.pixel_size)
        if blur_px > sim.kernel_size:
            self.logger.warning(
                f"deeplens: with focus at {self.focus_depth_mm / 1000:g} m the defocus blur reaches about "
                f"{blur_px:.0f} pixels at the ends of depth_min..depth_max, wider than kernel_size "
                f"{sim.kernel_size}: those PSFs are clipped by their window. Narrow the depth range, set "
                "'train.focus_depth', or enlarge the kernel."
            )

    def check_network_fits(self, net):
        """A clear error when the arch's kernel size or channel count differs from the `deeplens` block."""
        sim = self.simulator
        channels = (sim.channels, "the number of deeplens.wavelength_set_m")
        expected = {
            "kernel_size": (sim.kernel_size, "deeplens.kernel_size"),
            "out_channels": channels,
            "in_channels": channels,
        }
        for key, (value, source) in expected.items():
            got = getattr(net.config, key, None)
            if got is not None and int(got) != value:
                raise ConfigError(f"'network.{key}' is {got} but {source} is {value}; they must match.")

    def coords_to_points(self, inp: torch.Tensor) -> torch.Tensor:
        """(N, 3) coordinates in [-1, 1] -> the simulator's points: normalised field x, y, depth (negative mm)."""
        sim = self.simulator
        inp = inp.detach().double().cpu()
        t = (inp[:, 2] + 1.0) / 2.0
        inverse_depth = 1.0 / sim.depth_max_mm + t * (1.0 / sim.depth_min_mm - 1.0 / sim.depth_max_mm)
        return torch.stack(
            [inp[:, 0] * sim.field_extent, inp[:, 1] * sim.field_extent, -1.0 / inverse_depth], -1
        ).float()

    def simulate_psfs(self, inp: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Ray-traced PSFs (N, C, K, K) at coordinates `inp`, on the accelerator's device, normalised."""
        psf = self.simulator.simulate(
            self.coords_to_points(inp), device=self.accelerator.device, generator=generator
        )
        psf = psf.to(self.accelerator.device, torch.float32)
        if self.psf_normalize == "peak":
            psf = psf / psf.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
        return psf

    # ------------------------------------------------------------------ data

    def item_generator(self, *keys: int) -> torch.Generator:
        """A CPU generator seeded by (seed, *keys); SeedSequence keeps neighbouring keys independent."""
        entropy = [int(self.opt["seed"]) % 2**63, *(int(k) for k in keys)]
        state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)
        return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))

    def draw_coordinates(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The coordinates of one item, {'inp': (3,)}. Every key 'inp<suffix>' gets a 'psf<suffix>'."""
        return {"inp": 2.0 * torch.rand(3, generator=generator) - 1.0}

    def _psfs_for(self, coords: dict, generator) -> dict[str, torch.Tensor]:
        sample = {}
        for key, inp in coords.items():
            sample[key] = inp.to(self.accelerator.device)
            sample["psf" + key[len("inp") :]] = self.simulate_psfs(inp, generator)
        return sample

    def _validation_item(self, index: int) -> dict[str, torch.Tensor]:
        # One generator per item, for its coordinates and its rays: the item is the same in any batch.
        if index not in self._validation_items:
            generator = self.item_generator(VAL_STREAM, index)
            coords = {k: v.unsqueeze(0) for k, v in self.draw_coordinates(generator).items()}
            self._validation_items[index] = self._psfs_for(coords, generator)
        return self._validation_items[index]

    def feed_data(self, data, is_train=True):
        """Fills `self.sample` (subclasses rely on it and call `super().feed_data`):

        'inp'  (N, 3) float32 coordinates, each in [-1, 1] over the sampled range: field x and y (+-1 at
               the edges of the square whose corner is at image height `deeplens.fov`) and inverse depth
               (-1 at `depth_max`, +1 at `depth_min`; defocus blur is linear in 1 / depth)
        'psf'  (N, C, K, K) float32, one channel per wavelength of `wavelength_set_m`, K = `kernel_size`,
               normalised by `train.psf_normalize`: `peak` (brightest pixel over all channels = 1, a good
               range for networks) or `sum` (each channel sums to 1, the physical convention)

        Coordinates are uniform, so depth is uniform in 1 / depth. Each item draws them from a generator
        seeded by (seed, epoch, index) in training and (seed, index) in validation: training sees new
        points every epoch, a resumed run sees exactly the PSFs the uninterrupted one saw, and the
        validation set (cached after its first pass) is fixed, never sampled in training, and the same
        in `-test`."""
        indices = [int(i) for i in torch.as_tensor(data["x"]).reshape(-1).tolist()]
        if not is_train:
            items = [self._validation_item(i) for i in indices]
            self.sample = {key: torch.cat([item[key] for item in items]) for key in items[0]}
            return
        epoch = self.state.epoch
        drawn = [self.draw_coordinates(self.item_generator(TRAIN_STREAM, epoch, i)) for i in indices]
        coords = {key: torch.stack([d[key] for d in drawn]) for key in drawn[0]}
        # One batch of rays is faster than one trace per item; its seed depends only on the batch's indices.
        self.sample = self._psfs_for(coords, self.item_generator(TRAIN_STREAM, epoch, *indices))

    # ------------------------------------------------------------------ training and validation

    def optimize_parameters(self):
        pred = self.net_g(self.sample["inp"])
        losses = self.criterion(pred, self.sample["psf"])
        self.step(losses["all"])
        return losses

    def validate_step(self, batch):
        self.feed_data(batch, is_train=False)
        target = self.sample["psf"]
        pred = self.net_g(self.sample["inp"])
        losses = self.criterion(pred, target)
        self.log({f"loss_{k}": v for k, v in losses.items()})
        self.log_psf_metrics(pred, target)
        if self.validated_samples == 0:
            self.log_psf_grid(target, pred, "val_psf_truth_pred_diff")

    def validation_metric_names(self):
        return self.metric_names() | {f"val_loss_{k}" for k in [*(n for n, _ in self.criterion.terms), "all"]}

    def log_psf_metrics(self, pred, target, prefix: str = ""):
        self.log(pred=pred.float().cpu().numpy(), target=target.float().cpu().numpy(), prefix=prefix)

    def log_psf_grid(self, truth, pred, name: str):
        """Rows of [ray-traced | predicted | |difference|], shown with gamma 0.5 so the faint tails of a
        PSF are visible; the three share one brightness scale."""
        n = min(len(truth), int(self.config_values("val")["num_images"]))
        rows = torch.cat([truth[:n], pred[:n], (pred[:n] - truth[:n]).abs()], dim=-1)
        self.log_images(name, rows.clamp(min=0).sqrt().float().cpu().numpy())
