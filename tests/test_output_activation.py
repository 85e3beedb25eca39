"""`network.output_activation` of the autoencoder arches: tanh, sigmoid or none on the decoded image."""

import copy

import pytest
import torch

from models.archs.autoencoder_kl_arch import AutoencoderKL_arch, AutoencoderKL_config
from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch, MonaiAutoencoderKL_config
from models.archs.multitask_autoencoder_arch import MultiTaskAutoencoder_arch, MultiTaskAutoencoder_config
from models.archs.vqvae_arch import VQVAE_arch, VQVAE_config
from tests.conftest import run_trainer
from tests.helpers.configs import TINY_MULTITASK, in_folder
from utils.errors import ConfigError

SMALL = dict(in_channels=1, latent_channels=2, norm_num_groups=4)
ARCHES = {
    "AutoencoderKL": (
        AutoencoderKL_arch,
        AutoencoderKL_config,
        dict(SMALL, out_channels=1, block_out_channels=[8, 16], layers_per_block=1, sample_size=16),
        lambda net, z: net.diffusers_vae.decode(z).sample,
    ),
    "MonaiAutoencoderKL": (
        MonaiAutoencoderKL_arch,
        MonaiAutoencoderKL_config,
        dict(
            SMALL,
            out_channels=1,
            channels=[8, 16],
            num_res_blocks=1,
            with_encoder_nonlocal_attn=False,
            with_decoder_nonlocal_attn=False,
        ),
        lambda net, z: net.monai_autoencoder.decode(z),
    ),
    "VQVAE": (
        VQVAE_arch,
        VQVAE_config,
        dict(SMALL, out_channels=1, block_out_channels=[8, 16], layers_per_block=1, num_vq_embeddings=16),
        lambda net, z: net.vq_model.decode(z, force_not_quantize=True).sample,
    ),
    "MultiTaskAutoencoder": (
        MultiTaskAutoencoder_arch,
        MultiTaskAutoencoder_config,
        dict(SMALL, base_channels=8, downsampling_steps=1, heads=[{"type": "RGBHead", "name": "rgb"}]),
        lambda net, z: net.heads["rgb"](net.decoder(z)),
    ),
}


def _build(name, activation=None):
    arch, config, keys, raw = ARCHES[name]
    torch.manual_seed(0)
    net = arch(config(**keys, output_activation=activation)).eval()
    z = 3.0 * torch.randn(2, net.latent_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    return net, z, raw


@pytest.mark.parametrize("name", ARCHES)
def test_no_activation_leaves_the_decoder_output_as_the_library_gives_it(name):
    net, z, raw = _build(name)
    with torch.no_grad():
        assert torch.equal(net.decode(z), raw(net, z))


@pytest.mark.parametrize("name", ARCHES)
@pytest.mark.parametrize("activation,low,high", [("tanh", -1.0, 1.0), ("sigmoid", 0.0, 1.0)])
def test_the_activation_bounds_the_image_and_survives_save_and_load(name, activation, low, high, tmp_path):
    net, z, raw = _build(name, activation)
    with torch.no_grad():
        out = net.decode(z)
        expected = torch.tanh(raw(net, z)) if activation == "tanh" else torch.sigmoid(raw(net, z))
        assert torch.equal(out, expected)
        assert low < out.min() and out.max() < high
        x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
        assert low < net(x, sample_posterior=False).reconstruction.min()
    net.save_pretrained(tmp_path)
    loaded = ARCHES[name][0].from_pretrained(tmp_path).eval()
    assert loaded.config.output_activation == activation
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), out)


def test_an_unknown_activation_and_a_diffusers_export_are_refused(tmp_path):
    arch, config, keys, _ = ARCHES["AutoencoderKL"]
    with pytest.raises(ConfigError, match="'network.output_activation' is 'relu'; use tanh, sigmoid or null"):
        arch(config(**keys, output_activation="relu"))
    net, _, _ = _build("AutoencoderKL", "tanh")
    with pytest.raises(ConfigError, match="output_activation: tanh"):
        net.export_diffusers(tmp_path / "diffusers")


@pytest.mark.e2e
def test_a_logits_loss_after_an_output_activation_is_refused(tmp_path, capsys):
    config = in_folder(TINY_MULTITASK, tmp_path)
    config["network"]["output_activation"] = "sigmoid"
    config["train"]["losses"][0]["type"] = "BCEWithLogits"
    assert run_trainer(config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "'train.losses[0].type: BCEWithLogits' reads the decoder output as logits" in err
    assert "'network.output_activation' is sigmoid" in err


@pytest.mark.e2e
def test_recon_type_bce_after_an_output_activation_is_refused(vae_config, tmp_path, capsys):
    config = copy.deepcopy(vae_config)
    config["network"]["output_activation"] = "tanh"
    config["train"]["recon_type"] = "bce"
    assert run_trainer(config, tmp_path) == 2
    assert "'train.recon_type: bce' reads the decoder output as logits" in capsys.readouterr().err
