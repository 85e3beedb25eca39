"""The scripts' networks straight from PTI-LDM-VAE's `.pth` files and a YAML giving their network keys.

    vae, opt = pti_vae("autoencoder_epoch73.pth", "checkpoints/VAE/pti_ldm_vae.yml")
    pipe = pti_ldm_pipeline("checkpoint_epoch50.pth", opt)        # opt: the checked LDM YAML

The VAE keys are the YAML's `network` block (a `MonaiAutoencoderKL`) or its `vae.network` block (an
LDM YAML). The stage-2 pipeline is the UNet of the YAML's `network` block (`backend: monai`) and, for an
image condition, the linear projector, both loaded from `checkpoint_epochN.pth` (or the UNet alone from
`diffusion_unet.pt`); the VAE is `vae.monai_checkpoint` with `vae.network`, the noise schedule the
`diffusion` block and the sampling settings the `val` block. Such files carry no latent scale factor:
`vae.scale_factor` as a number is used, otherwise 1 / std of the first batch's condition latents, as
PTI-LDM-VAE's own inference measures it on its first batch.
"""

from pathlib import Path

import torch
import yaml

from models.archs import define_network
from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch
from models.ldm.frozen_vae import encode_latents, load_frozen_vae
from models.ldm.pipeline import LDMPipeline
from models.ldm.pti_checkpoint import load_pti_ldm_checkpoint
from models.ldm.schedules import make_noise_scheduler
from utils.errors import UserError


def pti_vae(path: Path, config: Path, device: str = "cpu"):
    """(the MonaiAutoencoderKL loaded from `path`, the YAML's content) for `scripts/vae_reconstruct.py`."""
    opt = yaml.safe_load(Path(config).read_text()) or {}
    network = opt.get("network") or {}
    if network.get("type") != "MonaiAutoencoderKL":
        network = (opt.get("vae") or {}).get("network") or {}
    if not network:
        raise UserError(
            f"--config '{config}' has no MonaiAutoencoderKL 'network' block (nor a 'vae.network' block) with the "
            "keys of the .pth; use checkpoints/VAE/pti_ldm_vae.yml or a copy of it."
        )
    keys = {k: v for k, v in network.items() if k != "type"}
    return MonaiAutoencoderKL_arch.from_monai_checkpoint(path, **keys).to(device), opt


def pti_ldm_pipeline(path: Path, opt, device: str = "cpu") -> "PTILDMPipeline":
    """The generation pipeline of a PTI-LDM-VAE stage-2 file under the checked LDM YAML `opt`."""
    vae_opt, cond, val = opt["vae"], opt["condition"], opt["val"]
    if not vae_opt.get("monai_checkpoint"):
        raise UserError(
            "A PTI-LDM-VAE stage 2 needs its autoencoder: give --vae autoencoder_epochN.pth (or set "
            "'vae.monai_checkpoint' in the --config)."
        )
    vae, reference = load_frozen_vae(None, vae_opt["monai_checkpoint"], vae_opt.get("network"))
    if cond["type"] not in ("image", "none") or cond.get("concat"):
        raise UserError(
            f"--config says condition.type {cond['type']}{' with concat' if cond.get('concat') else ''}, but a "
            "PTI-LDM-VAE stage 2 is conditioned on an image through a linear layer: condition.type: image."
        )
    unet = define_network({**opt["network"], "condition_injection": "cross_attention"})
    projector = None
    if cond["type"] == "image":
        projector = define_network(
            {
                "type": "ConditionProjector",
                "mode": "image",
                "in_channels": vae.latent_channels,
                "cross_attention_dim": unet.config.cross_attention_dim,
                "position_embedding": cond["position_embedding"],
            }
        )
    load_pti_ldm_checkpoint(str(path), unet, projector)
    setting = vae_opt.get("scale_factor")
    factor = float(setting) if isinstance(setting, (int, float)) and not isinstance(setting, bool) else None
    description = {
        "vae": reference,
        "scale_factor": factor,
        "recon_type": "l1",
        "latent_shape": None,
        "condition": {"type": cond["type"], "indices": None, "concat": False, "inject": "cross_attention"},
        "unet": str(path),
        "projector": str(path) if projector is not None else None,
        "sampler": val["sampler"],
        "num_inference_steps": val["num_inference_steps"],
        "guidance_scale": val["guidance_scale"],
        "intensity": None,
        "patched": None,
    }
    if factor is not None:
        vae.config.scaling_factor = factor
    scheduler = make_noise_scheduler(**opt["diffusion"]).config
    projector = projector.to(device).eval() if projector is not None else None
    return PTILDMPipeline(unet.to(device).eval(), projector, scheduler, vae.to(device), description)


class PTILDMPipeline(LDMPipeline):
    """`LDMPipeline` whose latent scale factor, when the YAML gives none, is measured on the first batch
    of conditions it is given."""

    def projector_inputs(self, conditions):
        if self.description["scale_factor"] is None:
            if conditions is None or self.condition_type != "image":
                raise UserError(
                    "A PTI-LDM-VAE file stores no latent scale factor and an unconditional model has no "
                    "images to measure it on: set 'vae.scale_factor' in the --config to the one it trained with."
                )
            with torch.no_grad():
                self.vae.config.scaling_factor = 1.0
                std = float(encode_latents(self.vae, conditions.float()).std())
            self.vae.config.scaling_factor = self.description["scale_factor"] = 1.0 / max(std, 1e-8)
            print(
                f"Latent scale factor {self.description['scale_factor']:.5g}: 1 / std of the first batch's "
                "condition latents (set 'vae.scale_factor' in the --config to use the training's)."
            )
        return super().projector_inputs(conditions)
