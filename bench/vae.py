"""Training speed of VAE_model against a plain PyTorch loop as PTI-LDM-VAE writes it (not a test).

Seed 000's config: `channels` [64, 128, 256], batch 4, 128x128, one channel, L1 reconstruction + KL
(+ a PatchGAN adversarial term with `--gan`). Three loops train in one process, alternating rounds:

- plain: MONAI's AutoencoderKL in a hand-written PyTorch loop (PTI-LDM-VAE's train step)
- VAE_model + MonaiAutoencoderKL: the same network through the trainer
- VAE_model + AutoencoderKL: diffusers' network at the same widths through the trainer

`--options` adds one more trainer loop (MonaiAutoencoderKL) per speed option, interleaved with the others:
`channels_last` (train.channels_last), `foreach` / `fused` (train.optim.implementation), `compile`
(train.compile; its first step, which compiles, is reported apart from the step times), `log_every`
(train.log_every 10 with the fused AdamW: no loss or gradient norm read back inside a step), and
`best` (the winners together: BEST_OPTIONS). `--only-monai` leaves out the diffusers network's loop.

A step's time is the wall time between consecutive steps; peak memory is the process's resident set
growth during each loop. Prints steps/s and the ratios to the plain loop (target: at least as fast;
with the speed options, at most 0.8x its time per step, i.e. at least x1.25 its speed).

    python bench/vae.py [--steps 12] [--rounds 2] [--size 128] [--gan] [--options channels_last fused ...]
                        [--only-monai] [--threads N]
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.synthetic_shapes_dataset import SyntheticShapesDataset  # noqa: E402
from models.vae.VAE_model import VAE_model  # noqa: E402
from tests.conftest import reset_accelerate, run_trainer  # noqa: E402

SEED_000 = dict(channels=[64, 128, 256], latent_channels=3, num_res_blocks=2, norm_num_groups=32)
MONAI_NETWORK = dict(
    type="MonaiAutoencoderKL",
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    attention_levels=[False, False, False],
    with_encoder_nonlocal_attn=False,
    with_decoder_nonlocal_attn=False,
    **SEED_000,
)
DIFFUSERS_NETWORK = dict(
    type="AutoencoderKL",
    in_channels=1,
    out_channels=1,
    block_out_channels=SEED_000["channels"],
    layers_per_block=SEED_000["num_res_blocks"],
    latent_channels=SEED_000["latent_channels"],
    norm_num_groups=SEED_000["norm_num_groups"],
    mid_block_add_attention=False,
)
SPEED_OPTIONS = {
    "channels_last": {"channels_last": True},
    "foreach": {"optim": {"implementation": "foreach"}},
    "fused": {"optim": {"implementation": "fused"}},
    "compile": {"compile": True},
    "log_every": {"log_every": 10, "optim": {"implementation": "fused"}},  # no readback in the step
}
BEST_OPTIONS = {"optim": {"implementation": "fused"}}  # channels_last lost on this CPU (docs/benchmarks.md)
DISCRIMINATOR = dict(type="PatchDiscriminator", spatial_dims=2, in_channels=1, channels=32, num_layers_d=3)


class PeakRSS:
    def __enter__(self):
        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        return self

    def sample(self):
        self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc):
        self.sample()

    @property
    def growth_mb(self):
        return (self.peak - self.start) / 2**20


def with_options(train: dict, options: dict) -> dict:
    """`train` with the `options` of a speed variant merged in (the optim block key by key)."""
    merged = {**train, **{k: v for k, v in options.items() if k != "optim"}}
    merged["optim"] = {**train["optim"], **options.get("optim", {})}
    return merged


def trainer_steps(args, root, network, options=None, first=None) -> tuple[list[float], float]:
    config = {
        "name": "bench_vae",
        "model_type": "VAE_model",
        "report_to": "none",
        "seed": 0,
        "experiment_key": f"r{time.perf_counter_ns()}",
        "datasets": {
            "train": {"type": "SyntheticShapesDataset", "size": 4 * (args.steps + 2), "image_size": args.size}
        },
        "network": copy.deepcopy(network),
        "path": {"root": root},
        "train": {
            "optim": {"learning_rate": 1e-4},
            "batch_size": 4,
            "max_train_steps": args.steps,
            "validation_steps": 10**9,
            "checkpointing_steps": 10**9,
            "recon_type": "l1",
            "kl_weight": 1e-6,
            "disc_start": 0,
            "adaptive_disc_weight": False,
            "compute_scale_factor": False,
        },
    }
    config["train"] = with_options(config["train"], options or {})
    if args.gan:
        config["network_d"] = dict(DISCRIMINATOR)
    stamps = []
    original = VAE_model.optimize_parameters

    def timed(self):
        stamps.append(time.perf_counter())
        memory.sample()
        return original(self)

    VAE_model.optimize_parameters = timed
    try:
        with PeakRSS() as memory:
            assert run_trainer(config, Path(root), name="bench_vae.yml") == 0
    finally:
        VAE_model.optimize_parameters = original
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    if first is not None:  # the first step's time (a compiled loop compiles there)
        first.append(steps[0])
    return steps[1:], memory.growth_mb


def plain_monai_steps(args) -> tuple[list[float], float]:
    """PTI-LDM-VAE's loop: MONAI AutoencoderKL, Adam, L1 + kl_weight * KL (+ PatchGAN), one device."""
    from monai.networks.nets import AutoencoderKL, PatchDiscriminator

    torch.manual_seed(0)
    kwargs = {k: v for k, v in MONAI_NETWORK.items() if k != "type"}
    autoencoder = AutoencoderKL(**kwargs)
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=1e-4)
    disc = disc_optimizer = None
    if args.gan:
        disc_kwargs = {k: v for k, v in DISCRIMINATOR.items() if k != "type"}
        disc = PatchDiscriminator(**disc_kwargs, out_channels=1)
        disc_optimizer = torch.optim.Adam(disc.parameters(), lr=1e-4)
    dataset = SyntheticShapesDataset({"size": 4 * (args.steps + 2), "image_size": args.size})
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, drop_last=True)
    stamps = []
    with PeakRSS() as memory:
        for step, batch in enumerate(loader):
            if step >= args.steps:
                break
            stamps.append(time.perf_counter())
            memory.sample()
            images = batch["gt"]
            optimizer.zero_grad(set_to_none=True)
            reconstruction, z_mu, z_sigma = autoencoder(images)
            recon = torch.nn.functional.l1_loss(reconstruction, images)
            kl = 0.5 * torch.sum(z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2)) - 1, dim=[1, 2, 3])
            loss = recon + 1e-6 * kl.mean()
            if disc is not None:
                logits_fake = disc(reconstruction.contiguous().float())[-1]
                loss = loss + 0.5 * torch.relu(1.0 - logits_fake).mean()
            loss.backward()
            optimizer.step()
            if disc is not None:
                disc_optimizer.zero_grad(set_to_none=True)
                real = disc(images.contiguous())[-1]
                fake = disc(reconstruction.contiguous().detach())[-1]
                d_loss = 0.5 * (torch.relu(1.0 - real).mean() + torch.relu(1.0 + fake).mean())
                d_loss.backward()
                disc_optimizer.step()
    reset_accelerate()
    return [b - a for a, b in zip(stamps, stamps[1:])][1:], memory.growth_mb


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--gan", action="store_true", help="add the PatchGAN adversarial term to all loops")
    parser.add_argument(
        "--options", nargs="*", default=[], choices=[*SPEED_OPTIONS, "best"], help="speed options to time"
    )
    parser.add_argument("--only-monai", action="store_true", help="leave out the diffusers network's loop")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (a CPU shared with other jobs: 1 is steadier)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    firsts = {}
    loops = {
        "plain MONAI loop": lambda: plain_monai_steps(args),
        "VAE_model + MonaiAutoencoderKL": lambda: trainer_steps(args, root, MONAI_NETWORK),
    }
    if not args.only_monai:
        loops["VAE_model + AutoencoderKL"] = lambda: trainer_steps(args, root, DIFFUSERS_NETWORK)
    for option in args.options:
        name = f"  + {option}"
        settings = BEST_OPTIONS if option == "best" else SPEED_OPTIONS[option]
        firsts[name] = []
        loops[name] = lambda s=settings, f=firsts[name]: trainer_steps(args, root, MONAI_NETWORK, s, f)
    times = {name: [] for name in loops}
    memory = {k: 0.0 for k in times}
    with tempfile.TemporaryDirectory() as root:
        for _ in range(args.rounds):
            for name, run in loops.items():
                steps, grown = run()
                times[name] += steps
                memory[name] = max(memory[name], grown)
    base = statistics.median(times["plain MONAI loop"])
    print(
        f"seed 000 config, batch 4, {args.size}x{args.size}, 1 channel{', PatchGAN' if args.gan else ''}; "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores:"
    )
    for name, steps in times.items():
        median = statistics.median(steps)
        first = f", first step {statistics.median(firsts[name]):.1f} s" if name in firsts else ""
        print(
            f"  {name:32s} {1 / median:6.3f} steps/s  ({median:.3f} s/step = {median / base:.2f}x the plain "
            f"loop's time, x{base / median:.2f} its speed, peak RSS growth {memory[name]:.0f} MB{first})"
        )
    print(f"  ('+ option': VAE_model + MonaiAutoencoderKL with it; best = {BEST_OPTIONS})")


if __name__ == "__main__":
    main()
