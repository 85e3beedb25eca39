"""comet_ml's offline archive and the Hub push, each through a real tiny run."""

import glob
import json
import os
import shutil
import zipfile

import pytest
import torch

from tests.conftest import run_folder, run_trainer
from tests.helpers.scripts import fake_hub

pytestmark = pytest.mark.e2e  # every test here runs the trainer


def test_comet_ml_without_key_writes_an_offline_archive(tiny_config, tmp_path, monkeypatch, caplog):
    pytest.importorskip("comet_ml")
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    monkeypatch.setenv("COMET_CONFIG", str(tmp_path / "no.comet.config"))
    tiny_config["report_to"] = ["tensorboard", "comet_ml"]
    tiny_config["train"].update(max_train_steps=3, checkpointing_steps=3, validation_steps=3)
    with caplog.at_level("INFO", logger="trainer"):
        assert run_trainer(tiny_config, tmp_path) == 0
    assert any("logging offline" in r.message for r in caplog.records)
    archives = glob.glob(os.path.join(run_folder(tiny_config), "comet_ml", "*.zip"))
    assert len(archives) == 1
    with zipfile.ZipFile(archives[0]) as archive:
        text = "".join(
            archive.read(n).decode("utf-8", "ignore") for n in archive.namelist() if n.endswith(".json")
        )
    assert "train/all" in text and "val_psnr" in text


