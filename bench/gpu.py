"""Steps per second and peak memory of every shipped experiment, through the trainer and in a plain loop,
under each precision and memory setting (not a test). Written for a GPU machine; `--smoke` runs a tiny
version on the CPU in seconds (tests/test_bench_gpu.py runs it).

    python bench/gpu.py [--steps 20] [--warmup 3] [--rounds 2] [--only YML ...] [--settings NAME ...]
                        [--out gpu_bench]            # writes gpu_bench.json and gpu_bench.md
    python bench/gpu.py --smoke --out /tmp/smoke     # CPU: 2 experiments, 2 timed steps each

A setting is a precision (fp32, bf16, fp16) and at most one option: `compile` (torch.compile), `8bit_adam`
(bitsandbytes' AdamW8bit) or `grad_ckpt` (gradient checkpointing), e.g. `bf16+grad_ckpt`. The trainer
gets them as overrides of the shipped YAML (`mixed_precision`, `train.compile`,
`train.optim.use_8bit_adam`, `network.gradient_checkpointing`); the plain loop applies the same by
hand (torch.autocast and a GradScaler for fp16, torch.compile of the network, AdamW8bit, the arch built
with `gradient_checkpointing: true`). A setting that cannot run is skipped with a printed reason: fp16
and 8-bit Adam need CUDA, 8-bit Adam needs bitsandbytes, and checkpointing needs an arch with the key.

The trainer runs in this process (`trainer.main` on the shipped YAML with key=value overrides: batch size
and network as shipped, data sized to the steps taken, no validation, no checkpoints, no trackers); a
stamp after each optimizer update times it, and the run is ended after the timed steps. The plain loop
is what a user would write around the same arch class (`define_network` of the same block) and the same
dataset class:

- autoencoders (VAE_model, MultiTask_model): the L1 reconstruction plus the KL or VQ term, a mean square
  on any other head; a GAN config's discriminator is left out
- LDM_model: the frozen VAE's latents (encoded once up front when the config caches them), DDPM noise,
  an MSE on the UNet's prediction; the context is a zero token of the cross-attention width and
  concatenated condition channels are zeros
- Denoise_model: the MSE of the denoised image
- ControlNet and PSF models: none (their steps need a frozen UNet or ray-traced targets); said so

Each loop reads the loss back every step (as a progress bar does), and on CUDA both synchronise at each
stamp. The trainer's step also does what the shipped config turns on and the plain loops leave out (the
EMA of LDM/exp.yml and LDM/tif.yml, a GAN's discriminator), so its ratio to the plain loop includes them.

Step time: the median of the intervals between consecutive stamps after `--warmup` updates (compilation,
cuDNN autotuning), over `--rounds` rounds in which the settings and loops alternate. Peak memory over the
timed steps: on CUDA `torch.cuda.max_memory_allocated` (reset after the warm-up); on the CPU the peak of
the resident set sampled every 2 ms by a thread (psutil).

Stage-2 experiments chain to a stage-1 run made first as bench/fingerprint.py makes it (two steps, tiny
data, the shipped network), and the TIF experiments read a sample written by scripts/make_sample_tifs.py.
"""

import argparse
import contextlib
import inspect
import io
import json
import logging
import math
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import fingerprint  # noqa: E402
from bench.fingerprint import Experiment  # noqa: E402

