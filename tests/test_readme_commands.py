"""Every shell command README.md and the docs/ pages print works as printed, in the environment the
README sets up.

The pages are read in the order a reader meets them (README.md, then docs/*.md by name), and a command
printed on several pages runs once. Which text is a command (so that sections other people add are picked up without touching this file):
every line of a fenced block tagged bash/sh/shell/console, every line of an indented block whose first
word is a command word (`COMMAND_WORDS`), and every inline `code` span that starts with one. Each runs
from a copy of the project with `.venv/bin` (this interpreter's folder) first on PATH, as after
`source .venv/bin/activate`, and with the launch config `accelerate config default` writes, in tiny form:

- a training or `-test` launch of `trainer.py` (through python, accelerate launch or torchrun) runs for
  real with a few generic overrides (1 step, tiny data; `<run>` is the run an earlier printed command
  of the same YAML made); the stage-2 YAML then chains to the stage-1 run made just before;
- a command that makes data later commands read (`RUN_AS_PRINTED`) runs as printed, in page order;
- any other command runs with `--help` instead of its arguments: the program exists and imports.

A command fails the test on "command not found", an import error, a non-zero exit, or Accelerate's
"values were not passed" warning. Commands that cannot run here are in `SKIPPED`, each with its reason.
"""

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e  # every test here runs the trainer

COMMAND_WORDS = {
    "python", "python3", "accelerate", "torchrun", "tensorboard", "hf", "huggingface-cli", "make", "pip",
    "source", "comet", "srun", "sbatch", "bash",
}  # fmt: skip
SHELL_FENCES = {"bash", "sh", "shell", "console"}

# Commands that cannot run on this machine, by a regular expression on the command; each says why.
SKIPPED = {
    r"^make\b": "the set-up itself (builds .venv); this test runs in the environment it builds",
    r"^source \.venv/bin/activate$": "the activation: this test puts .venv/bin first on PATH, as it does",
    r"^python3 -m venv": "the set-up without make: creates a venv and installs from PyPI",
    r"\.venv/bin/python -m pytest": "the test suite itself",
    r"^accelerate config$": "interactive questionnaire",
    r"--multi_gpu": "needs GPUs",
    r"^srun |^#SBATCH|^export MASTER_ADDR|^#!": "SLURM, multi-node",
    r"X\.yml": "placeholder experiment; two CPU processes are tested by tests/test_distributed.py",
    r"^python bench/": "benchmarks (minutes each), not commands of the first hour",
}
# Commands that run as printed (seconds each), because a later command reads what they write.
RUN_AS_PRINTED = {r"^python scripts/make_sample_tifs\.py --out data/sample$"}
PROBLEMS = ("command not found", "No module named", "ImportError", "were not passed to `accelerate launch`")
TINY = [
    "train.max_train_steps=1", "train.validation_steps=1", "train.checkpointing_steps=1",
    "train.batch_size=2", "val.batch_size=2", "val.max_batches=1",
]  # fmt: skip


def _inline_spans(text: str) -> list[str]:
    outside_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    return [
        span
        for span in re.findall(r"`([^`\n]+)`", outside_blocks)
        if len(span.split()) > 1 and span.split()[0] in COMMAND_WORDS
    ]


def readme_commands(text: str) -> list[str]:
    """The shell commands of a README, in order, continuation lines joined, comments dropped."""
    commands = []
    for fence, body in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
        if fence in SHELL_FENCES:
            commands += _logical_lines(body.splitlines())
    without_fences = re.sub(r"```.*?```", "", text, flags=re.S)
    for block in re.findall(r"(?:^(?: {4}|\t).*\n?)+", without_fences, flags=re.M):
        lines = [line[4:] for line in block.splitlines() if line.strip()]
        if lines and lines[0].split()[0] in COMMAND_WORDS:
            commands += _logical_lines(lines)
    commands += _inline_spans(text)
    return [c for c in dict.fromkeys(commands)]


def _logical_lines(lines: list[str]) -> list[str]:
    joined, current = [], ""
    for line in lines:
        line = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else line
        current += line.strip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current:
            joined.append(current)
        current = ""
    return joined


def documented_pages(root: str) -> list[str]:
    """README.md, then every docs/*.md page by name: the order a reader follows the README's links."""
    return [
        "README.md",
        *sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "docs", "*.md"))),
    ]


def documented_commands(root: str) -> list[str]:
    """The commands of every page, in page order, each once."""
    commands = []
    for page in documented_pages(root):
        with open(os.path.join(root, page)) as f:
            commands += readme_commands(f.read())
    return list(dict.fromkeys(commands))


def runs_as_printed(command: str) -> bool:
    return any(re.search(pattern, command) for pattern in RUN_AS_PRINTED)


def runs_in_order(command: str) -> bool:
    """Trainer launches and data-making commands run one after another, in page order."""
    return _trainer_invocation(shlex.split(command)) is not None or runs_as_printed(command)


def skip_reason(command: str) -> str | None:
    for pattern, reason in SKIPPED.items():
        if re.search(pattern, command):
            return reason
    return None


def _trainer_invocation(words: list[str]) -> int | None:
    """Index of `trainer.py` when the command launches the trainer."""
    return words.index("trainer.py") if "trainer.py" in words else None