def test_push_to_hub_uploads_a_loadable_arch_and_card(tiny_config, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    uploads = {}

    def fake_create_repo(self, repo_id, private=False, exist_ok=False, **kwargs):
        uploads["repo"] = (repo_id, private)

    def fake_upload_folder(self, folder_path, repo_id, commit_message=None, **kwargs):
        # What would have gone over the wire, kept for inspection.
        shutil.copytree(folder_path, tmp_path / "uploaded")
        uploads["message"] = commit_message
        return "https://example.invalid/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    tiny_config.update(push_to_hub=True, hub_model_id="someone/tiny-denoiser")
    tiny_config["train"].update(max_train_steps=2, checkpointing_steps=2, validation_steps=2)
    assert run_trainer(tiny_config, tmp_path) == 0

    assert uploads["repo"] == ("someone/tiny-denoiser", True)
    uploaded = tmp_path / "uploaded"
    from models.archs import find_arch

    _, arch_cls = find_arch("TinyDenoiser")
    net = arch_cls.from_pretrained(uploaded / "net_g")
    x = torch.rand(1, 1, 16, 16)
    trained = arch_cls.from_pretrained(os.path.join(run_folder(tiny_config), "final", "net_g"))
    assert torch.equal(net(x), trained(x))
    card = (uploaded / "README.md").read_text()
    assert "val_psnr" in card and "TinyDenoiser" in card and "model_type: Denoise_model" in card
    assert json.loads((uploaded / "metrics.json").read_text())["val_psnr"] > 0
    for path in [
        *uploaded.rglob("*"),
        *glob.glob(os.path.join(run_folder(tiny_config), "**", "*"), recursive=True),
    ]:
        if os.path.isfile(path) and not str(path).endswith((".safetensors", ".bin", ".pkl", ".png")):
            assert "hf_secret_token_value" not in open(path, errors="ignore").read(), path


def test_comet_ml_offline_makes_no_network_attempt_and_archives_the_images(
    tiny_config, tmp_path, monkeypatch
):
    comet_ml = pytest.importorskip("comet_ml")
    import socket

    attempts = []

    def refuse_connect(self, address):
        attempts.append(address)
        raise OSError("no network in this test")

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    monkeypatch.setenv("COMET_CONFIG", str(tmp_path / "no.comet.config"))
    # comet_ml sets up its error reporter at import on a random half of the imports; make it happen.
    comet_ml.error_tracking.setup_sentry_error_tracker()
    tiny_config["report_to"] = ["tensorboard", "comet_ml"]
    tiny_config["train"].update(max_train_steps=3, checkpointing_steps=3, validation_steps=3)
    assert run_trainer(tiny_config, tmp_path) == 0
    assert not comet_ml.error_tracking.initialized()
    assert attempts == []
    (archive_path,) = glob.glob(os.path.join(run_folder(tiny_config), "comet_ml", "*.zip"))
    with zipfile.ZipFile(archive_path) as archive:
        pngs = [n for n in archive.namelist() if archive.read(n)[:8] == b"\x89PNG\r\n\x1a\n"]
        messages = archive.read("messages.json").decode("utf-8", "ignore")
    assert len(pngs) >= 1 and "val_input_pred_target_3" in messages


def test_a_failed_push_leaves_the_work_in_final_and_prints_the_command_to_push_later(
    tiny_config, tmp_path, monkeypatch, capsys, caplog
):
    import requests

    from scripts import push_to_hub

    fake_hub(monkeypatch, tmp_path, fail_with=requests.ConnectionError("Failed to resolve 'huggingface.co'"))
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    tiny_config.update(push_to_hub=True, hub_model_id="someone/tiny-denoiser")
    tiny_config["train"].update(max_train_steps=2, checkpointing_steps=2, validation_steps=2)
    with caplog.at_level("INFO", logger="trainer"):
        assert run_trainer(tiny_config, tmp_path) == 0  # the run's work is safe: exit 0
    final = os.path.join(run_folder(tiny_config), "final")
    err = capsys.readouterr().err
    lines = [r.getMessage() for r in caplog.records if "push to the Hub" in r.getMessage()]
    assert len(lines) == 1 and "ConnectionError" in lines[0] and "Traceback" not in err
    command = f"python scripts/push_to_hub.py --run {final} --repo someone/tiny-denoiser"
    assert command in lines[0]
    assert os.path.isfile(os.path.join(final, "net_g", "model.safetensors"))

    # Later, with the network back, the printed command pushes that folder.
    calls = fake_hub(monkeypatch, tmp_path)
    assert push_to_hub.main(["--run", final, "--repo", "someone/tiny-denoiser"]) == 0
    assert [c[0] for c in calls] == ["create", "upload"] and calls[0][2] is True
    assert (tmp_path / "uploaded" / "net_g" / "model.safetensors").is_file()
    assert "val_psnr" in (tmp_path / "uploaded" / "README.md").read_text()


def test_a_resumed_run_continues_its_comet_experiment_offline(tiny_config, tmp_path, monkeypatch):
    """Two launches of one run folder write two archives under the one experiment key, steps 1-2 and 3-4."""
    pytest.importorskip("comet_ml")
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    monkeypatch.setenv("COMET_CONFIG", str(tmp_path / "no.comet.config"))
    tiny_config["report_to"] = "comet_ml"
    tiny_config["train"].update(max_train_steps=2, checkpointing_steps=2, validation_steps=2)
    assert run_trainer(tiny_config, tmp_path) == 0
    resumed = {**tiny_config, "path": {**tiny_config["path"], "resume_from_checkpoint": "latest"}}
    resumed["train"] = {**tiny_config["train"], "max_train_steps": 4}
    assert run_trainer(resumed, tmp_path, name="resume.yml") == 0

    comet_dir = os.path.join(run_folder(tiny_config), "comet_ml")
    with open(os.path.join(comet_dir, "experiment_key")) as f:
        key = f.read().strip()
    launches = {}  # resume strategy -> (experiment key, steps of train/all)
    for path in glob.glob(os.path.join(comet_dir, "*.zip")):
        with zipfile.ZipFile(path) as archive:
            experiment = json.loads(archive.read("experiment.json"))
            messages = [json.loads(line) for line in archive.read("messages.json").splitlines() if line]
        steps = sorted(
            m["payload"]["metric"]["step"]
            for m in messages
            if m["type"] == "metric_msg" and m["payload"]["metric"]["metricName"] == "train/all"
        )
        launches[experiment["resume_strategy"]] = (experiment["offline_id"], steps)
    assert launches == {"create": (key, [1, 2]), "get_or_create": (key, [3, 4])}
