"""Peak memory of one training step of each arch, with and without `network.gradient_checkpointing`.

Each (arch, setting) runs in a fresh subprocess: build the arch, warm up with a small input (kernels,
lazy imports such as the one `torch.utils.checkpoint` does on first use), then time one forward and
backward pass at the measured size. The figure is the rise of the process's peak memory over that step:
on CUDA `torch.cuda.max_memory_allocated`, on CPU the peak resident set (`resource.getrusage`;
`tracemalloc` does not see torch's allocations). Both settings share the weights' size, so the
difference is the activations the checkpointed blocks do not keep. No optimizer step: its state
costs the same with either setting.

    python bench/gradient_checkpointing.py [--arch NAME ...] [--size 128]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.archs.autoencoder_kl_arch import AutoencoderKL_arch, AutoencoderKL_config  # noqa: E402
from models.archs.controlnet_arch import ControlNet_arch, ControlNet_config  # noqa: E402
from models.archs.diffusion_unet_arch import DiffusionUNet_arch, DiffusionUNet_config  # noqa: E402
from models.archs.multitask_autoencoder_arch import (  # noqa: E402
    MultiTaskAutoencoder_arch,
    MultiTaskAutoencoder_config,
)

UNET = dict(
    in_channels=4,
    out_channels=4,
    channels=[64, 128, 256],
    attention_levels=[False, True, True],
    num_head_channels=[0, 32, 32],
    num_res_blocks=2,
    cross_attention_dim=64,
    norm_num_groups=32,
)


def vae(on):
    config = AutoencoderKL_config(
        in_channels=1, out_channels=1, block_out_channels=[64, 128, 256, 256], latent_channels=4
    )
    config.gradient_checkpointing = on
    net = AutoencoderKL_arch(config)
    return net, lambda size, g: net(torch.randn(2, 1, size, size, generator=g)).reconstruction.square().mean()


def unet(backend):
    def build(on):
        net = DiffusionUNet_arch(DiffusionUNet_config(backend=backend, gradient_checkpointing=on, **UNET))

        def loss(size, g):
            x, context = (
                torch.randn(4, 4, size // 4, size // 4, generator=g),
                torch.randn(4, 2, 64, generator=g),
            )
            return net(x, torch.randint(0, 1000, (4,), generator=g), context).square().mean()

        return net, loss

    return build


def controlnet(on):
    shape = DiffusionUNet_arch(DiffusionUNet_config(backend="diffusers", **UNET)).unet.config
    config = ControlNet_config(conditioning_embedding_out_channels=[16, 32, 64], unet=dict(shape))
    config.gradient_checkpointing = on
    net = ControlNet_arch(config)

    def loss(size, g):
        x, context = torch.randn(4, 4, size // 4, size // 4, generator=g), torch.randn(4, 2, 64, generator=g)
        control = torch.randn(4, 1, size, size, generator=g)
        down, mid = net(x, torch.randint(0, 1000, (4,), generator=g), control, encoder_hidden_states=context)
        return sum(r.square().mean() for r in down) + mid.square().mean()

    return net, loss


def multitask(on):
    heads = [
        {"type": "RGBHead", "name": "rgb", "out_channels": 1},
        {"type": "SegmentationHead", "name": "seg", "num_classes": 3},
        {"type": "ClassificationHead", "name": "cls", "num_classes": 2},
    ]
    config = MultiTaskAutoencoder_config(
        in_channels=1, latent_channels=4, base_channels=64, downsampling_steps=3, layers_per_block=2,
        norm_num_groups=32, heads=heads, gradient_checkpointing=on,
    )  # fmt: skip
    net = MultiTaskAutoencoder_arch(config)

    def loss(size, g):
        return sum(h.square().mean() for h in net(torch.randn(2, 1, size, size, generator=g)).heads.values())

    return net, loss


ARCHES = {
    "AutoencoderKL": vae,  # images of --size, batch 2
    "DiffusionUNet-diffusers": unet("diffusers"),  # latents of --size / 4, batch 4
    "DiffusionUNet-monai": unet("monai"),
    "ControlNet": controlnet,  # latents of --size / 4, controls of --size, batch 4
    "MultiTaskAutoencoder": multitask,  # images of --size, batch 2
}


def peak_bytes() -> int:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def measure(name: str, on: bool, size: int) -> dict:
    """Run in the subprocess: the peak memory rise and the wall time of one forward and backward pass."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    net, loss = ARCHES[name](on)
    net.to(device).train()
    with torch.device(device):
        for _ in range(2):  # warm-up at a small size: the second pass still meets first-use costs
            loss(32, torch.Generator().manual_seed(1)).backward()
        net.zero_grad(set_to_none=False)  # the gradients' memory is held before the measured step
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before, start = peak_bytes(), time.perf_counter()
        loss(size, torch.Generator().manual_seed(0)).backward()
        if device == "cuda":
            torch.cuda.synchronize()
    return {"peak_mib": (peak_bytes() - before) / 2**20, "seconds": time.perf_counter() - start}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="*", choices=list(ARCHES), default=list(ARCHES))
    parser.add_argument("--size", type=int, default=128, help="image side (latents are a quarter of it)")
    parser.add_argument("--child", nargs=2, metavar=("ARCH", "ON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1] == "1", args.size)))
        return
    device = "CUDA (max_memory_allocated)" if torch.cuda.is_available() else "CPU (peak RSS rise)"
    print(f"one forward + backward at --size {args.size}, {device}")
    print("| arch | peak off | peak on | saved | step off | step on |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.arch:
        runs = [_child(name, on, args.size) for on in (0, 1)]
        off, on = runs
        print(
            f"| {name} | {off['peak_mib']:.0f} MiB | {on['peak_mib']:.0f} MiB | "
            f"{1 - on['peak_mib'] / off['peak_mib']:.0%} | {off['seconds']:.2f} s | {on['seconds']:.2f} s |",
            flush=True,
        )


def _child(name: str, on: int, size: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--size", str(size), "--child", name, str(on)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