# Every trainable shipped experiment, dependencies first: bench/fingerprint.py's list and the 3D chains.
# LDM/pti_ldm_vae.yml is left out: it continues PTI-LDM-VAE's own .pth files, which no run here makes.
EXPERIMENTS = [
    *fingerprint.EXPERIMENTS,
    Experiment("checkpoints/VAE/vq3d.yml"),
    Experiment("checkpoints/VAE/3d_psf.yml"),
    Experiment(
        "checkpoints/LDM/3d.yml",
        needs=("checkpoints/VAE/3d_psf.yml",),
        extra=["vae.pretrained={run:checkpoints/VAE/3d_psf.yml}/final/net_g"],
    ),
    Experiment("checkpoints/ControlNet/3d_vae.yml"),
    Experiment(
        "checkpoints/ControlNet/3d_ldm.yml",
        needs=("checkpoints/ControlNet/3d_vae.yml",),
        extra=["vae.pretrained={run:checkpoints/ControlNet/3d_vae.yml}/final/net_g"],
    ),
    Experiment(
        "checkpoints/ControlNet/3d.yml",
        needs=("checkpoints/ControlNet/3d_ldm.yml",),
        extra=["ldm.pretrained={run:checkpoints/ControlNet/3d_ldm.yml}/final"],
    ),
]
NOT_MEASURED = {
    "checkpoints/LDM/pti_ldm_vae.yml": "continues PTI-LDM-VAE's .pth files, which no run here makes"
}
SMOKE_EXPERIMENTS = ["checkpoints/example/denoise.yml", "checkpoints/VAE/exp.yml"]
PRECISIONS = ("fp32", "bf16", "fp16")
OPTIONS = (None, "compile", "8bit_adam", "grad_ckpt")
SETTINGS = [p if o is None else f"{p}+{o}" for p in PRECISIONS for o in OPTIONS]
SMOKE_SETTINGS = [
    "fp32",
    "bf16",
    "fp16",
    "fp32+compile",
    "fp32+8bit_adam",
    "fp32+grad_ckpt",
]  # one change each
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Measured(BaseException):
    """Ends a trainer run after its timed steps; a BaseException, so that no `except Exception` of the
    engine takes it for a failure (the run still closes its folder and trackers on the way out)."""


