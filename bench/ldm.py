"""Stage-2 benchmark (not a test): LDM_model's training step and its DDIM sampling against the loops a
user would write by hand, and the time and quality of the three samplers.

Seed 000's UNet (channels 32-64-128-256, attention below the first level, 32 channels per head, 2 res
blocks, cross-attention 512) conditioned on the condition image's latent tokens, batch 4, on
SyntheticShapes pairs (noisy -> clean) through a frozen KL autoencoder (4 latent channels, factor 2).
Three training loops, interleaved over `--rounds` rounds in one process:

- plain MONAI: MONAI's DiffusionModelUNet + a linear projector in a hand-written loop (PTI-LDM-VAE's
  step: encode target and condition, add DDPM noise, predict it, MSE, Adam)
- plain diffusers: the same step with diffusers' UNet2DConditionModel built from LDM_model's own UNet
  config (the diffusers text-to-image example's step: VAE encode, add noise, predict, MSE, AdamW)
- LDM_model: the same step through the trainer (diffusers' UNet2DConditionModel at the same widths)

Sampling: DDIM-50 for a batch of 16 conditions, `LDMPipeline` (what `generate.py` and validation use)
against a plain diffusers loop over the same trained UNet, projector and VAE (`DDIMScheduler`, UNet
calls, `vae.decode`), interleaved, medians of `--rounds`. Then the samplers' quality: the run trained
for `--train-steps` samples the validation conditions with DDPM-1000, DDIM-50 and DPM-Solver++-20, each
timed, with PSNR against the targets. Targets: training and sampling at most 1.0x the plain diffusers
loop's time; DDIM-50 within 0.5 dB of DDPM-1000 at 20x less time.

    python bench/ldm.py [--size 32] [--steps 10] [--rounds 3] [--train-steps 300] [--samples 8]
"""

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.synthetic_shapes_dataset import SyntheticShapesDataset  # noqa: E402
from models.archs import define_network  # noqa: E402
from models.ldm.LDM_model import LDM_model  # noqa: E402
from tests.conftest import run_folder, run_trainer  # noqa: E402
from utils.metrics.image import psnr  # noqa: E402

SEED_000_UNET = dict(
    channels=[32, 64, 128, 256],
    attention_levels=[False, True, True, True],
    num_head_channels=[0, 32, 32, 32],
    num_res_blocks=2,
    with_conditioning=True,
    cross_attention_dim=512,
    norm_num_groups=32,
)
VAE = dict(
    type="AutoencoderKL",
    in_channels=1,
    out_channels=1,
    block_out_channels=[32, 64],
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=16,
    mid_block_add_attention=False,
    scaling_factor=1.0,
)


def make_vae(folder: Path) -> str:
    torch.manual_seed(0)
    define_network(VAE).save_pretrained(folder / "net_g")
    return str(folder / "net_g")


def ldm_config(root: Path, vae: str, size: int, steps: int) -> dict:
    data = {"type": "SyntheticShapesDataset", "image_size": size}
    return {
        "name": "bench_ldm",
        "model_type": "LDM_model",
        "report_to": "none",
        "seed": 0,
        "experiment_key": f"s{steps}",
        "datasets": {"train": {**data, "size": 4096}, "val": {**data, "size": 16}},
        "vae": {"pretrained": vae},
        "condition": {"type": "image"},
        "network": {"type": "DiffusionUNet", "in_channels": 4, "out_channels": 4, **SEED_000_UNET},
        "diffusion": {"beta_schedule": "scaled_linear", "prediction_type": "epsilon"},
        "path": {"root": str(root)},
        "train": {
            "optim": {"learning_rate": 1e-4},
            "batch_size": 4,
            "max_train_steps": steps,
            "validation_steps": 10**9,
            "checkpointing_steps": 10**9,
            "cond_drop_prob": 0.1,
        },
        "val": {"batch_size": 4, "num_samples": 0, "metrics": {"psnr": {"data_range": 1.0}}},
    }


