"""A ControlNet that steers a frozen, trained LDM with a spatial control image (a mask, an edge map).

    ldm:     {pretrained: experiments/LDM_shapes/demo/final}      # an LDM_model run's final/
    control: {key: mask, conditioning_scale: 1.0, fusion: residual}     # or key: [mask, edges],
                                                                       # conditioning_scale: [1.0, 0.5]
    network: {type: ControlNet, conditioning_channels: 1, conditioning_embedding_out_channels: [16, 32, 64]}
             # type: MonaiControlNet over an LDM whose UNet runs on MONAI (3D, or backend: monai)

    loss = || UNet(zt, t, tokens(condition) | steered by ControlNet(zt, t, tokens(condition), controls)) - target ||^2

zt, the tokens and the target (epsilon | v | z0) are those of the frozen LDM; only the ControlNet trains.
"""

import json
import os

import torch
from diffusers import DDPMScheduler

from engine import BaseModel
from models.archs import define_network
from models.archs.autoencoder_outputs import decode_generated
from models.archs.controlnet_fusion import FUSIONS
from models.controlnet.pipeline import ControlledUNet, as_control, check_controlnet_type, per_control
from models.ldm.frozen_vae import encode_latents
from models.ldm.generation_files import copy_generation_folder
from models.ldm.pipeline import LDMPipeline
from models.ldm.sampling import SAMPLERS, make_sampler, sample_latents
from models.ldm.schedules import check_sampling_steps, training_target
from utils.config.schema import Key
from utils.errors import ConfigError
from utils.losses.vae import decoded_image

LDM_KEYS = {
    "pretrained": Key(
        None,
        "str",
        "An `LDM_model` run's `final/`, `best/` or `checkpoint-N/` folder (with `ldm.json`); required.",
        nullable=True,
    )
}
CONTROL_KEYS = {
    # 'any': a key or a list of keys, checked by control_keys (one sentence naming the key).
    "key": Key("mask", "any", "Batch key of the control image, or a list of keys (one ControlNet each)."),
    "conditioning_scale": Key(
        1.0,
        "float|list",
        "Weight of the control when sampling (0: the LDM alone), or one per control key.",
        minimum=0.0,
    ),
    "fusion": Key(
        "residual",
        "str",
        "How the control enters the UNet: residual addition, zero-initialised gates, FiLM, input concat.",
        FUSIONS,
    ),
}


def control_keys(value) -> list[str]:
    """`control.key` as a list of batch keys."""
    keys = value if isinstance(value, list) else [value]
    if not keys or not all(isinstance(k, str) and k.strip() for k in keys) or len(set(keys)) != len(keys):
        raise ConfigError(
            f"'control.key' is {value!r}; give a batch key (e.g. mask) or a list of distinct keys (e.g. [mask, edges])."
        )
    return keys


VAL_KEYS = {
    "sampler": Key(
        None, "str", "Sampler of the validation samples (default: the LDM's).", SAMPLERS, nullable=True
    ),
    "num_inference_steps": Key(None, "int", "Sampling steps (default: the LDM's).", minimum=1, nullable=True),
    "guidance_scale": Key(
        None,
        "float",
        "Classifier-free guidance (default: the LDM's; 1: the conditional prediction).",
        minimum=0.0,
        nullable=True,
    ),
    "num_samples": Key(8, "int", "Controls sampled per validation.", minimum=0),
    "num_images": Key(8, "int", "Rows in the logged grid.", minimum=1),
}


