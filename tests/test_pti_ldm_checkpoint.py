"""PTI-LDM-VAE stage-2 checkpoints load into DiffusionUNet (MONAI backend) and the condition projector."""

import os

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet
from safetensors.torch import load_file

from models.archs.condition_projector_arch import ConditionProjector_arch, ConditionProjector_config
from models.archs.diffusion_unet_arch import DiffusionUNet_arch, DiffusionUNet_config
from models.ldm.pti_checkpoint import load_pti_ldm_checkpoint
from tests.conftest import run_folder, run_trainer
from tests.helpers import TINY_LDM, ldm_config
from utils.errors import ConfigError, DataError

UNET = {k: v for k, v in TINY_LDM["network"].items() if k != "type"}


def pti_stage2(tmp_path, seed=0):
    """PTI-LDM-VAE's stage 2 as it saves it: MONAI's UNet and a plain linear projector."""
    torch.manual_seed(seed)
    unet = DiffusionModelUNet(spatial_dims=2, with_conditioning=True, **UNET)
    projector = torch.nn.Linear(UNET["in_channels"], UNET["cross_attention_dim"])
    optimizer = torch.optim.Adam(list(unet.parameters()) + list(projector.parameters()))
    path = tmp_path / "checkpoint_epoch3.pth"
    torch.save(
        {
            "epoch": 3,
            "unet_state_dict": unet.state_dict(),
            "condition_projector_state_dict": projector.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "best_val_loss": 0.25,
        },
        path,
    )
    torch.save(unet.state_dict(), tmp_path / "diffusion_unet.pt")
    return unet.eval(), projector, path


def ours(position_embedding=False):
    unet = DiffusionUNet_arch(DiffusionUNet_config(backend="monai", **UNET)).eval()
    projector = ConditionProjector_arch(
        ConditionProjector_config(
            mode="image", in_channels=2, cross_attention_dim=32, position_embedding=position_embedding
        )
    )
    return unet, projector


def test_both_files_load_with_identical_outputs(tmp_path):
    reference_unet, reference_projector, path = pti_stage2(tmp_path)
    z, cond = torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8)
    t = torch.tensor([5, 50, 99])
    with torch.no_grad():
        # PTI-LDM-VAE's tokens: the condition latent as a (B, H*W, C) sequence through the linear layer
        context = reference_projector(cond.permute(0, 2, 3, 1).reshape(3, 64, 2))
        expected = reference_unet(z, timesteps=t, context=context)
        unet, projector = ours()
        load_pti_ldm_checkpoint(str(path), unet, projector)
        assert torch.equal(projector(cond), context)
        assert torch.equal(unet(z, t, projector(cond)), expected)
        unet_only, _ = ours()
        load_pti_ldm_checkpoint(str(tmp_path / "diffusion_unet.pt"), unet_only)
        assert torch.equal(unet_only(z, t, context), expected)


def test_what_does_not_fit_is_named(tmp_path):
    _, _, path = pti_stage2(tmp_path)
    unet, projector = ours(position_embedding=True)
    with pytest.raises(ConfigError, match="position_embedding: false"):
        load_pti_ldm_checkpoint(str(path), unet, projector)
    wider = DiffusionUNet_arch(DiffusionUNet_config(backend="monai", **{**UNET, "channels": [16, 48]}))
    with pytest.raises(DataError, match="does not fit.*channels"):
        load_pti_ldm_checkpoint(str(path), wider)
    with pytest.raises(ConfigError, match="backend: monai"):
        load_pti_ldm_checkpoint(str(path), DiffusionUNet_arch(DiffusionUNet_config(**UNET)))


@pytest.mark.e2e
def test_stage2_continues_from_a_pti_checkpoint(stage1, tmp_path):
    reference_unet, reference_projector, path = pti_stage2(tmp_path)
    config = ldm_config(tmp_path, stage1, condition={"type": "image", "position_embedding": False})
    config["network"] = {**config["network"], "backend": "monai"}
    # learning rate 0: final/ holds the checkpoint's weights, ready for scripts/generate.py
    config["train"].update(max_train_steps=1, validation_steps=1, monai_checkpoint=str(path))
    config["train"]["optim"] = {"learning_rate": 0.0, "adam_weight_decay": 0.0}
    config["val"]["num_samples"] = 2
    assert run_trainer(config, tmp_path) == 0
    final = os.path.join(run_folder(config), "final")
    unet = load_file(os.path.join(final, "unet", "model.safetensors"))
    for key, value in reference_unet.state_dict().items():
        assert torch.equal(unet[f"unet.{key}"], value), key
    projector = load_file(os.path.join(final, "projector", "model.safetensors"))
    assert torch.equal(projector["proj.weight"], reference_projector.weight)

    from models.ldm.pipeline import LDMPipeline

    pipe = LDMPipeline.from_final(final)
    assert pipe(torch.rand(2, 1, 16, 16), seeds=[0, 1], num_inference_steps=2).shape == (2, 1, 16, 16)
