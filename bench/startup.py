"""Start-up: how long a run takes from a fresh interpreter to its first optimizer step (not a test).

Every measurement is a fresh subprocess, repeated --repeats times, the kinds interleaved (a, b, c, d, a,
b, ...) so that the machine's drift hits all alike; prints the medians of the wall time (and its
minimum) and of the child's CPU time (user + system, which a shared machine disturbs less):

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

With `--baseline DIR` (another checkout, e.g. `git archive <commit> | tar -x -C DIR`) that checkout's
trainer.py runs interleaved with this one's, on the same configs: a change's effect on start-up, measured
side by side.

    python bench/startup.py [--repeats 5] [--baseline DIR] [--arch diffusers monai]
"""

import argparse
import copy
import json
import os
import resource
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


def first_step(repo: Path, trainer_argv: list[str]) -> None:
    """Run in the child: `repo`'s trainer.py as `__main__`, ended by the first optimizer step."""
    import runpy

    # The run imports torch first thing anyway; the hook needs it before the run starts.
    from torch.optim.optimizer import register_optimizer_step_post_hook

    def stamp(optimizer, args, kwargs):
        try:
            from utils.cli.imports import is_deferred  # a placeholder in sys.modules is not an import
        except ImportError:  # a checkout that defers nothing

            def is_deferred(module):
                return False

        loaded = [n for n in OPTIONAL if n in sys.modules and not is_deferred(sys.modules[n])]
        print(json.dumps({"first_step": time.monotonic(), "loaded": loaded}), flush=True)
        os._exit(0)  # the rest of the run is not start-up

    register_optimizer_step_post_hook(stamp)
    sys.path[0] = str(repo)
    sys.argv = ["trainer.py", *trainer_argv]
    runpy.run_path(str(repo / "trainer.py"), run_name="__main__")
    raise SystemExit("the run ended without an optimizer step")


def tiny_configs(folder: Path) -> dict[str, Path]:
    """{arch family: YAML path}: the suite's tiny VAE run, with diffusers' and with MONAI's network."""
    sys.path.insert(0, str(REPO))
    from tests.helpers.configs import TINY_VAE, monai_kl
    from tests.helpers.runs import write_config

    paths = {}
    for family in ("diffusers", "monai"):
        config = copy.deepcopy(TINY_VAE)
        config["path"]["root"] = str(folder / "runs")
        config["name"] = f"startup_{family}"
        if family == "monai":
            config["network"] = monai_kl(2)
        paths[family] = Path(write_config(config, folder / f"{family}.yml"))
    return paths


def environment() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    return env


def timed(argv: list[str], cwd: Path) -> tuple[float, float, list[str] | None]:
    """(wall seconds, CPU seconds of the child) from the launch to the process's end, or to its first
    optimizer step when it reports one; with the optional libraries loaded by then."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True)
    end = time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited with {done.returncode}:\n{done.stderr[-3000:]}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith('{"first_step"'):
            report = json.loads(line)
            return report["first_step"] - start, cpu, report["loaded"]
    return end - start, cpu, None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="launches of each kind (default: 5)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (git archive of a commit) whose trainer.py runs interleaved with this one's",
    )
    parser.add_argument(
        "--arch",
        nargs="+",
        choices=("diffusers", "monai"),
        default=["diffusers", "monai"],
        help="(default: both)",
    )
    args = parser.parse_args(argv)
    python, script = sys.executable, str(Path(__file__).resolve())
    checkouts = {"": REPO, **({", baseline": args.baseline.resolve()} if args.baseline else {})}
    with tempfile.TemporaryDirectory() as tmp:
        configs = tiny_configs(Path(tmp))
        kinds = {"python -c 'import torch'": ([python, "-c", "import torch"], REPO)}
        for family, path in [(f, configs[f]) for f in args.arch]:
            kinds[f"plain script's imports ({family})"] = ([python, "-c", PLAIN_IMPORTS[family]], REPO)
            for label, repo in checkouts.items():
                child = [python, script, "--first-step", str(repo), "-opt", str(path)]
                kinds[f"trainer.py to first step ({family} arch{label})"] = (child, repo)
        wall, cpu, loaded = {name: [] for name in kinds}, {name: [] for name in kinds}, {}
        for repeat in range(args.repeats):
            for index, (name, (command, cwd)) in enumerate(kinds.items()):
                if "--first-step" in command:  # the ended runs leave their folders: one key each
                    command = [*command, f"experiment_key=r{repeat}k{index}"]
                took, used, modules = timed(command, cwd)
                wall[name].append(took)
                cpu[name].append(used)
                if modules is not None:
                    loaded[name] = modules
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    print(
        f"start-up, median (min) of {args.repeats} fresh processes each; load average {os.getloadavg()[0]:.1f}:"
    )
    print(f"  {'':52s} {'wall':>8s} {'(min)':>7s} {'CPU s':>7s}")
    for name in kinds:
        extra = (
            f"   loaded: {', '.join(loaded[name]) or 'none of ' + ', '.join(OPTIONAL)}"
            if name in loaded
            else ""
        )
        print(
            f"  {name:52s} {statistics.median(wall[name]):7.2f}s ({min(wall[name]):5.2f}) "
            f"{statistics.median(cpu[name]):7.2f}{extra}"
        )
    for family in args.arch:
        for label in checkouts:
            run = f"trainer.py to first step ({family} arch{label})"
            plain = f"plain script's imports ({family})"
            print(
                f"  {run}: {statistics.median(wall[run]) - statistics.median(wall[plain]):+.2f} s wall, "
                f"{statistics.median(cpu[run]) - statistics.median(cpu[plain]):+.2f} s CPU beyond the plain imports"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--first-step"]:  # the child: a checkout, then trainer.py's command line
        first_step(Path(sys.argv[2]), sys.argv[3:])
    else:
        main()
