"""scripts/analyze_latents.py end to end: real TIFs, a saved VAE, every output file read back, and the
interactive page opened in headless Chromium."""

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image

from scripts.analyze_latents import main as analyze
from utils.latent_maps.static_figure import MARKER_ALPHA, PALETTE

pytestmark = pytest.mark.e2e  # the analysis script end to end, on a VAE trained for the module

SIZE = 32
PER_GROUP = 12
NETWORK = {
    "type": "AutoencoderKL",
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "latent_channels": 2,
    "norm_num_groups": 4,
    "sample_size": SIZE,
}


def smooth_image(rng) -> np.ndarray:
    """A broad Gaussian blob at a random place: low spatial frequencies only."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx = rng.uniform(8, 24, 2)
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(5, 9) ** 2)).astype(np.float32)


def textured_image(rng) -> np.ndarray:
    """Fine stripes plus pixel noise: high spatial frequencies."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    angle, period = rng.uniform(0, np.pi), rng.uniform(2.5, 4)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    return (0.5 + 0.35 * stripes + 0.15 * rng.standard_normal((SIZE, SIZE))).astype(np.float32)


def trained_vae(images: list[np.ndarray], steps: int = 25):
    """A tiny VAE fitted for a few full-batch steps on the images (about 5 s on one core): enough for its
    latents to tell the groups apart (an untrained encoder's GroupNorms leave it close to chance)."""
    from models.archs import define_network

    torch.manual_seed(0)
    vae = define_network(dict(NETWORK))
    x = torch.from_numpy(np.stack(images))[:, None]
    low, high = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    x = (x - low) / (high - low)  # the `normalize: minmax` of the run's config
    optimizer = torch.optim.Adam(vae.parameters(), lr=5e-3)
    for _ in range(steps):
        loss = (vae(x, sample_posterior=False).reconstruction - x).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return vae.eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two TIF folders (smooth, textured) and a run's final/ folder holding a VAE trained on both."""
    root = tmp_path_factory.mktemp("latents")
    rng = np.random.default_rng(0)
    images = []
    for group, make in (("smooth", smooth_image), ("textured", textured_image)):
        for i in range(PER_GROUP):
            path = root / group / f"p{i % 3:02d}_{group}{i:02d}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            images.append(make(rng))
            tifffile.imwrite(path, images[-1])
    final = root / "run" / "final"
    trained_vae(images).save_pretrained(final / "net_g")
    val = {"type": "TIFFolderDataset", "dir": str(root / "smooth"), "normalize": "minmax", "patch_size": SIZE}
    (root / "run" / "config.yml").write_text(
        yaml.safe_dump({"network": NETWORK, "datasets": {"train": val, "val": val}, "val": {"gt_key": "gt"}})
    )
    return root


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    with open(path) as f:
        return json.load(f, parse_constant=refuse)


def hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)


def run_analysis(data, out, *extra) -> dict:
    args = ["--run", str(data / "run" / "final"), "--out", str(out), "--dpi", "60", "--no-progress", *extra]
    assert analyze(args) == 0
    return strict_json(out / "metrics.json")


@pytest.fixture(scope="module")
def two_groups(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("maps")
    groups = ["--group", f"smooth={data / 'smooth'}", "--group", f"textured={data / 'textured'}"]
    metrics = run_analysis(data, out, *groups, "--method", "pca", "tsne", "--thumbnails", "4")
    return out, metrics


def test_differing_groups_separate_far_better_than_a_random_split(data, two_groups, tmp_path):
    _, metrics = two_groups
    assert metrics["groups"] == {"smooth": PER_GROUP, "textured": PER_GROUP}
    # The same 24 images split into two random groups, through a CSV manifest with a group column.
    rng = np.random.default_rng(1)
    paths = sorted(str(p) for p in data.glob("*/*.tif"))
    random_groups = rng.permutation(["a", "b"] * PER_GROUP)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "split_group"])
        writer.writerows(zip(paths, random_groups))
    random = run_analysis(
        data,
        tmp_path / "random",
        "--manifest",
        str(manifest),
        "--group-column",
        "split_group",
        "--method",
        "pca",
    )
    assert random["groups"] == {"a": PER_GROUP, "b": PER_GROUP}
    assert metrics["knn_accuracy"] >= 0.9
    assert random["knn_accuracy"] <= 0.75
    assert metrics["silhouette"] > 0.3
    assert metrics["silhouette"] > random["silhouette"] + 0.3
    # metrics.json's own chance level (the groups shuffled) agrees
    assert metrics["shuffled_groups"]["knn_accuracy"] <= 0.75
    for method in ("pca", "tsne"):
        assert 0.5 < metrics["embeddings"][method]["trustworthiness"] <= 1.0