class PeakMemory:
    """MiB at the peak: CUDA's max_memory_allocated since `start`, or the CPU's resident set sampled."""

    def __init__(self, device: str):
        self.device, self.peak, self.thread, self.running = device, 0, None, False

    def start(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        process, self.running = psutil.Process(), True

        def sample():
            while self.running:
                self.peak = max(self.peak, process.memory_info().rss)
                time.sleep(0.002)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()

    def stop(self) -> float:
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        self.running = False
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        return self.peak / 2**20


class Stamps:
    """Times the updates of one loop: warm-up, then `steps` intervals, then `Measured` (or done)."""

    def __init__(self, device: str, warmup: int, steps: int):
        self.device, self.warmup, self.steps = device, warmup, steps
        self.times, self.memory, self.peak_mib = [], PeakMemory(device), None

    def stamp(self) -> bool:
        """Record an update; True once the timed steps are done."""
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        if len(self.times) == self.warmup:
            self.memory.start()
        if len(self.times) == self.warmup + self.steps:
            self.peak_mib = self.memory.stop()
            return True
        return False

    def intervals(self) -> list[float]:
        timed = self.times[self.warmup - 1 :]
        return [b - a for a, b in zip(timed, timed[1:])]


def arch_keys(network_type: str) -> set[str]:
    from models.archs import find_arch

    return set(inspect.signature(find_arch(network_type)[0].__init__).parameters)


def skip_reason(setting: str, loop: str, opt, device: str, smoke: bool) -> str | None:
    """Why `setting` cannot run in `loop` ('trainer' or 'plain') here, or None."""
    precision, _, option = setting.partition("+")
    if option == "compile" and smoke:
        return "compile is left out of --smoke (inductor compiles for minutes on a CPU)"
    if precision == "fp16" and device != "cuda":
        return "fp16 needs CUDA (its grad scaler)"
    if option == "8bit_adam":
        if device != "cuda":
            return "8-bit Adam needs CUDA"
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            return "8-bit Adam needs bitsandbytes, which is not installed"
    if option == "grad_ckpt" and "gradient_checkpointing" not in arch_keys(opt["network"]["type"]):
        return f"the arch {opt['network']['type']} has no network.gradient_checkpointing"
    if loop == "plain" and plain_step_builder(opt) is None:
        return f"no plain loop is written for {opt['model_type']} (its step needs a frozen UNet or ray-traced targets)"
    return None


# ----------------------------------------------------------------------------- the trainer


def trainer_run(argv: list[str], device: str, warmup: int, steps: int) -> tuple[list[float], float]:
    """`trainer.main(argv)` in this process, ended after the timed steps: (step intervals, peak MiB)."""
    import engine.loop
    import trainer
    from tests.helpers.runs import reset_accelerate

    stamps = Stamps(device, warmup, steps)
    advance = engine.loop.advance_schedules

    def stamped(*args, **kwargs):  # the loop calls it once after each optimizer update
        advance(*args, **kwargs)
        if stamps.stamp():
            raise Measured

    engine.loop.advance_schedules = stamped
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            status = trainer.main(argv)
        raise RuntimeError(
            f"the run ended (status {status}) before its timed steps: {output.getvalue()[-2000:]}"
        )
    except Measured:
        return stamps.intervals(), stamps.peak_mib
    finally:
        stamps.memory.stop()  # a run that failed mid-way leaves no sampling thread behind
        engine.loop.advance_schedules = advance
        reset_accelerate()
        for handler in list(logging.getLogger("trainer").handlers):
            if isinstance(handler, logging.FileHandler):
                logging.getLogger("trainer").removeHandler(handler)
                handler.close()


# ----------------------------------------------------------------------------- the plain loops


def plain_step_builder(opt):
    """The function that builds a plain step for this experiment's model type, or None."""
    return {
        "Denoise_model": denoise_step,
        "VAE_model": autoencoder_step,
        "MultiTask_model": autoencoder_step,
        "LDM_model": latent_diffusion_step,
    }.get(opt["model_type"])


def denoise_step(opt, net, device):
    def loss(batch):
        return torch.nn.functional.mse_loss(net(batch["cond"].to(device)), batch["gt"].to(device))

    return loss


def autoencoder_step(opt, net, device):
    key = opt["val"]["gt_key"]
    kl_weight = opt["train"].get("kl_weight", 1e-6)

    def loss(batch):
        x = batch[key].to(device)
        out = net(x)
        total = torch.nn.functional.l1_loss(out.reconstruction, x)
        if getattr(out, "latent_dist", None) is not None:
            total = total + kl_weight * out.latent_dist.kl().sum() / len(x)
        if getattr(out, "quant_loss", None) is not None:
            total = total + out.quant_loss
        for head in (getattr(out, "heads", None) or {}).values():
            if head is not out.reconstruction:
                total = total + head.float().square().mean()
        return total

    return loss


def latent_diffusion_step(opt, net, device):
    """The UNet's step on the frozen VAE's latents (`loss.latents` encodes a batch, for a cache)."""
    from diffusers import DDPMScheduler

    from models.ldm.frozen_vae import encode_latents, load_frozen_vae

    vae, _ = load_frozen_vae(opt["vae"]["pretrained"])
    vae.to(device)
    key = opt["val"]["gt_key"]
    timesteps = opt["diffusion"]["num_train_timesteps"]
    noise_scheduler = DDPMScheduler(num_train_timesteps=timesteps)
    config = net.config
    context_shape = (1, config.cross_attention_dim) if config.with_conditioning else None

    def latents(batch):
        with torch.no_grad():
            return {"latent": encode_latents(vae, batch[key].to(device))}

    def loss(batch):
        z = (batch if "latent" in batch else latents(batch))["latent"]
        noise = torch.randn_like(z)
        t = torch.randint(0, timesteps, (len(z),), device=device)
        context = None if context_shape is None else torch.zeros(len(z), *context_shape, device=device)
        x = noise_scheduler.add_noise(z, noise, t)
        if config.in_channels > x.shape[1]:  # concatenated conditioning: the condition's channels
            x = torch.cat([x, x.new_zeros(len(x), config.in_channels - x.shape[1], *x.shape[2:])], 1)
        return torch.nn.functional.mse_loss(net(x, t, context), noise)

    loss.latents = latents
    return loss


def plain_run(opt, setting: str, device: str, warmup: int, steps: int, root: Path):
    """A hand-written loop over the experiment's arch and dataset classes under `setting`:
    (step intervals, peak MiB)."""
    from dataset import create_dataset, find_dataset_class
    from models.archs import define_network

    precision, _, option = setting.partition("+")
    torch.manual_seed(opt["seed"])
    block = dict(opt["network"])
    if option == "grad_ckpt":
        block["gradient_checkpointing"] = True
    net = define_network(block).to(device).train()
    train, data = opt["train"], {**opt["datasets"]["train"].to_dict(), "phase": "train"}
    if "split_file" in getattr(find_dataset_class(data["type"]), "config_keys", ()):
        data["split_file"] = str(root / f"plain_split_{data['type']}.json")
    loader = torch.utils.data.DataLoader(
        create_dataset(data),
        batch_size=data.get("batch_size") or train["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=data.get("num_workers", 0),
    )
    compute_loss = plain_step_builder(opt)(opt, torch.compile(net) if option == "compile" else net, device)

    def batches():
        while True:
            yield from loader

    source = batches()
    if train.get("cache_latents"):  # as the trainer does: the latents encoded once, before the steps
        source = iter([compute_loss.latents(next(source)) for _ in range(warmup + steps)])
    optim = train["optim"]
    kwargs = dict(lr=optim["learning_rate"], betas=(optim["adam_beta1"], optim["adam_beta2"]),
                  weight_decay=optim["adam_weight_decay"], eps=optim["adam_epsilon"])  # fmt: skip
    if option == "8bit_adam":
        import bitsandbytes as bnb

        optimizer = bnb.optim.AdamW8bit(net.parameters(), **kwargs)
    else:
        optimizer = torch.optim.AdamW(net.parameters(), **kwargs)
    scaler = torch.amp.GradScaler(device) if precision == "fp16" else None
    stamps = Stamps(device, warmup, steps)
    try:
        return plain_steps(source, compute_loss, optimizer, scaler, precision, device, stamps)
    finally:
        stamps.memory.stop()  # a loop that failed mid-way leaves no sampling thread behind


def plain_steps(source, compute_loss, optimizer, scaler, precision: str, device: str, stamps: Stamps):
    """The loop itself, as a user writes it: autocast forward, (scaled) backward, step, zero_grad."""
    for batch in source:
        with torch.autocast(device, dtype=AUTOCAST[precision], enabled=AUTOCAST[precision] is not None):
            loss = compute_loss(batch)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # what a progress bar reads each step
        if stamps.stamp():
            break
    return stamps.intervals(), stamps.peak_mib


# ----------------------------------------------------------------------------- one experiment


def trainer_argv(experiment: Experiment, root: Path, setting: str, args, key: str) -> list[str]:
    """`trainer.py` arguments of one timed run of the shipped YAML under `setting`."""
    opt = fingerprint.load_yaml(REPO, experiment.config)
    taken = args.warmup + args.steps
    if args.smoke:
        extra = fingerprint.overrides(REPO, root, experiment)  # its tiny data, steps and extras
    else:
        extra = [f"path.root={root}", *placeholders(experiment, root, opt)]
        batch = opt["train"]["batch_size"]
        for phase, data in (opt.get("datasets") or {}).items():
            if isinstance(data, dict) and "size" in data:  # generated data: only what the steps read
                extra.append(f"datasets.{phase}.size={batch * (taken + 2) if phase == 'train' else batch}")
    precision, _, option = setting.partition("+")
    extra += [
        f"train.max_train_steps={taken + 5}", "train.validation_steps=1000000",
        "train.checkpointing_steps=1000000", "report_to=none", f"experiment_key={key}",
        f"mixed_precision={MIXED_PRECISION[precision]}",
    ]  # fmt: skip
    extra += {
        "compile": ["train.compile=true"],
        "8bit_adam": ["train.optim.use_8bit_adam=true"],
        "grad_ckpt": ["network.gradient_checkpointing=true"],
    }.get(option, [])
    return ["-opt", str(REPO / experiment.config), *extra]


def placeholders(experiment: Experiment, root: Path, opt: dict) -> list[str]:
    """The experiment's overrides that name the runs it chains to or the sample TIFs, filled in as
    bench/fingerprint.py fills them (its other extras tune fingerprint's tiny runs, not a timing)."""
    phases = [p for p, block in (opt.get("datasets") or {}).items() if isinstance(block, dict)]

    def fill(text: str, phase: str = "") -> str:
        text = re.sub(r"\{run:([^}]+)\}", lambda m: str(fingerprint.run_folder(REPO, root, m.group(1))), text)
        return text.replace("{tifs}", str(root / fingerprint.TIFS)).replace("{phase}", phase)

    filled = []
    for arg in experiment.extra:
        if "{run:" in arg or "{tifs}" in arg:
            filled += [fill(arg, p) for p in phases] if "{phase}" in arg else [fill(arg)]
    return filled


def measure_experiment(experiment: Experiment, root: Path, settings: list[str], args, device: str):
    """Rows of one experiment: each setting in both loops, rounds alternating; and the skipped ones."""
    import trainer
    from tests.helpers.runs import reset_accelerate

    base = trainer_argv(experiment, root, "fp32", args, "check")
    opt, _ = trainer.load_config(base[1], base[2:])
    reset_accelerate()
    runs, skipped = {}, []
    for setting in settings:
        for loop in ("trainer", "plain"):
            why = skip_reason(setting, loop, opt, device, args.smoke)
            if why:
                skipped.append(
                    {"experiment": experiment.config, "loop": loop, "setting": setting, "why": why}
                )
            else:
                runs[(loop, setting)] = {"intervals": [], "peak_mib": 0.0, "error": None}
    for round_index in range(args.rounds):
        for (loop, setting), run in runs.items():
            if run["error"]:
                continue
            try:
                if loop == "trainer":
                    key = f"{re.sub(r'[^A-Za-z0-9]', '_', setting)}_{round_index}"
                    argv = trainer_argv(experiment, root, setting, args, key)
                    intervals, peak = trainer_run(argv, device, args.warmup, args.steps)
                else:
                    intervals, peak = plain_run(opt, setting, device, args.warmup, args.steps, root)
            except Exception as error:  # one failing setting (out of memory) is a row
                run["error"] = " ".join(str(error).split())[:300]
                continue
            finally:
                if device == "cuda":
                    torch.cuda.empty_cache()
                if "compile" in setting:  # the next compiled run starts from a clean cache
                    torch._dynamo.reset()
            run["intervals"] += intervals
            run["peak_mib"] = max(run["peak_mib"], peak)
    rows = []
    for (loop, setting), run in runs.items():
        row = {"experiment": experiment.config, "loop": loop, "setting": setting}
        if run["error"]:
            row["error"] = run["error"]
        else:
            median = statistics.median(run["intervals"])
            row.update(steps_per_s=1 / median, peak_mib=run["peak_mib"], timed_steps=len(run["intervals"]))
        rows.append(row)
    return rows, skipped


def prepare(experiments: list[Experiment], root: Path, args) -> None:
    """The stage-1 runs the stage-2 experiments chain to, and the sample TIFs, as fingerprint.py makes them
    (on the CPU, two steps)."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if any(e.tifs for e in experiments):
        size = "64" if args.smoke else "256"  # the shipped patch sizes fit 256x256 images
        tif_args = ["--patients", "4", "--slices", "2", "--size", size]
        script = [
            sys.executable,
            "scripts/make_sample_tifs.py",
            "--out",
            str(root / fingerprint.TIFS),
            *tif_args,
        ]
        fingerprint.launch(script, REPO, logs / "make_sample_tifs.log")
    needed = {need for e in experiments for need in e.needs}
    for experiment in EXPERIMENTS:  # dependencies first
        if experiment.config in needed:
            argv = [sys.executable, "trainer.py", "-opt", experiment.config]
            argv += fingerprint.overrides(REPO, root, experiment)
            print(f"preparing {experiment.config} (two steps, for the stage-2 runs)", flush=True)
            fingerprint.launch(argv, REPO, logs / (experiment.config.replace("/", "_") + ".log"))


def with_needs(selected: list[str]) -> list[Experiment]:
    wanted = set(selected)
    for experiment in reversed(EXPERIMENTS):
        if experiment.config in wanted:
            wanted |= set(experiment.needs)
    return [e for e in EXPERIMENTS if e.config in wanted]


# ----------------------------------------------------------------------------- report


def markdown(result: dict) -> str:
    lines = [
        f"Device: {result['device']}; torch {result['torch']}; {result['timed_steps']} timed steps after "
        f"{result['warmup']} warm-up updates, {result['rounds']} round(s); load average {result['load']}.",
        "",
        "| experiment | loop | setting | steps/s | peak memory (MiB) | trainer / plain speed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    speed = {(r["experiment"], r["loop"], r["setting"]): r.get("steps_per_s") for r in result["rows"]}
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['experiment']} | {r['loop']} | {r['setting']} | failed: {r['error']} | | |")
            continue
        plain = speed.get((r["experiment"], "plain", r["setting"]))
        ratio = f"{r['steps_per_s'] / plain:.2f}" if r["loop"] == "trainer" and plain else ""
        lines.append(
            f"| {r['experiment']} | {r['loop']} | {r['setting']} | {r['steps_per_s']:.2f} | "
            f"{r['peak_mib']:.0f} | {ratio} |"
        )
    if result["skipped"]:
        lines += ["", "Skipped:", ""]
        lines += [f"- {s['experiment']} {s['loop']} {s['setting']}: {s['why']}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, help="timed updates per run (default 20; --smoke: 2)")
    parser.add_argument("--warmup", type=int, help="updates before the timing starts (default 3; --smoke: 1)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of every run (default 2; --smoke: 1)"
    )
    parser.add_argument("--only", nargs="+", metavar="YML", help="these shipped experiments only")
    parser.add_argument(
        "--settings", nargs="+", choices=SETTINGS, metavar="NAME", help=f"of {', '.join(SETTINGS)}"
    )
    parser.add_argument("--out", default="gpu_bench", help="writes OUT.json and OUT.md (default: gpu_bench)")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny data, 2 experiments, 2 timed steps")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.smoke else 20)
    args.warmup = args.warmup or (1 if args.smoke else 3)
    args.rounds = args.rounds or (1 if args.smoke else 2)
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    known = {e.config for e in EXPERIMENTS}
    selected = args.only or (SMOKE_EXPERIMENTS if args.smoke else [e.config for e in EXPERIMENTS])
    unknown = sorted(set(selected) - known)
    if unknown:
        parser.error(
            f"not a trainable shipped experiment: {', '.join(unknown)} (of {', '.join(sorted(known))})"
        )
    settings = args.settings or (SMOKE_SETTINGS if args.smoke else SETTINGS)
    if args.smoke:
        torch.set_num_threads(1)  # the suite's other worker shares the cores
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "timed_steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "rows": [],
        "skipped": [
            {"experiment": c, "loop": "both", "setting": "all", "why": w} for c, w in NOT_MEASURED.items()
        ],
    }
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as tmp:
        root = Path(tmp)
        prepare(with_needs(selected), root, args)
        for experiment in [e for e in EXPERIMENTS if e.config in selected]:
            print(f"{experiment.config}: {len(settings)} settings x 2 loops", flush=True)
            rows, skipped = measure_experiment(experiment, root, settings, args, device)
            result["rows"] += rows
            result["skipped"] += skipped
            for row in rows:
                figure = row.get("error") or f"{row['steps_per_s']:.2f} steps/s, {row['peak_mib']:.0f} MiB"
                print(f"  {row['loop']:7s} {row['setting']:15s} {figure}", flush=True)
    result["load"] += " -> " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))
    failed = [r for r in result["rows"] if "error" in r or not math.isfinite(r["steps_per_s"])]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
