"""scripts/vae_reconstruct.py and scripts/generate.py read PTI-LDM-VAE's .pth files as they are, with a
YAML giving the network keys: no conversion run."""

import numpy as np
import pytest
import tifffile
import torch
import yaml
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

from scripts import generate, vae_reconstruct
from tests.helpers import ROOT
from tests.helpers.pti import NETWORK, UNET


def images(folder, count=3, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        tifffile.imwrite(folder / f"p{i}_img.tif", (rng.random((16, 16)) * 1000 + 50).astype(np.float32))
    return folder


def tiny(shipped: str, tmp_path, **blocks) -> str:
    """The shipped PTI YAML with tiny networks."""
    with open(f"{ROOT}/{shipped}") as f:
        config = yaml.safe_load(f)
    for dotted, value in blocks.items():
        block = config
        *parents, last = dotted.split("__")
        for name in parents:
            block = block[name]
        block[last] = value
    path = tmp_path / "pti.yml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("layout", ["autoencoder_epoch3.pth", "checkpoint_epoch3.pth"])
def test_vae_reconstruct_runs_from_a_pti_pth(tmp_path, layout, capsys):
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(**NETWORK).eval()
    content = (
        autoencoder.state_dict()
        if layout.startswith("auto")
        else {"autoencoder_state_dict": autoencoder.state_dict()}
    )
    torch.save(content, tmp_path / layout)
    network = {"type": "MonaiAutoencoderKL", **NETWORK}
    config = tiny("checkpoints/VAE/pti_ldm_vae.yml", tmp_path, network=network, datasets__val__patch_size=16)
    inputs = images(tmp_path / "in")
    argv = [
        "--run",
        str(tmp_path / layout),
        "--config",
        config,
        "--input",
        str(inputs),
        "--out",
        str(tmp_path / "out"),
    ]
    assert vae_reconstruct.main(argv) == 0
    for path in sorted(inputs.iterdir()):
        image = tifffile.imread(path)
        low, high = image.min(), image.max()
        with torch.no_grad():  # minmax to [0, 1], MONAI's reconstruction, back to the image's range
            expected = autoencoder.reconstruct(torch.from_numpy((image - low) / (high - low))[None, None])
        expected = expected[0, 0].numpy() * (high - low) + low
        np.testing.assert_allclose(tifffile.imread(tmp_path / "out" / path.name), expected, rtol=0, atol=1e-2)

    assert vae_reconstruct.main([*argv[:2], "--input", str(inputs), "--out", str(tmp_path / "o2")]) == 2
    assert "give --config" in capsys.readouterr().err


def pti_stage2(tmp_path):
    torch.manual_seed(1)
    autoencoder = AutoencoderKL(**NETWORK).eval()
    torch.save(autoencoder.state_dict(), tmp_path / "autoencoder_epoch9.pth")
    unet = DiffusionModelUNet(**UNET).eval()
    projector = torch.nn.Linear(2, 32)
    torch.save(
        {
            "epoch": 4,
            "unet_state_dict": unet.state_dict(),
            "condition_projector_state_dict": projector.state_dict(),
        },
        tmp_path / "checkpoint_epoch4.pth",
    )
    return autoencoder, unet, projector


def test_generate_runs_from_a_pti_pth_and_its_vae_pth(tmp_path, capsys):
    from models.ldm.generation_inputs import read_conditions
    from models.pti.generation import pti_ldm_pipeline
    from trainer import load_config

    autoencoder, unet, projector = pti_stage2(tmp_path)
    keys = {k: v for k, v in UNET.items() if k != "spatial_dims"}
    config = tiny(
        "checkpoints/LDM/pti_ldm_vae.yml",
        tmp_path,
        vae__network=NETWORK,
        network={"type": "DiffusionUNet", "backend": "monai", "spatial_dims": 2, **keys},
        val__sampler="ddim",
        val__num_inference_steps=3,
        datasets__val__patch_size=16,
    )
    conditions = images(tmp_path / "dente", count=2)
    argv = ["--run", str(tmp_path / "checkpoint_epoch4.pth"), "--config", config]
    argv += ["--vae", str(tmp_path / "autoencoder_epoch9.pth"), "--conditions", str(conditions)]
    assert generate.main([*argv, "--out", str(tmp_path / "gen")]) == 0
    out = capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "gen").iterdir() if p.suffix == ".tif")
    assert written == ["p0_img.tif", "p1_img.tif"]

    # the networks are PTI-LDM-VAE's, and the scale factor is 1 / std of the first batch's condition latents
    _, cond, _ = read_conditions(tmp_path / "pti.yml", conditions)
    with torch.no_grad():
        mu, _ = autoencoder.encode(cond)
        factor = 1.0 / float(mu.std())
        assert f"Latent scale factor {factor:.5g}" in out
        opt, _ = load_config(config, [f"vae.monai_checkpoint={tmp_path / 'autoencoder_epoch9.pth'}"])
        pipe = pti_ldm_pipeline(tmp_path / "checkpoint_epoch4.pth", opt)
        z, t = torch.randn(2, 2, 8, 8), torch.tensor([5, 600])
        context = projector(mu.permute(0, 2, 3, 1).reshape(2, 64, 2))
        torch.testing.assert_close(pipe.projector(mu), context, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            pipe.unet(z, t, context), unet(z, timesteps=t, context=context), rtol=0, atol=1e-5
        )


def test_a_pth_without_its_yaml_is_one_sentence(tmp_path, capsys):
    pti_stage2(tmp_path)
    argv = [
        "--run",
        str(tmp_path / "checkpoint_epoch4.pth"),
        "--num-samples",
        "1",
        "--out",
        str(tmp_path / "g"),
    ]
    assert generate.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "give --config" in err[0]
