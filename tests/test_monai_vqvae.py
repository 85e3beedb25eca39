"""`type: MonaiVQVAE` (MONAI's VQVAE, 2D or 3D) as stage 1: it trains, snaps generated latents to its EMA
codebook exactly as MONAI's own quantiser does, restarts dead codes, reloads with identical outputs, and an
LDM over it decodes its samples through the codebook."""

import copy
import os

import pytest
import torch

from models.archs.autoencoder_outputs import decode_generated
from models.archs.monai_vqvae_arch import MonaiVQVAE_arch, MonaiVQVAE_config
from tests.conftest import run_folder, run_trainer
from tests.helpers import TINY_VAE, in_folder, ldm_config

TINY = {
    "in_channels": 1,
    "out_channels": 1,
    "channels": [8, 16],
    "num_res_layers": 1,
    "num_res_channels": [8, 16],
    "downsample_parameters": [2, 4, 1, 1],  # one (stride, kernel, dilation, padding) for both levels
    "upsample_parameters": [2, 4, 1, 1, 0],
    "num_embeddings": 16,
    "embedding_dim": 4,
    "decay": 0.9,
}


def tiny(dims: int, **keys) -> MonaiVQVAE_arch:
    torch.manual_seed(0)
    return MonaiVQVAE_arch(MonaiVQVAE_config(**{"spatial_dims": dims, **TINY, **keys}))


def volumes(n: int = 2, side: int = 16) -> torch.Tensor:
    """Soft balls at random places: a volume batch with structure to reconstruct."""
    g = torch.Generator().manual_seed(1)
    axis = torch.linspace(-1, 1, side)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"))
    centres = torch.rand(n, 3, 1, 1, 1, generator=g) - 0.5
    return torch.exp(-((grid - centres) ** 2).sum(1, keepdim=True) / 0.1)


def test_a_3d_vq_vae_trains_and_its_loss_falls():
    net, x = tiny(3), volumes()
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(12):
        out = net(x)
        loss = (out.reconstruction - x).abs().mean() + out.quant_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert out.reconstruction.shape == x.shape and out.latents.shape == (2, 4, 4, 4, 4)
    assert net.size_divisor == 4 and net.latent_channels == 4
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses


@torch.no_grad()
def test_a_code_no_output_picks_restarts_at_an_encoder_output_instead_of_flying_off():
    """MONAI's EMA update divides a dead code's sum by about epsilon: with a fresh encoder all outputs
    pick one code, and without restarts every other code ends up thousands of units away."""
    x = volumes()
    for threshold, far in ((0.0, True), (0.01, False)):
        net = tiny(3, dead_code_threshold=threshold).train()
        z_e = net.monai_vqvae.encode(x)
        with torch.enable_grad():
            net(x)
        codes = net.ema_quantizer.embedding.weight
        assert bool(codes.abs().max() > 1e3) == far, threshold
        if not far:
            restarted = net.ema_quantizer.ema_cluster_size == 1.0
            assert int(restarted.sum()) == 15  # all but the code every output picked
            outputs = z_e.movedim(1, -1).reshape(-1, 4)
            assert (codes[restarted][:, None] == outputs[None]).all(-1).any(-1).all()  # each an output


@torch.no_grad()
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_generated_latents_snap_to_the_codes_monais_own_quantiser_picks(spatial_dims):
    net = tiny(spatial_dims)
    with torch.enable_grad():  # one training step's EMA update, so the codebook is not the initial one
        net.train()(volumes()[..., 0] if spatial_dims == 2 else volumes())
    net.eval().config.scaling_factor = 0.25  # unscaled = 4 z: snapping the scaled z picks other codes
    # At the codes' own scale (encoder outputs, about 0.03), where z and 4 z have different nearest codes.
    z = 0.01 * torch.randn(2, 4, *[4] * spatial_dims, generator=torch.Generator().manual_seed(2))
    monai = net.monai_vqvae
    expected = monai.decode(monai.quantize(z * 4.0)[0])  # MONAI's quantise (eval: no EMA update), decode
    torch.testing.assert_close(decode_generated(net, z), expected, rtol=0, atol=1e-6)
    assert not torch.equal(net.snap_to_codebook(z * 4.0), net.snap_to_codebook(z))
    assert not torch.equal(decode_generated(net, z), monai.decode(monai.quantize(z)[0]))
    assert not torch.equal(decode_generated(net, z), net.decode(z * 4.0))  # unsnapped
    # Snapping in training mode (an LDM's sample while the VAE's module is in train mode) leaves the
    # codebook and its EMA statistics untouched, as does any forward pass without gradients.
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    decode_generated(net, z)
    net(volumes()[..., 0] if spatial_dims == 2 else volumes())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@torch.no_grad()
def test_save_and_from_pretrained_give_identical_outputs_codebook_included(tmp_path):
    net, x = tiny(3), volumes()
    with torch.enable_grad():
        net.train()(x)  # the EMA statistics and codebook differ from their initial values now
    net.eval()
    net.save_pretrained(tmp_path)
    again = MonaiVQVAE_arch.from_pretrained(tmp_path).eval()
    assert again.config.downsample_parameters == [[2, 4, 1, 1], [2, 4, 1, 1]]
    for key, value in net.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    a, b = net(x), again(x)
    assert torch.equal(a.reconstruction, b.reconstruction)
    assert torch.equal(a.codebook_indices, b.codebook_indices)


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"downsample_parameters": [[2, 4, 1, 1]]}, "downsample_parameters"),
        ({"upsample_parameters": [[2, 4, 1, 1], [2, 4, 1, 1]]}, "upsample_parameters"),
        ({"decay": 1.5}, "decay"),
        ({"embedding_init": "uniform"}, "embedding_init"),
        ({"dead_code_threshold": -1.0}, "dead_code_threshold"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"output_activation": "relu"}, "output_activation"),
    ],
)
def test_a_wrong_key_is_refused_naming_it(keys, named):
    from utils.errors import ConfigError

    with pytest.raises(ConfigError, match=named):
        tiny(2, **keys)


TINY_MONAI_VQ = {"type": "MonaiVQVAE", "spatial_dims": 2, **TINY, "num_embeddings": 32}


@pytest.mark.e2e
def test_an_ldm_on_a_monai_vq_vae_decodes_its_samples_through_the_codebook(tmp_path, monkeypatch):
    vae = in_folder(TINY_VAE, tmp_path)
    vae["network"] = dict(TINY_MONAI_VQ)
    vae["train"].update(max_train_steps=6, validation_steps=6, checkpointing_steps=1000)
    assert run_trainer(vae, tmp_path) == 0
    stage1 = os.path.join(run_folder(vae), "final", "net_g")
    trained = MonaiVQVAE_arch.from_pretrained(stage1)
    assert trained.config.scaling_factor != 1.0  # VAE_model measured the latent scale, as for any VQ arch

    snaps = []
    decode = MonaiVQVAE_arch.decode

    def recording(self, z, quantize=False):
        snaps.append(quantize)
        return decode(self, z, quantize=quantize)

    monkeypatch.setattr(MonaiVQVAE_arch, "decode", recording)
    config = ldm_config(tmp_path, stage1)
    config["network"] = {**copy.deepcopy(config["network"]), "in_channels": 4, "out_channels": 4}
    config["train"].update(max_train_steps=4, validation_steps=4)
    config["val"].update(num_samples=2, num_inference_steps=2)
    assert run_trainer(config, tmp_path) == 0
    assert snaps and all(snaps)  # every decode of a validation sample snapped to the codebook
