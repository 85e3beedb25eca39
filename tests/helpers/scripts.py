"""Running the scripts in this process: generation on a tiny stage-2 run, the Hub push without a network,
plugins written into a test's folder."""

import os
import shutil
import textwrap

from tests.helpers.configs import ldm_config
from tests.helpers.runs import run_folder, run_trainer


def tiny_ldm_run(tmp_path, vae, name, condition, train=None, **changes):
    """A 2-step stage-2 run over the VAE weights folder `vae`; returns its final/ folder."""
    config = ldm_config(tmp_path, vae, name=name, condition=condition, **changes)
    if condition["type"] == "none":
        config["network"] = {**config["network"], "with_conditioning": False}
    config["train"].update({"max_train_steps": 2, "validation_steps": 2, **(train or {})})
    config["val"]["num_samples"] = 0
    assert run_trainer(config, tmp_path, name=f"{name}.yml") == 0
    return os.path.join(run_folder(config), "final")


def run_generate(*args) -> int:
    """`scripts/generate.py *args`; returns the exit status."""
    import scripts.generate as generate

    try:
        return generate.main([str(a) for a in args])
    except SystemExit as exit:  # an argument error, as argparse ends it
        return exit.code


def fake_hub(monkeypatch, tmp_path, fail_with=None):
    """Hub calls recorded (and the upload copied to tmp_path/uploaded) instead of sent."""
    from huggingface_hub import HfApi

    calls = []

    def fake_create_repo(self, repo_id, private=False, exist_ok=False, **kwargs):
        calls.append(("create", repo_id, private))
        if fail_with is not None:
            raise fail_with

    def fake_upload_folder(self, folder_path, repo_id, commit_message=None, **kwargs):
        shutil.copytree(folder_path, tmp_path / "uploaded")
        calls.append(("upload", repo_id, commit_message))
        return "https://example.invalid/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    return calls


def make_plugins(tmp_path, files: dict[str, str]):
    """An arch registry over `tmp_path/plugins`, holding `files` ({relative path: source})."""
    from utils.registry import Registry

    folder = tmp_path / "plugins"
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(textwrap.dedent(text))
    return Registry("plugins", "_arch.py", kind="arch", root=tmp_path)
