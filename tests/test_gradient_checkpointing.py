"""`network.gradient_checkpointing: true` on every arch that takes it: the same gradients as without it
(the same weights, the same inputs), blocks run again in the backward pass, and the key kept by
save_pretrained."""

import pytest
import torch

from models.archs.autoencoder_kl_arch import AutoencoderKL_arch, AutoencoderKL_config
from models.archs.controlnet_arch import ControlNet_arch, ControlNet_config
from models.archs.diffusion_unet_arch import DiffusionUNet_arch, DiffusionUNet_config
from models.archs.multitask_autoencoder_arch import MultiTaskAutoencoder_arch, MultiTaskAutoencoder_config
from utils.config.arch_signature import check_arch_keys

UNET = dict(
    in_channels=2,
    out_channels=2,
    channels=[8, 16],
    attention_levels=[False, True],
    num_head_channels=[0, 8],
    num_res_blocks=1,
    cross_attention_dim=8,
    norm_num_groups=4,
)
HEADS = [
    {"type": "RGBHead", "name": "rgb"},
    {"type": "SegmentationHead", "name": "seg", "num_classes": 3},
    {"type": "ClassificationHead", "name": "cls", "num_classes": 2, "hidden_channels": 8},
]


def _vae(**keys):
    config = AutoencoderKL_config(
        in_channels=1,
        out_channels=1,
        block_out_channels=[8, 16],
        layers_per_block=1,
        latent_channels=2,
        norm_num_groups=4,
        **keys,
    )
    return AutoencoderKL_arch(config)


def _vae_loss(net, g):
    out = net(torch.randn(2, 1, 8, 8, generator=g), generator=g)
    return out.reconstruction.square().mean() + out.latent_dist.kl().mean()


def _unet(backend):
    return lambda **keys: DiffusionUNet_arch(DiffusionUNet_config(backend=backend, **UNET, **keys))


def _unet_loss(net, g):
    sample, context = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    return net(sample, torch.tensor([3, 700]), context).square().mean()


def _controlnet(**keys):
    unet = DiffusionUNet_arch(DiffusionUNet_config(backend="diffusers", **UNET)).unet
    net = ControlNet_arch(
        ControlNet_config(conditioning_embedding_out_channels=[8, 16], unet=dict(unet.config), **keys)
    )
    torch.manual_seed(1)  # its zero convolutions would pass no gradient back to the blocks checkpointed
    for p in net.parameters():
        p.data.normal_(0.0, 0.1)
    return net


def _controlnet_loss(net, g):
    sample, context = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    control = torch.randn(2, 1, 16, 16, generator=g)
    steering = net(sample, torch.tensor([3, 700]), [control], [1.0], encoder_hidden_states=context)
    return sum(r.square().mean() for r in steering.down) + steering.mid.square().mean()


def _multitask(**keys):
    config = MultiTaskAutoencoder_config(
        in_channels=1,
        latent_channels=2,
        base_channels=8,
        downsampling_steps=1,
        norm_num_groups=4,
        variational=True,
        heads=HEADS,
        **keys,
    )
    return MultiTaskAutoencoder_arch(config)


def _multitask_loss(net, g):
    out = net(torch.randn(2, 1, 8, 8, generator=g), generator=g)
    return sum(h.square().mean() for h in out.heads.values()) + out.latent_dist.kl().mean()


ARCHES = {
    "AutoencoderKL": (_vae, _vae_loss),
    "DiffusionUNet-diffusers": (_unet("diffusers"), _unet_loss),
    "DiffusionUNet-monai": (_unet("monai"), _unet_loss),
    "ControlNet": (_controlnet, _controlnet_loss),
    "MultiTaskAutoencoder": (_multitask, _multitask_loss),
}


def _gradients(net, loss_fn) -> tuple[dict[str, torch.Tensor], int]:
    """Every parameter's gradient, and how many convolutions ran (a checkpointed block runs twice)."""
    calls = []
    hooks = [
        m.register_forward_hook(lambda *_: calls.append(1))
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    net.train()
    loss_fn(net, torch.Generator().manual_seed(0)).backward()
    for hook in hooks:
        hook.remove()
    return {n: p.grad for n, p in net.named_parameters() if p.grad is not None}, len(calls)


@pytest.mark.parametrize("name", ARCHES)
def test_checkpointing_gives_the_same_gradients_with_blocks_run_again(name, tmp_path):
    build, loss_fn = ARCHES[name]
    plain = build()
    checkpointed = build(gradient_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())  # the same parameter names: checkpoints load across
    expected, plain_calls = _gradients(plain, loss_fn)
    got, checkpointed_calls = _gradients(checkpointed, loss_fn)
    assert checkpointed_calls > plain_calls  # the blocks were recomputed in the backward pass
    assert expected.keys() == got.keys() and len(got) == len(list(plain.parameters()))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-5, msg=key)

    check_arch_keys("network", type(checkpointed.config), ["gradient_checkpointing"])
    checkpointed.save_pretrained(tmp_path)
    restored = type(checkpointed).from_pretrained(tmp_path)
    assert restored.config.gradient_checkpointing is True
    assert _gradients(restored, loss_fn)[1] == checkpointed_calls
