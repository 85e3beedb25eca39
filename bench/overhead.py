"""The trainer's per-step cost against a hand-written Accelerate loop (not a test).

Both train the example arch (TinyDenoiser) on the same synthetic data with the same AdamW, LR schedule
and gradient clipping. Runs alternate (trainer, hand loop, trainer, ...) in one process so that the
machine's drift hits both alike; a step's time is the wall time between two consecutive forward
passes, so it includes everything each loop does per step (data, accumulate, clipping, schedule,
logging, progress bar). Prints the ratio of medians; the target is at most 1.03.

    python bench/overhead.py [--steps 150] [--rounds 4] [--hidden 48] [--image-size 32] [--batch-size 16]
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.synthetic_shapes_dataset import SyntheticShapesDataset  # noqa: E402
from models.archs import define_network  # noqa: E402
from models.example.Denoise_model import Denoise_model  # noqa: E402
from tests.conftest import TINY_DENOISE, reset_accelerate, run_trainer  # noqa: E402


def config_for(args, root):
    config = copy.deepcopy(TINY_DENOISE)
    config["path"]["root"] = root
    config["experiment_key"] = f"r{time.perf_counter_ns()}"
    config["datasets"]["train"].update(
        size=args.steps * args.batch_size + args.batch_size, image_size=args.image_size
    )
    del config["datasets"]["val"]
    config["network"].update(hidden_channels=args.hidden, num_layers=6)
    config["train"].update(
        batch_size=args.batch_size,
        max_train_steps=args.steps,
        checkpointing_steps=10**9,
        validation_steps=10**9,
    )
    return config


def trainer_step_times(args, root) -> list[float]:
    stamps = []
    original = Denoise_model.optimize_parameters

    def timed(self):
        stamps.append(time.perf_counter())
        return original(self)

    Denoise_model.optimize_parameters = timed
    try:
        from pathlib import Path

        assert run_trainer(config_for(args, root), Path(root), name="bench.yml") == 0
    finally:
        Denoise_model.optimize_parameters = original
    return [b - a for a, b in zip(stamps, stamps[1:])][5:]  # the first steps warm up caches


def hand_loop_step_times(args, root) -> list[float]:
    """What a user would write with Accelerate's examples as the template."""
    config = config_for(args, root)
    accelerator = Accelerator(gradient_accumulation_steps=1)
    set_seed(config["seed"])
    net = define_network(config["network"])
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-2)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=args.steps)
    loader = DataLoader(
        SyntheticShapesDataset({**config["datasets"]["train"], "phase": "train"}),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
    )
    net, optimizer, loader = accelerator.prepare(net, optimizer, loader)
    stamps = []
    progress = tqdm(total=args.steps, disable=True)
    for step, batch in enumerate(loader):
        if step >= args.steps:
            break
        stamps.append(time.perf_counter())
        with accelerator.accumulate(net):
            loss = torch.nn.functional.mse_loss(net(batch["cond"]), batch["gt"])
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        progress.set_postfix(loss=loss.item())
        progress.update(1)
    reset_accelerate()
    return [b - a for a, b in zip(stamps, stamps[1:])][5:]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ours, hand = [], []
    with tempfile.TemporaryDirectory() as root:
        for round_index in range(args.rounds):
            ours += trainer_step_times(args, root)
            hand += hand_loop_step_times(args, root)
            print(
                f"round {round_index + 1}: trainer {statistics.median(ours) * 1e3:.2f} ms/step, "
                f"hand loop {statistics.median(hand) * 1e3:.2f} ms/step",
                file=sys.stderr,
            )
    ratio = statistics.median(ours) / statistics.median(hand)
    print(f"trainer median step   {statistics.median(ours) * 1e3:.3f} ms  ({len(ours)} steps)")
    print(f"hand loop median step {statistics.median(hand) * 1e3:.3f} ms  ({len(hand)} steps)")
    print(f"ratio trainer / hand  {ratio:.3f}  (target <= 1.03)")


if __name__ == "__main__":
    main()
