"""Check a checkpoint folder before resuming from it, naming the first file that cannot be used.

Accelerate's `load_state` treats a missing or unreadable `random_states_<i>.pkl` as a log line and goes
on, so the resumed run draws different random numbers from an uninterrupted one, silently; a 0-byte
`optimizer.bin` or a truncated `model.safetensors` fails deep inside torch with a message that names no
file. Here every file is checked first: JSON parses, safetensors headers open, torch files are complete
zip archives (without unpickling anything), and the random states exist unless `path.resume_strict`
is false.
"""

import json
import os
import zipfile

from utils.errors import ConfigError

RNG_STATE_PREFIX = "random_states"


def _problem(path: str) -> str | None:
    """Why the file at `path` cannot be loaded, or None when it looks sound."""
    if os.path.getsize(path) == 0:
        return "is empty (0 bytes)"
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
        except (ValueError, UnicodeDecodeError) as error:
            return f"is not valid JSON ({str(error).splitlines()[0]})"
    elif path.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(path, "pt") as handle:
                handle.keys()
        except Exception as error:
            return f"is not a readable safetensors file ({str(error).splitlines()[0]})"
    elif path.endswith((".bin", ".pkl", ".pt", ".pth")):
        # torch.save writes a zip archive; a truncated one has no central directory.
        if not zipfile.is_zipfile(path):
            return "is truncated or not a file written by torch.save"
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError) as error:
            return f"is corrupt ({error})"
        if bad is not None:
            return f"is corrupt (its entry '{bad}' fails its checksum)"
    return None


# Written by every checkpoint: the loop state, and Accelerate's first optimizer and first model.
REQUIRED = (("trainer_state.json",), ("optimizer.bin",), ("model.safetensors", "pytorch_model.bin"))


def check_resumable(folder: str, strict: bool = True, num_processes: int = 1) -> None:
    """Raise a ConfigError naming the first file of `folder` that a resume could not load."""
    for names in REQUIRED:
        if not any(os.path.isfile(os.path.join(folder, name)) for name in names):
            raise ConfigError(
                f"Cannot resume from '{folder}': it has no '{names[0]}', which every checkpoint holds; choose an "
                "earlier checkpoint with 'path.resume_from_checkpoint: checkpoint-N'."
            )
    for dirpath, _, files in os.walk(folder):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            try:
                problem = _problem(path)
            except OSError as error:
                problem = f"cannot be read ({error.strerror or error})"
            if problem:
                raise ConfigError(
                    f"Cannot resume from '{folder}': '{path}' {problem}; choose an earlier checkpoint with "
                    "'path.resume_from_checkpoint: checkpoint-N'."
                )
    if not strict:
        return
    missing = [
        f"{RNG_STATE_PREFIX}_{i}.pkl"
        for i in range(num_processes)
        if not os.path.isfile(os.path.join(folder, f"{RNG_STATE_PREFIX}_{i}.pkl"))
    ]
    if missing:
        raise ConfigError(
            f"Cannot resume exactly from '{folder}': it has no {', '.join(missing)}, so the random numbers would "
            "differ from an uninterrupted run; set 'path.resume_strict: false' to resume anyway."
        )


def check_resume_before_setup(opt, run_dir: str, num_processes: int = 1) -> None:
    """`check_resumable` on the checkpoint `path.resume_from_checkpoint` names, before set-up rewrites the
    run's config.yml: a resume that cannot work leaves the run folder exactly as it was."""
    from engine.checkpoints.store import resolve_checkpoint

    path = opt["path"]
    setting = path.get("resume_from_checkpoint")
    if not setting:
        return
    folder = resolve_checkpoint(setting, path.get("resume_from_path") or run_dir)
    if folder is not None:
        check_resumable(folder, path.get("resume_strict", True), num_processes)
