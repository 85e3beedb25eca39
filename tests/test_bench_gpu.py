"""bench/gpu.py is ready to run on a GPU: its `--smoke` mode measures, on the CPU, each setting that exists
there for two experiments, through the trainer and in the plain loop, and writes the JSON and the
Markdown table with a finite speed and peak memory in every row."""

import json
import math
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# What --smoke measures on a CPU of its settings (each precision; each option at fp32): the example's
# TinyDenoiser has no gradient checkpointing, the VAE's AutoencoderKL has; fp16 and 8-bit Adam need
# CUDA, and compile is left out (minutes of inductor on a CPU).
MEASURED = {
    "checkpoints/example/denoise.yml": ("fp32", "bf16"),
    "checkpoints/VAE/exp.yml": ("fp32", "bf16", "fp32+grad_ckpt"),
}


@pytest.mark.e2e
def test_the_smoke_mode_measures_every_setting_in_both_loops(tmp_path):
    out = tmp_path / "smoke"
    done = subprocess.run(
        [sys.executable, "bench/gpu.py", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    expected = {
        (e, loop, s) for e, settings in MEASURED.items() for s in settings for loop in ("trainer", "plain")
    }
    assert {(r["experiment"], r["loop"], r["setting"]) for r in result["rows"]} == expected
    for row in result["rows"]:
        assert math.isfinite(row["steps_per_s"]) and row["steps_per_s"] > 0, row
        assert math.isfinite(row["peak_mib"]) and row["peak_mib"] > 50, row  # torch alone holds more
        assert row["timed_steps"] == 2, row

    table = [
        line for line in out.with_suffix(".md").read_text().splitlines() if line.startswith("| checkpoints/")
    ]
    assert len(table) == len(expected)
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        experiment, loop, setting, speed, memory, ratio = cells
        assert (experiment, loop, setting) in expected
        assert float(speed) > 0 and float(memory) > 0
        assert (ratio != "") == (loop == "trainer")  # the trainer's speed over the plain loop's

    # Every other setting of --smoke is listed with its reason.
    skipped = {(s["experiment"], s["loop"], s["setting"]): s["why"] for s in result["skipped"]}
    denoise = "checkpoints/example/denoise.yml"
    assert (
        "TinyDenoiser has no network.gradient_checkpointing" in skipped[(denoise, "plain", "fp32+grad_ckpt")]
    )
    assert "fp16 needs CUDA" in skipped[(denoise, "trainer", "fp16")]
    assert "8-bit Adam needs CUDA" in skipped[(denoise, "trainer", "fp32+8bit_adam")]
    assert "--smoke" in skipped[(denoise, "plain", "fp32+compile")]
    assert "fp16 needs CUDA" in done.stdout