class ControlNet_model(BaseModel):
    """Only the ControlNet trains: the LDM's UNet, projector and VAE (with its stored scale factor) are
    loaded from its `final/` frozen and in eval mode, and the ControlNet's encoder starts as a copy of
    that UNet's. The LDM's condition (if any) is read from the batch key it was trained on, and the
    target is the LDM's (epsilon, v or z0)."""

    config_keys = {
        "": {
            "ldm": Key(None, "block", "The frozen, trained LDM that the ControlNet steers.", nullable=True),
            "control": Key(None, "block", "The control image and its weight.", nullable=True),
        },
        "ldm": LDM_KEYS,
        "control": CONTROL_KEYS,
        "val": VAL_KEYS,
    }

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        self.ldm_opt = self.config_values("ldm")
        self.control_opt = self.config_values("control")
        self.val_opt = self.config_values("val")
        self.gt_key = opt["val"]["gt_key"]
        self.control_keys = control_keys(self.control_opt["key"])
        self.conditioning_scales = per_control(self.control_opt["conditioning_scale"], len(self.control_keys))
        folder = self.ldm_opt["pretrained"]
        if not folder or not os.path.isfile(os.path.join(str(folder), "ldm.json")):
            raise ConfigError(
                f"'ldm.pretrained' is {folder!r}, which holds no trained LDM (ldm.json); point it at an LDM_model "
                "run's final/, best/ or checkpoint-N/ folder."
            )
        self.ldm_folder = os.path.abspath(str(folder))
        device = self.accelerator.device
        # Not in self.models: the LDM is neither trained, nor checkpointed, nor saved again by the core.
        self.ldm = LDMPipeline.from_final(self.ldm_folder, str(device))
        for frozen in (self.ldm.unet, self.ldm.projector, self.ldm.vae):
            if frozen is not None:
                frozen.eval().requires_grad_(False)
        self.noise_scheduler = DDPMScheduler.from_config(self.ldm.noise_scheduler_config)
        self.description = self.ldm.description
        check_sampling_steps(
            int(self._setting("num_inference_steps")),
            self.noise_scheduler.config.num_train_timesteps,
            timesteps_key="the LDM of 'ldm.pretrained' (its diffusion.num_train_timesteps)",
        )
        self.cond_key = self.description["condition"]["key"]

        fusion = {"mode": self.control_opt["fusion"], "controls": len(self.control_keys)}
        check_controlnet_type(self.ldm.unet, opt.network.get("type"))
        # The shape to copy: diffusers' UNet2DConditionModel config, or the DiffusionUNet config on MONAI.
        unet = self.ldm.unet.unet.config if self.ldm.unet.uses_diffusers else self.ldm.unet.config.to_dict()
        controlnet = define_network({**dict(opt.network), "unet": dict(unet), "fusion": fusion})
        controlnet.copy_encoder(self.ldm.unet.unet)
        self.controlnet = self.add_network("controlnet", controlnet)

    # ------------------------------------------------------------------ data

    def feed_data(self, data, is_train=True):
        needed = [self.gt_key, *self.control_keys]
        if self.condition_type != "none":
            needed.append(self.cond_key)
        for key in needed:
            if key not in data:
                raise ConfigError(
                    f"The batch has no key '{key}' (val.gt_key, control.key or the LDM's condition key); its "
                    f"keys are {sorted(data)}."
                )
        device = self.accelerator.device
        gt = data[self.gt_key].to(device)
        controls = [as_control(data[key], gt.ndim - 2).to(device) for key in self.control_keys]
        with torch.no_grad():
            latent = encode_latents(self.ldm.vae, gt).float()
            conditions = data[self.cond_key] if self.condition_type != "none" else None
            if torch.is_tensor(conditions):
                conditions = conditions.to(device)
            context, _ = self.ldm.context(conditions)
        for key, control in zip(self.control_keys, controls):
            self._check_control(key, control, latent)
        self.sample = {"gt": gt, "controls": controls, "latent": latent, "context": context}

    @property
    def condition_type(self) -> str:
        return self.description["condition"]["type"]

    def _check_control(self, key, control, latent):
        factor = self.controlnet.config.control_downsampling
        expected = (self.controlnet.config.conditioning_channels, *[s * factor for s in latent.shape[2:]])
        if tuple(control.shape[1:]) != expected:
            raise ConfigError(
                f"The control images '{key}' are {tuple(control.shape[1:])} but this ControlNet expects {expected} "
                f"(network.conditioning_channels, and latent size {tuple(latent.shape[2:])} times 2**(len("
                "network.conditioning_embedding_out_channels) - 1)); adjust those keys."
            )

    # ------------------------------------------------------------------ training

    def _loss(self, noise, timesteps):
        latents = self.sample["latent"]
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        unet = ControlledUNet(self.ldm.unet, self.controlnet, self.sample["controls"], 1.0)
        prediction = unet(noisy, timesteps, self.sample["context"])
        target = training_target(self.noise_scheduler, latents, noise, timesteps)
        return (prediction.float() - target.float()).pow(2).mean()

    def optimize_parameters(self):
        latents = self.sample["latent"]
        noise = torch.randn_like(latents)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (len(latents),), device=latents.device)
        loss = self._loss(noise, timesteps)
        self.step(loss, self.optimizers[0])
        return {"all": loss}

    # ------------------------------------------------------------------ validation

    def _setting(self, key):
        return self.val_opt[key] if self.val_opt[key] is not None else self.description[key]

    def validation_metric_names(self):
        return self.metric_names() | {"val_loss"}

    def validate_step(self, batch):
        """Logs the loss at fixed noise, then samples the first `val.num_samples` controls (each with its
        own seed) and logs control | target | sample grids and `val.metrics` of the samples against
        their targets."""
        self.feed_data(batch, is_train=False)
        latents = self.sample["latent"]
        n = len(latents)
        noise = torch.randn_like(latents)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (n,), device=latents.device)
        self.log({"loss": float(self._loss(noise, timesteps))})

        idx = self.validated_samples  # the index of this batch's first sample in the pass
        count = min(n, int(self.val_opt["num_samples"]) - idx)
        if count <= 0:
            return
        context = self.sample["context"][:count] if self.sample["context"] is not None else None
        controls = [c[:count] for c in self.sample["controls"]]
        control = controls[0]  # the one shown in the grid
        guidance = float(self._setting("guidance_scale"))
        null = None
        if context is not None and guidance != 1.0:
            null = self.ldm.projector.null_token.expand_as(context)
        sampled = sample_latents(
            ControlledUNet(self.ldm.unet, self.controlnet, controls, self.conditioning_scales),
            make_sampler(self._setting("sampler"), self.ldm.noise_scheduler_config),
            latents.shape[1:],
            [self.opt["seed"] + idx + i for i in range(count)],
            context,
            null,
            guidance_scale=guidance,
            num_inference_steps=int(self._setting("num_inference_steps")),
            device=latents.device,
        )
        with torch.no_grad():
            images = decoded_image(
                decode_generated(self.ldm.vae, sampled), self.description["recon_type"]
            ).float()
        target = self.sample["gt"][:count].float()
        self.log(pred=images.cpu().numpy(), target=target.cpu().numpy())
        if idx == 0:
            shown = min(count, int(self.val_opt["num_images"]))
            peak = control[:shown].amax(dim=tuple(range(1, control.ndim)), keepdim=True)
            shown_control = control[:shown] / peak.clamp(min=1e-8)
            panels = [_to_channels(shown_control, target.shape[1]), target[:shown], images[:shown]]
            grid = torch.cat(panels, dim=-1).cpu().numpy()
            self.log_images("val_control_target_sample", grid)

    # ------------------------------------------------------------------ what generation needs

    def save_archs(self, folder: str):
        """The ControlNet, then `ldm/` (what generation reads of the LDM's folder) and `controlnet.json`,
        in every weights folder (checkpoint-N, best/, final/): `generate.py --control` takes any.
        `controlnet.json` holds the control key(s), conditioning scale(s) and fusion mode; the arch's
        config.json holds the fusion mode and control count it is built with."""
        super().save_archs(folder)
        if not self.accelerator.is_main_process:
            return
        copy_generation_folder(self.ldm_folder, os.path.join(folder, "ldm"))
        description = {
            "ldm": "ldm",
            "ldm_source": self.ldm_folder,
            "controlnet": "controlnet",
            "control": dict(self.control_opt),
            "condition": self.description["condition"],
        }
        with open(os.path.join(folder, "controlnet.json"), "w") as f:
            json.dump(description, f, indent=2)


def _to_channels(control: torch.Tensor, channels: int) -> torch.Tensor:
    """A control image shown beside images of `channels` channels (its first channel, repeated)."""
    return (
        control if control.shape[1] == channels else control[:, :1].expand(-1, channels, *control.shape[2:])
    )