def test_every_output_exists_and_parses(two_groups):
    out, metrics = two_groups
    with open(out / "coords.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * PER_GROUP == metrics["items"]
    assert list(rows[0]) == ["file", "group", "pca_x", "pca_y", "tsne_x", "tsne_y"]
    assert {r["group"] for r in rows} == {"smooth", "textured"}
    coords = np.array([[float(r["tsne_x"]), float(r["tsne_y"])] for r in rows])
    assert np.isfinite(coords).all() and coords.std(axis=0).min() > 0
    for method in ("pca", "tsne"):
        with Image.open(out / f"latent_map_{method}.png") as png:
            width, height = png.size
            assert width > 300 and height > 200
            pixels = np.asarray(png.convert("RGB")).reshape(-1, 3).astype(float)
        for color in PALETTE[:2]:  # both groups' markers are drawn (translucent, on white)
            rgb = MARKER_ALPHA * hex_rgb(color) + (1 - MARKER_ALPHA) * 255
            assert (np.abs(pixels - rgb).max(axis=1) < 12).sum() > 20, color
        svg = ElementTree.parse(out / f"latent_map_{method}.svg").getroot()
        assert svg.tag.endswith("svg")
        assert (out / f"latent_map_{method}.pdf").read_bytes().startswith(b"%PDF")
    html = (out / "latent_map.html").read_text()
    assert "<script src=" not in html.replace('<script src="data:', "")  # nothing fetched from the network
    thumbs = json.loads(re.search(r"var thumbs = (\[.*?\]);", html).group(1))
    assert len(thumbs) == 2 * PER_GROUP  # one hover thumbnail per image, a real PNG
    png = base64.b64decode(thumbs[0].removeprefix("data:image/png;base64,"))
    assert Image.open(io.BytesIO(png)).size == (48, 48)


def test_the_same_call_gives_the_same_coordinates(data, two_groups, tmp_path):
    out, _ = two_groups
    groups = ["--group", f"smooth={data / 'smooth'}", "--group", f"textured={data / 'textured'}"]
    run_analysis(data, tmp_path, *groups, "--method", "pca", "tsne", "--thumbnails", "0")
    assert (tmp_path / "coords.csv").read_text() == (out / "coords.csv").read_text()
    # without the thumbnail panel the figure is the scatter alone, narrower
    with Image.open(tmp_path / "latent_map_pca.png") as bare, Image.open(out / "latent_map_pca.png") as panel:
        assert panel.size[0] > 1.3 * bare.size[0]


def test_undefined_scores_are_null_never_nan():
    from utils.latent_maps import separation_scores

    features = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    scores = separation_scores(features, ["one"] * 6)  # a single group: no silhouette, no classifier
    assert scores["silhouette"] is None and scores["knn_accuracy"] is None
    json.dumps(scores, allow_nan=False)


def test_labels_from_a_file_name_regex_and_pooled_features(data, tmp_path):
    metrics = run_analysis(
        data,
        tmp_path,
        "--group",
        f"all={data / 'textured'}",
        "--label-regex",
        r"^(p\d+)_",
        "--features",
        "meanstd",
        "--method",
        "pca",
    )
    assert metrics["groups"] == {"p00": 4, "p01": 4, "p02": 4}
    assert metrics["feature_dim"] == 2 * NETWORK["latent_channels"]


def test_a_pti_ldm_vae_pth_is_read_with_its_network_keys(data, tmp_path, capsys):
    from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch, MonaiAutoencoderKL_config

    network = {
        "spatial_dims": 2,
        "channels": [8, 8],
        "latent_channels": 2,
        "num_res_blocks": 1,
        "norm_num_groups": 4,
        "with_encoder_nonlocal_attn": False,
        "with_decoder_nonlocal_attn": False,
    }
    (tmp_path / "net.yml").write_text(yaml.safe_dump(network))
    groups = ["--group", f"smooth={data / 'smooth'}", "--group", f"textured={data / 'textured'}"]
    coords = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        vae = MonaiAutoencoderKL_arch(MonaiAutoencoderKL_config(**network))
        torch.save(vae.monai_autoencoder.state_dict(), tmp_path / f"autoencoder_epoch{seed}.pth")
        args = [
            "--pth",
            str(tmp_path / f"autoencoder_epoch{seed}.pth"),
            "--network",
            str(tmp_path / "net.yml"),
        ]
        out = tmp_path / f"out{seed}"
        assert analyze([*args, "--normalize", "minmax", *groups, "--method", "pca", "--out", str(out)]) == 0
        assert strict_json(out / "metrics.json")["groups"] == {"smooth": PER_GROUP, "textured": PER_GROUP}
        coords.append((out / "coords.csv").read_text())
    assert coords[0] != coords[1]  # the weights of each file are the ones encoding
    (tmp_path / "net.yml").write_text(yaml.safe_dump({**network, "latent_channels": 3}))
    assert analyze([*args, *groups, "--out", str(tmp_path / "bad")]) == 2
    assert "does not fit this MonaiAutoencoderKL config" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--group", "smooth"], "argument --group: 'smooth' should be NAME=FOLDER"),
        (["--group", "a=/nonexistent/folder"], "/nonexistent/folder"),
        (["--val-set", "--label-regex", "^(q\\d+)_"], "does not match the file name"),
    ],
)
def test_bad_input_is_one_clear_sentence(data, tmp_path, capsys, args, message):
    assert (
        analyze(["--run", str(data / "run" / "final"), "--out", str(tmp_path / "o"), "--no-progress", *args])
        == 2
    )
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--group", "a=@SMOOTH@", "--group", "a=@TEXTURED@"], "--group 'a' is given twice"),
        (["--group", "a=@ONE@"], "Only 1 image found (p00_smooth00); a 2-D map needs at least 3"),
        (["--neighbors", "0"], "argument --neighbors: '0' must be at least 1"),
        (["--batch-size", "0"], "argument --batch-size: '0' must be at least 1"),
        (["--dpi", "0"], "argument --dpi: '0' must be at least 1"),
        (["--device", "nodevice"], "argument --device: 'nodevice' is not a device"),
        (["--method", "pcaa"], "argument --method: invalid choice: 'pcaa'"),
        (["--out", "@FILE@"], "is a file; give a folder to write into"),
        (["--pth", "@FILE@", "--network", "@NOTYAML@"], "notyaml.yml' is not valid YAML"),
    ],
    ids=["group twice", "too few images", "neighbors", "batch", "dpi", "device", "method", "out", "network"],
)
def test_bad_arguments_are_one_line(data, tmp_path, capsys, args, message):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(data / "smooth" / "p00_smooth00.tif", one)
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "notyaml.yml").write_text("a: [")
    places = {"@SMOOTH@": data / "smooth", "@TEXTURED@": data / "textured", "@ONE@": one}
    places.update({"@FILE@": tmp_path / "file", "@NOTYAML@": tmp_path / "notyaml.yml"})
    for key, value in places.items():
        args = [a.replace(key, str(value)) for a in args]
    weights = [] if "--pth" in args else ["--run", str(data / "run" / "final")]
    out = [] if "--out" in args else ["--out", str(tmp_path / "o")]
    groups = [] if "--group" in args else ["--group", f"s={data / 'smooth'}"]
    try:
        status = analyze([*weights, *out, *groups, "--no-progress", *args])
    except SystemExit as exit:  # an argument error, as argparse ends it
        status = exit.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "o").exists() and (tmp_path / "file").read_text() == "not a folder"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args, timeout=60) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_the_page_opens_in_headless_chromium_with_every_point(two_groups, tmp_path):
    out, _ = two_groups
    url = (out / "latent_map.html").resolve().as_uri()
    page = chromium("--dump-dom", url)
    body = re.search(r"<body[^>]*>", page.stdout).group(0)
    attributes = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))
    assert attributes == {
        "items": str(2 * PER_GROUP),
        "plotted-points": str(2 * 2 * PER_GROUP),
        "errors": "0",
    }
    # Chromium prints every console message (log, warning, error, uncaught exception) as CONSOLE.
    assert [line for line in page.stderr.splitlines() if ":CONSOLE" in line] == []

    # Hovering a point (here through the page's #name link) shows its name and its thumbnail.
    name = "p01_textured04"
    page = chromium("--dump-dom", f"{url}#{name}")
    body = re.search(r"<body[^>]*>", page.stdout).group(0)
    assert f'data-hovered="{name}"' in body and 'data-errors="0"' in body
    thumbnail = re.search(r'<img id="latent-map-thumbnail"[^>]*>', page.stdout).group(0)
    assert 'src="data:image/png;base64,' in thumbnail and "display: block" in thumbnail
    assert f">{name}<" in page.stdout  # plotly's hover label, with the file name
    assert [line for line in page.stderr.splitlines() if ":CONSOLE" in line] == []

    shot = tmp_path / "page.png"
    chromium("--window-size=1400,600", f"--screenshot={shot}", url)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert len(np.unique(pixels, axis=0)) > 50  # not a blank page
    for color in PALETTE[:2]:  # markers of both groups are on screen
        assert (np.abs(pixels - hex_rgb(color)).max(axis=1) < 40).sum() > 100, color
    os.remove(shot)


def test_every_method_is_seeded_and_handles_a_validation_sized_set():
    """16 points (a small validation set): UMAP's and t-SNE's neighbourhoods shrink to fit, and the same
    seed gives the same map. UMAP's first call compiles numba code (the slow part of this test)."""
    from utils.latent_maps import embed_2d, trustworthiness_score

    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (8, 6)), rng.normal(6, 1, (8, 6))]).astype(np.float32)
    for method in ("pca", "tsne", "umap"):
        first, second = embed_2d(features, method, seed=3), embed_2d(features, method, seed=3)
        assert first.shape == (16, 2) and np.isfinite(first).all()
        np.testing.assert_array_equal(first, second)
        # the two far-apart blobs stay apart: every point's nearest 2-D neighbour is in its own blob
        distance = np.linalg.norm(first[:, None] - first[None], axis=2) + np.eye(16) * 1e9
        assert (distance.argmin(axis=1) // 8 == np.arange(16) // 8).all(), method
        assert trustworthiness_score(features, first) > 0.8