def time_ldm_model(config: dict, tmp: Path) -> list[float]:
    stamps = []
    original = LDM_model.optimize_parameters

    def timed(self):
        out = original(self)
        stamps.append(time.perf_counter())
        return out

    LDM_model.optimize_parameters = timed
    try:
        assert run_trainer(config, tmp, name=f"{config['experiment_key']}.yml") == 0
    finally:
        LDM_model.optimize_parameters = original
    return [b - a for a, b in zip(stamps, stamps[1:])]


def time_plain_loop(vae_folder: str, size: int, steps: int) -> list[float]:
    """PTI-LDM-VAE's LDM step, written as it writes it."""
    from diffusers import DDPMScheduler
    from monai.networks.nets import DiffusionModelUNet

    from models.ldm.frozen_vae import encode_latents, load_frozen_vae

    torch.manual_seed(0)
    vae, _ = load_frozen_vae(vae_folder)
    unet = DiffusionModelUNet(spatial_dims=2, in_channels=4, out_channels=4, **SEED_000_UNET)
    projector = torch.nn.Linear(4, 512)
    optimizer = torch.optim.AdamW(list(unet.parameters()) + list(projector.parameters()), lr=1e-4)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    loader = torch.utils.data.DataLoader(
        SyntheticShapesDataset({"size": 4096, "image_size": size}), batch_size=4, shuffle=True
    )
    times, last = [], None
    for i, batch in enumerate(loader):
        if i > steps:
            break
        with torch.no_grad():
            z = encode_latents(vae, batch["gt"])
            c = encode_latents(vae, batch["cond"])
        context = projector(c.flatten(2).transpose(1, 2))
        noise = torch.randn_like(z)
        t = torch.randint(0, 1000, (len(z),))
        loss = torch.nn.functional.mse_loss(
            unet(scheduler.add_noise(z, noise, t), timesteps=t, context=context), noise
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        now = time.perf_counter()
        if last is not None:
            times.append(now - last)
        last = now
    return times


def time_plain_diffusers_loop(vae_folder: str, size: int, steps: int) -> list[float]:
    """The diffusers text-to-image example's step, on LDM_model's own UNet config."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from models.ldm.frozen_vae import load_frozen_vae

    torch.manual_seed(0)
    vae, _ = load_frozen_vae(vae_folder)
    network = {"type": "DiffusionUNet", "in_channels": 4, "out_channels": 4, **SEED_000_UNET}
    unet = UNet2DConditionModel.from_config(define_network(network).unet.config)
    projector = torch.nn.Linear(4, 512)
    optimizer = torch.optim.AdamW(list(unet.parameters()) + list(projector.parameters()), lr=1e-4)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    loader = torch.utils.data.DataLoader(
        SyntheticShapesDataset({"size": 4096, "image_size": size}), batch_size=4, shuffle=True
    )
    autoencoder, factor = vae.diffusers_vae, vae.config.scaling_factor
    times, last = [], None
    for i, batch in enumerate(loader):
        if i > steps:
            break
        with torch.no_grad():
            latents = autoencoder.encode(batch["gt"]).latent_dist.sample() * factor
            condition = autoencoder.encode(batch["cond"]).latent_dist.mean * factor
        encoder_hidden_states = projector(condition.flatten(2).transpose(1, 2))
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, 1000, (len(latents),))
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        model_pred = unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(model_pred.float(), noise.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        now = time.perf_counter()
        if last is not None:
            times.append(now - last)
        last = now
    return times


@torch.no_grad()
def sampling_times(final: str, size: int, batch: int, rounds: int) -> dict[str, float]:
    """Median seconds of DDIM-50 for `batch` conditions: LDMPipeline against a plain diffusers loop over
    the same UNet, projector and VAE."""
    from diffusers import DDIMScheduler

    from models.ldm.pipeline import LDMPipeline

    pipe = LDMPipeline.from_final(final)
    data = SyntheticShapesDataset({"size": batch, "image_size": size, "seed": 1})
    cond = torch.stack([data[i]["cond"] for i in range(batch)])
    unet, autoencoder = pipe.unet.unet, pipe.vae.diffusers_vae
    factor = pipe.description["scale_factor"]
    scheduler = DDIMScheduler.from_config(pipe.noise_scheduler_config)

    def plain():
        context = pipe.projector(autoencoder.encode(cond).latent_dist.mean * factor)
        latents = torch.randn(batch, 4, size // 2, size // 2, generator=torch.Generator().manual_seed(0))
        scheduler.set_timesteps(50)
        for t in scheduler.timesteps:
            noise_pred = unet(latents, t, encoder_hidden_states=context, return_dict=False)[0]
            latents = scheduler.step(noise_pred, t, latents).prev_sample
        return autoencoder.decode(latents / factor).sample

    def ours():
        return pipe(
            cond, seeds=list(range(batch)), sampler="ddim", num_inference_steps=50, guidance_scale=1.0
        )

    times = {"plain": [], "LDMPipeline": []}
    for _ in range(rounds):
        for name, run in (("plain", plain), ("LDMPipeline", ours)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def sampler_quality(final: str, size: int, count: int) -> dict:
    from models.ldm.pipeline import LDMPipeline

    pipe = LDMPipeline.from_final(final)
    data = SyntheticShapesDataset({"size": count, "image_size": size, "seed": 1})
    cond = torch.stack([data[i]["cond"] for i in range(count)])
    target = torch.stack([data[i]["gt"] for i in range(count)]).numpy()
    results = {}
    for name, sampler, steps in (
        ("DDPM-1000", "ddpm", 1000),
        ("DDIM-50", "ddim", 50),
        ("DPM-Solver-20", "dpm_solver", 20),
    ):
        start = time.perf_counter()
        images = pipe(
            cond, seeds=list(range(count)), sampler=sampler, num_inference_steps=steps, guidance_scale=1.0
        )
        elapsed = time.perf_counter() - start
        results[name] = {
            "seconds": round(elapsed, 2),
            "psnr": round(psnr(images.numpy(), target, data_range=1.0), 2),
        }
        print(f"{name:>14}: {elapsed:7.1f} s  PSNR {results[name]['psnr']:.2f} dB", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=32, help="image size (the latent is half)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per loop")
    parser.add_argument(
        "--train-steps", type=int, default=300, help="LDM_model steps before sampling (0: skip)"
    )
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the timed loops")
    parser.add_argument("--sampling-batch", type=int, default=16, help="conditions per DDIM-50 call")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vae = make_vae(tmp / "vae")
        steps = {"plain MONAI": [], "plain diffusers": [], "LDM_model": []}
        for round_ in range(args.rounds):
            steps["plain MONAI"] += time_plain_loop(vae, args.size, args.steps)
            steps["plain diffusers"] += time_plain_diffusers_loop(vae, args.size, args.steps)
            config = ldm_config(tmp / "runs", vae, args.size, args.steps + 1)
            config["experiment_key"] += f"r{round_}"
            steps["LDM_model"] += time_ldm_model(config, tmp)
        rate = {name: 1 / statistics.median(times) for name, times in steps.items()}
        base = rate["plain diffusers"]
        print(
            "training steps/s: "
            + ", ".join(
                f"{name} {r:.2f} ({base / r:.2f}x the plain diffusers step time)" for name, r in rate.items()
            ),
            flush=True,
        )
        report = {"train_steps_per_s": {name: round(r, 3) for name, r in rate.items()}}
        config = copy.deepcopy(ldm_config(tmp / "runs", vae, args.size, max(args.train_steps, 1)))
        config["train"]["optim"]["learning_rate"] = 5e-4
        assert run_trainer(config, tmp, name="quality.yml") == 0
        final = os.path.join(run_folder(config), "final")
        sampling = sampling_times(final, args.size, args.sampling_batch, args.rounds)
        ratio = sampling["LDMPipeline"] / sampling["plain"]
        print(
            f"DDIM-50, batch {args.sampling_batch}: plain diffusers loop {sampling['plain']:.2f} s, "
            f"LDMPipeline {sampling['LDMPipeline']:.2f} s ({ratio:.2f}x)",
            flush=True,
        )
        report["ddim50_seconds"] = {name: round(v, 3) for name, v in sampling.items()}
        if args.train_steps:
            report["samplers"] = sampler_quality(final, args.size, args.samples)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
