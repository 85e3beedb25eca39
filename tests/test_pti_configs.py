"""The shipped PTI-LDM-VAE YAMLs hold the design documents' tables: MONAI networks built from those exact
tables load through them (strict, identical outputs)."""

import torch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet, PatchDiscriminator

from tests.helpers import load_experiment

AUTOENCODER_TABLE = {
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 4,
    "channels": [64, 128, 256],
    "num_res_blocks": 2,
    "norm_num_groups": 32,
    "attention_levels": [False, False, False],
    "with_encoder_nonlocal_attn": True,
    "with_decoder_nonlocal_attn": True,
}
UNET_TABLE = {
    "spatial_dims": 2,
    "in_channels": 4,
    "out_channels": 4,
    "channels": [32, 64, 128, 256],
    "attention_levels": [False, True, True, True],
    "num_head_channels": [0, 32, 32, 32],
    "num_res_blocks": 2,
    "with_conditioning": True,
    "cross_attention_dim": 512,
}


def test_the_vae_yaml_loads_an_autoencoder_and_discriminator_of_the_documented_tables(tmp_path):
    from models.archs import define_network
    from models.pti.vae import PTIVAEStart

    torch.manual_seed(0)
    autoencoder = AutoencoderKL(**AUTOENCODER_TABLE).eval()
    # PTI-LDM-VAE's discriminator, as its VAE trainer builds it
    discriminator = PatchDiscriminator(
        spatial_dims=2, num_layers_d=3, channels=32, in_channels=1, out_channels=1, norm="INSTANCE"
    ).eval()
    path = tmp_path / "checkpoint_epoch1.pth"
    torch.save(
        {
            "epoch": 1,
            "autoencoder_state_dict": autoencoder.state_dict(),
            "discriminator_state_dict": discriminator.state_dict(),
        },
        path,
    )
    opt = load_experiment("checkpoints/VAE/pti_ldm_vae.yml", f"train.monai_checkpoint={path}")
    generator, ours_d = define_network(opt.network).eval(), define_network(opt.network_d).eval()
    PTIVAEStart(str(path), generator, ours_d)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            generator(x, sample_posterior=False).reconstruction, autoencoder.reconstruct(x), rtol=0, atol=1e-5
        )
        torch.testing.assert_close(ours_d(x), discriminator(x)[-1], rtol=0, atol=1e-5)


def test_the_ldm_yaml_loads_a_unet_and_projector_of_the_documented_table(tmp_path):
    from models.archs import define_network
    from models.ldm.pti_checkpoint import load_pti_ldm_checkpoint

    torch.manual_seed(0)
    unet = DiffusionModelUNet(**UNET_TABLE).eval()
    projector = torch.nn.Linear(4, 512)  # create_condition_projector(4, 512)
    path = tmp_path / "checkpoint_epoch50.pth"
    torch.save(
        {
            "epoch": 50,
            "unet_state_dict": unet.state_dict(),
            "condition_projector_state_dict": projector.state_dict(),
        },
        path,
    )
    opt = load_experiment("checkpoints/LDM/pti_ldm_vae.yml", f"train.monai_checkpoint={path}")
    assert dict(opt.vae.network) == AUTOENCODER_TABLE
    condition = opt.condition
    ours = define_network(opt.network).eval()
    our_projector = define_network(
        {
            "type": "ConditionProjector",
            "mode": condition.type,
            "in_channels": opt.vae.network.latent_channels,
            "cross_attention_dim": opt.network.cross_attention_dim,
            "position_embedding": condition.position_embedding,
        }
    )
    load_pti_ldm_checkpoint(str(path), ours, our_projector)
    z, cond, t = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.tensor([500])
    with torch.no_grad():
        context = projector(cond.permute(0, 2, 3, 1).reshape(1, 64, 4))
        torch.testing.assert_close(
            ours(z, t, our_projector(cond)), unet(z, timesteps=t, context=context), rtol=0, atol=1e-5
        )
