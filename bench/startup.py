"""Start-up: how long a run takes from a fresh interpreter to its first optimizer step (not a test).

Every measurement is a fresh subprocess, repeated --repeats times, the kinds interleaved (a, b, c, d, a,
b, ...) so that the machine's drift hits all alike; prints the medians (and the minima):

- `python -c 'import torch'`: the floor every PyTorch program pays
- a plain script's imports: the libraries a tiny run of that arch needs (torch, accelerate, diffusers,
  transformers, and monai where the arch is MONAI's), imported as a hand-written training script does
- `python trainer.py -opt <tiny config>`: from the launch to the end of the first optimizer step

The trainer's child is this script in `--first-step` mode: it registers a torch-wide optimizer step
hook (`torch.optim.optimizer.register_optimizer_step_post_hook`, so no product code changes), then runs
trainer.py as `__main__`. On the first optimizer step the hook prints `time.monotonic()` (one clock for
every process on Linux) and the optional libraries that are loaded by then, and ends the process at
once: what follows is not start-up. The tiny configs are the test suite's TINY_VAE (diffusers'
AutoencoderKL, 16x16 shapes, widths 8-16) and the same run with MONAI's AutoencoderKL at the same widths.

    python bench/startup.py [--repeats 5]
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The libraries a run should import only when it uses them (the fast path of a run does not).
OPTIONAL = ("monai", "comet_ml", "bitsandbytes", "umap", "plotly", "sklearn", "matplotlib")
PLAIN_IMPORTS = {
    "diffusers": (
        "import torch; from accelerate import Accelerator; from diffusers import AutoencoderKL; "
        "from transformers import PreTrainedModel"
    ),
    "monai": (
        "import torch; from accelerate import Accelerator; from diffusers.optimization import get_scheduler; "
        "from transformers import PreTrainedModel; from monai.networks.nets import AutoencoderKL"
    ),
}
MONAI_NETWORK = {
    "type": "MonaiAutoencoderKL",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [8, 16],
    "latent_channels": 2,
    "num_res_blocks": 1,
    "norm_num_groups": 4,
    "attention_levels": [False, False],
    "with_encoder_nonlocal_attn": False,
    "with_decoder_nonlocal_attn": False,
}


def first_step(trainer_argv: list[str]) -> None:
    """Run in the child: trainer.py as `__main__`, ended by the first optimizer step."""
    import runpy

    # The run imports torch first thing anyway; the hook needs it before the run starts.
    from torch.optim.optimizer import register_optimizer_step_post_hook

    def stamp(optimizer, args, kwargs):
        from utils.cli.imports import is_deferred  # a placeholder in sys.modules is not an import

        loaded = [n for n in OPTIONAL if n in sys.modules and not is_deferred(sys.modules[n])]
        print(json.dumps({"first_step": time.monotonic(), "loaded": loaded}), flush=True)
        os._exit(0)  # the rest of the run is not start-up

    register_optimizer_step_post_hook(stamp)
    sys.path[0] = str(REPO)
    sys.argv = ["trainer.py", *trainer_argv]
    runpy.run_path(str(REPO / "trainer.py"), run_name="__main__")
    raise SystemExit("the run ended without an optimizer step")


def tiny_configs(folder: Path) -> dict[str, Path]:
    """{arch family: YAML path}: the suite's tiny VAE run, with diffusers' and with MONAI's network."""
    sys.path.insert(0, str(REPO))
    from tests.helpers.configs import TINY_VAE
    from tests.helpers.runs import write_config

    paths = {}
    for family in ("diffusers", "monai"):
        config = copy.deepcopy(TINY_VAE)
        config["path"]["root"] = str(folder / "runs")
        config["name"] = f"startup_{family}"
        if family == "monai":
            config["network"] = dict(MONAI_NETWORK)
        paths[family] = Path(write_config(config, folder / f"{family}.yml"))
    return paths


def environment() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    return env


def timed(argv: list[str]) -> tuple[float, list[str] | None]:
    """Seconds from the launch to the process's end, or to its first optimizer step when it reports one;
    with the optional libraries loaded by then."""
    start = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, env=environment(), capture_output=True, text=True)
    end = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited with {done.returncode}:\n{done.stderr[-3000:]}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith('{"first_step"'):
            report = json.loads(line)
            return report["first_step"] - start, report["loaded"]
    return end - start, None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="launches of each kind (default: 5)")
    args = parser.parse_args(argv)
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        configs = tiny_configs(Path(tmp))
        kinds = {"python -c 'import torch'": [python, "-c", "import torch"]}
        for family, path in configs.items():
            kinds[f"plain script's imports ({family})"] = [python, "-c", PLAIN_IMPORTS[family]]
            # Each launch adds its own experiment_key: the ended runs leave their folders behind.
            child = [python, str(Path(__file__).resolve()), "--first-step", "-opt", str(path)]
            kinds[f"trainer.py to first step ({family} arch)"] = child
        seconds = {name: [] for name in kinds}
        loaded = {}
        for repeat in range(args.repeats):
            for name, command in kinds.items():
                if "--first-step" in command:
                    command = [*command, f"experiment_key=r{repeat}"]
                took, modules = timed(command)
                seconds[name].append(took)
                if modules is not None:
                    loaded[name] = modules
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    print(f"start-up, median (min) of {args.repeats} fresh processes each:")
    for name, values in seconds.items():
        extra = (
            f"   loaded: {', '.join(loaded[name]) or 'none of ' + ', '.join(OPTIONAL)}"
            if name in loaded
            else ""
        )
        print(f"  {name:42s} {statistics.median(values):6.2f} s ({min(values):.2f}){extra}")
    for family in configs:
        run = statistics.median(seconds[f"trainer.py to first step ({family} arch)"])
        plain = statistics.median(seconds[f"plain script's imports ({family})"])
        print(f"  the trainer's own start-up beyond the plain imports ({family}): {run - plain:.2f} s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--first-step"]:  # the child: everything after it is trainer.py's command line
        first_step(sys.argv[2:])
    else:
        main()
