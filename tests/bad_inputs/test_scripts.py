"""The scripts' bad arguments: one line naming the argument and what would be right, no traceback."""

import os

import numpy as np
import pytest
import tifffile

from tests.helpers.bad_inputs import assert_one_sentence
from tests.helpers.scripts import fake_hub, run_generate, tiny_ldm_run


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--image-size", "9"],
            "--image-size 9 comes back from this VAE as 8; give a multiple of 2 (e.g. 8)",
        ),
        (["--image-size", "0"], "argument --image-size: '0' must be at least 1"),
        (["--seed", "-5"], "argument --seed: '-5' must be at least 0"),
        (["--num-samples", "0"], "argument --num-samples: '0' must be at least 1"),
        (["--device", "cuda:7"], "argument --device: 'cuda:7'"),
        (["--out", "@FILE@"], "is a file; give a folder to write into"),
    ],
    ids=["size not a multiple", "size 0", "seed", "count", "device", "out a file"],
)
def test_vae_sample_bad_arguments_are_one_line(stage1, tmp_path, capsys, args, expected):
    import scripts.vae_sample as vae_sample

    (tmp_path / "file").write_text("not a folder")
    args = [a.replace("@FILE@", str(tmp_path / "file")) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "o")]
    try:
        status = vae_sample.main(["--run", os.path.dirname(stage1), *out, *args])
    except SystemExit as exit:  # an argument error, as argparse ends it
        status = exit.code
    assert_one_sentence(capsys.readouterr().err, status, expected)
    assert not (tmp_path / "o").exists() and (tmp_path / "file").read_text() == "not a folder"


@pytest.mark.e2e
def test_bad_arguments_vectors_and_conditions_are_one_sentence(stage1, tmp_path, capsys):
    vector_run = tiny_ldm_run(tmp_path, stage1, "vec", {"type": "vector", "key": "x"})
    image_run = tiny_ldm_run(tmp_path, stage1, "img", {"type": "image"})
    (tmp_path / "bad.json").write_text("[1, 2")
    (tmp_path / "words.json").write_text('[["a"]]')
    odd = tmp_path / "odd"
    odd.mkdir()
    tifffile.imwrite(odd / "c.tif", np.random.rand(13, 21).astype(np.float32))
    (tmp_path / "out_file").write_text("not a folder")
    hashes = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    vec, img = ["--run", vector_run], ["--run", image_run]
    for args, expected in (
        ([*vec, "--vector", "a,b"], "--vector 'a,b' has 'a', which is not a number"),
        ([*vec, "--vector", "nan"], "--vector 'nan' has 'nan'; every number must be finite"),
        ([*vec, "--vectors", tmp_path / "bad.json"], "bad.json' is not valid JSON (line 1, column 6"),
        ([*vec, "--vectors", tmp_path / "words.json"], "words.json' (row 1) has 'a', which is not a number"),
        ([*vec, "--vectors", tmp_path / "none.json"], "none.json' does not exist"),
        ([*vec, "--vector", "1", "--steps", "0"], "argument --steps: '0' must be at least 1"),
        ([*vec, "--vector", "1", "--guidance", "nan"], "argument --guidance: 'nan' must be a finite number"),
        ([*vec, "--vector", "1", "--batch-size", "0"], "argument --batch-size: '0' must be at least 1"),
        ([*vec, "--vector", "1", "--device", "cpuu"], "argument --device: 'cpuu' is not a device"),
        ([*vec, "--vector", "1", "--seed", "-1"], "argument --seed: '-1' must be at least 0"),
        ([*img, "--conditions", odd], "The condition 'c' is 13x21, but this run's VAE gives back 12x20"),
    ):
        assert run_generate(*args, "--out", tmp_path / "e") == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert run_generate(*vec, "--vector", "1", "--out", tmp_path / "out_file") == 2
    assert "argument --out: '" + str(tmp_path / "out_file") + "' is a file" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    assert all(p.read_bytes() == content for p, content in hashes.items())


def test_push_script_failures_are_one_sentence(tmp_path, monkeypatch, capsys):
    from scripts import push_to_hub

    assert push_to_hub.main(["--run", str(tmp_path), "--repo", "someone/x"]) == 2
    assert "is not a run's final/ folder" in capsys.readouterr().err
    (tmp_path / "net_g").mkdir()
    (tmp_path / "net_g" / "model.safetensors").write_bytes(b"x")
    assert push_to_hub.main(["--run", str(tmp_path), "--repo", "no-slash"]) == 2
    assert "is not of the form user/name" in capsys.readouterr().err
    refused = PermissionError("401 Client Error: Unauthorized (token hf_abcdefghijkl)")
    fake_hub(monkeypatch, tmp_path, fail_with=refused)
    assert push_to_hub.main(["--run", str(tmp_path), "--repo", "someone/x"]) == 2
    err = capsys.readouterr().err
    assert "401 Client Error" in err and "hf_abcdefghijkl" not in err and "Traceback" not in err