def tiny_form(command: str, runs: dict[str, str], project: str) -> list[str]:
    """The argv that runs `command` here: a tiny training or test, or the program's --help."""
    words = shlex.split(command)
    if runs_as_printed(command):
        return words
    at = _trainer_invocation(words)
    if at is None:
        if words[0] in {"python", "python3"}:
            program = words[:3] if words[1] == "-m" else words[:2]  # the script or module
        else:  # the program and its subcommands (`hf auth login`, `comet upload`)
            program = words[:1]
            for word in words[1:]:
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                program.append(word)
        return [*program, "--help"]
    args = words[at + 1 :]
    config = args[args.index("-opt") + 1]
    with open(os.path.join(project, config)) as f:
        opt = yaml.safe_load(f)
    tiny = [*TINY, "experiment_key=readme"]
    for phase, block in (opt.get("datasets") or {}).items():
        if isinstance(block, dict):
            tiny += [f"datasets.{phase}.{k}={v}" for k, v in (("size", 4), ("spp", 256)) if k in block]
    if "vae" in opt:  # stage 2: fewer sampling steps
        tiny += ["val.num_inference_steps=2", "val.num_samples=2"]
    if "-test" in args or any(a.startswith("experiment_key=") for a in args):
        # -test finds its run by the YAML's key; a printed key names a run a later command chains to
        tiny = [t for t in tiny if not t.startswith("experiment_key")]
    resolved = []
    for arg in args:
        if "<run>" in arg:
            if config not in runs:
                pytest.fail(f"docs: `{command}` needs a run of {config}, which no earlier command trains")
            arg = arg.replace("<run>", runs[config])
        resolved.append(arg)
    return [*words[: at + 1], *resolved, *tiny]


def _environment(home: str) -> dict:
    env = dict(os.environ)
    # What `source .venv/bin/activate` does: the environment's bin folder first on PATH.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = os.path.dirname(os.path.dirname(sys.executable))
    env["HF_HOME"] = home
    env["OMP_NUM_THREADS"] = "1"
    env.pop("PYTHONPATH", None)  # the README's commands must find the project from its root alone
    return env


def test_readme_lists_its_commands():
    commands = readme_commands(open(os.path.join(ROOT, "README.md")).read())
    assert any(c.startswith("accelerate launch trainer.py") for c in commands)
    assert "source .venv/bin/activate" in commands
    everywhere = documented_commands(ROOT)
    assert not [c for c in everywhere if c.startswith("huggingface-cli")], (
        "huggingface_hub 1.x+ has `hf auth login`"
    )
    assert "docs/running.md" in documented_pages(ROOT)
    assert "hf auth login" in everywhere and len(everywhere) > len(
        commands
    )  # the docs' commands are read too


def test_the_readme_links_every_docs_page():
    readme = open(os.path.join(ROOT, "README.md")).read()
    for page in documented_pages(ROOT)[1:]:
        assert f"]({page})" in readme, f"README.md does not link {page}"


def test_every_readme_command_works_as_printed(tmp_path):
    project = tmp_path / "project"
    local = {".git", ".venv", "experiments", "data", "gen"}  # a user's own runs and outputs stay behind

    def ignored(folder, names):
        return [n for n in names if n == "__pycache__" or (os.path.samefile(folder, ROOT) and n in local)]

    shutil.copytree(ROOT, project, ignore=ignored)
    env = _environment(str(tmp_path / "hf_home"))
    # The set-up's last step (Makefile): a default launch config, here in a private HF_HOME.
    subprocess.run(["accelerate", "config", "default"], env=env, check=True, capture_output=True)
    commands = [c for c in documented_commands(str(project)) if not skip_reason(c)]

    def run(command: str, argv: list[str]) -> str | None:
        done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        problems = [p for p in PROBLEMS if p in output]
        if done.returncode != 0 or problems:
            return (
                f"`{command}` (run as {' '.join(argv)}): exit {done.returncode}; {problems}\n{output[-1500:]}"
            )
        return None

    # `--help` forms are independent: they run in parallel with the trainer launches, which run in
    # page order (a -test needs the run trained before it, stage 2 the stage-1 run, the TIF VAE the sample).
    runs: dict[str, str] = {}
    helps = {}
    for command in commands:
        if not runs_in_order(command):
            helps.setdefault(tuple(tiny_form(command, runs, str(project))), command)
    with ThreadPoolExecutor(max_workers=3) as pool:
        pending = [pool.submit(run, command, list(argv)) for argv, command in helps.items()]
        failures = []
        launched = 0
        for command in commands:
            if not runs_in_order(command):
                continue
            argv = tiny_form(command, runs, str(project))
            failures.append(run(command, argv))
            if runs_as_printed(command):
                continue
            launched += 1
            if "-test" not in argv:
                config = argv[argv.index("-opt") + 1]
                key = next(a.split("=", 1)[1] for a in reversed(argv) if a.startswith("experiment_key="))
                runs[config] = os.path.join(
                    "experiments", yaml.safe_load(open(project / config))["name"], key
                )
        failures += [future.result() for future in pending]
    failures = [f for f in failures if f]
    assert not failures, "\n\n".join(failures)
    assert launched >= 4 and len(helps) >= 6
