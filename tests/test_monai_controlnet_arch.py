"""`type: MonaiControlNet` (MONAI's ControlNet) on a 3D MONAI DiffusionUNet: a copy of the UNet's encoder
with zero output convolutions, so the controlled UNet starts as the UNet alone; training makes its
prediction depend on the control; the weights reload with identical outputs."""

import pytest
import torch

from models.archs.diffusion_unet_arch import DiffusionUNet_arch, DiffusionUNet_config
from models.archs.monai_controlnet_arch import (
    MonaiControlNet_arch,
    MonaiControlNet_config,
    controlled_prediction,
)
from utils.errors import ConfigError

UNET = dict(
    spatial_dims=3,
    in_channels=2,
    out_channels=2,
    channels=[8, 16],
    attention_levels=[False, True],
    num_head_channels=[0, 8],
    num_res_blocks=1,
    cross_attention_dim=8,
    norm_num_groups=4,
)


def trained_unet(**keys) -> DiffusionUNet_arch:
    """A UNet whose weights are not the library's initialisation (a stand-in for a trained one)."""
    torch.manual_seed(0)
    unet = DiffusionUNet_arch(DiffusionUNet_config(**{**UNET, **keys}))
    for p in unet.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return unet.eval().requires_grad_(False)


def controlnet_for(unet: DiffusionUNet_arch) -> MonaiControlNet_arch:
    config = MonaiControlNet_config(conditioning_embedding_out_channels=[4, 8], unet=unet.config.to_dict())
    controlnet = MonaiControlNet_arch(config)
    controlnet.copy_encoder(unet)
    return controlnet


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 2, 8, 8, 8, generator=g)
    control = (torch.rand(2, 1, 16, 16, 16, generator=g) > 0.5).float()  # twice the latent: 2 levels
    return latents, torch.tensor([3, 700]), control, torch.randn(2, 1, 8, generator=g)


@torch.no_grad()
@pytest.mark.parametrize("coordinate_channels", [False, True])
def test_before_training_and_at_scale_0_the_controlled_unet_is_the_unet_alone(coordinate_channels):
    unet = trained_unet(coordinate_channels=coordinate_channels)
    controlnet = controlnet_for(unet).eval()
    encoder = {
        k: v for k, v in unet.unet.state_dict().items() if k.split(".")[0] in ("conv_in", "down_blocks")
    }
    assert all(torch.equal(controlnet.controlnet.state_dict()[k], v) for k, v in encoder.items())
    latents, timesteps, control, context = inputs()
    alone = unet(latents, timesteps, context)
    assert torch.equal(
        controlled_prediction(unet, controlnet, latents, timesteps, control, 1.0, context), alone
    )
    down, mid = controlnet.residuals(
        torch.cat([latents, torch.zeros(2, 3, 8, 8, 8)], 1) if coordinate_channels else latents,
        timesteps,
        control,
        encoder_hidden_states=context,
    )
    assert len(down) == 4 and mid.shape == (2, 16, 4, 4, 4)  # input conv, one block, downsample; level 2
    assert all(not r.any() for r in down) and not mid.any()  # the zero convolutions


def test_training_makes_the_prediction_follow_the_control_and_scale_0_still_ignores_it():
    unet = trained_unet()
    controlnet = controlnet_for(unet).train()
    latents, timesteps, control, context = inputs()
    # A toy target the UNet alone cannot give: its own prediction plus the control, pooled to the latent.
    with torch.no_grad():
        target = unet(latents, timesteps, context) + torch.nn.functional.avg_pool3d(control, 2).repeat(
            1, 2, 1, 1, 1
        )
    optimizer = torch.optim.Adam(controlnet.parameters(), lr=5e-3)
    losses = []
    for _ in range(8):
        prediction = controlled_prediction(unet, controlnet, latents, timesteps, control, 1.0, context)
        loss = (prediction - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    with torch.no_grad():
        controlnet.eval()
        one = controlled_prediction(unet, controlnet, latents, timesteps, control, 1.0, context)
        other = controlled_prediction(unet, controlnet, latents, timesteps, 1.0 - control, 1.0, context)
        assert (one - other).abs().mean() > 1e-3  # the prediction now depends on the control
        off = controlled_prediction(unet, controlnet, latents, timesteps, control, 0.0, context)
        assert torch.equal(off, unet(latents, timesteps, context))


@torch.no_grad()
def test_save_and_from_pretrained_give_identical_residuals(tmp_path):
    unet = trained_unet()
    controlnet = controlnet_for(unet)
    for p in controlnet.parameters():  # as after training: the zero convolutions are not zero any more
        p.add_(0.01 * torch.randn_like(p))
    controlnet.eval().save_pretrained(tmp_path)
    again = MonaiControlNet_arch.from_pretrained(tmp_path).eval()
    latents, timesteps, control, context = inputs()
    expected = controlled_prediction(unet, controlnet, latents, timesteps, control, 0.7, context)
    assert torch.equal(
        controlled_prediction(unet, again, latents, timesteps, control, 0.7, context), expected
    )
    assert not torch.equal(expected, unet(latents, timesteps, context))


def test_a_2d_unet_on_diffusers_or_no_unet_is_refused_in_one_sentence():
    unet = DiffusionUNet_config(**{**UNET, "spatial_dims": 2})
    with pytest.raises(ConfigError, match="network.type: ControlNet"):
        MonaiControlNet_arch(MonaiControlNet_config(unet=unet.to_dict()))
    with pytest.raises(ConfigError, match="ldm.pretrained"):
        MonaiControlNet_arch(MonaiControlNet_config())
    other = trained_unet(channels=[8, 8])
    controlnet = MonaiControlNet_arch(MonaiControlNet_config(unet=trained_unet().config.to_dict()))
    with pytest.raises(ConfigError, match="does not fit"):
        controlnet.copy_encoder(other)


def test_gradient_checkpointing_gives_the_same_gradients_with_the_blocks_run_again():
    unet = trained_unet()
    latents, timesteps, control, context = inputs()
    grads, calls = [], []
    for checkpointing in (False, True):
        config = MonaiControlNet_config(
            conditioning_embedding_out_channels=[4, 8],
            unet=unet.config.to_dict(),
            gradient_checkpointing=checkpointing,
        )
        controlnet = MonaiControlNet_arch(config)
        torch.manual_seed(3)  # the zero convolutions would pass no gradient back to the blocks
        for p in controlnet.parameters():
            p.data.normal_(0.0, 0.1)
        ran = []
        for m in controlnet.modules():
            if isinstance(m, torch.nn.Conv3d):
                m.register_forward_hook(lambda *_, ran=ran: ran.append(1))
        down, mid = controlnet.residuals(latents, timesteps, control, encoder_hidden_states=context)
        (sum(r.square().mean() for r in down) + mid.square().mean()).backward()
        grads.append({n: p.grad for n, p in controlnet.named_parameters()})
        calls.append(len(ran))
    assert calls[1] > calls[0]  # the checkpointed blocks ran again in the backward pass
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-6, msg=name)
