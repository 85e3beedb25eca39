"""Stage 2: a conditional latent diffusion model in the latent space of a frozen stage-1 VAE.

    z0 = scale(VAE.encode(target))               frozen VAE, eval mode, its stored scale factor
    zt = sqrt(a_t) z0 + sqrt(1 - a_t) noise       diffusers' DDPMScheduler (linear, scaled_linear, quadratic, cosine)
    loss = w(t) * || UNet(zt, t, tokens(condition or null)) - target(epsilon | v | z0) ||^2

`tokens` come from the condition projector (`models/archs/condition_projector_arch.py`), trained with the
UNet: an image condition encoded by the same VAE, a vector of numbers (PSF coordinates), or a class
label; `condition.type: none` trains an unconditional model. With probability `train.cond_drop_prob` a
sample's tokens are replaced by the learned null token, so classifier-free guidance works at sampling.
`w(t)` is min-SNR-gamma when `train.snr_gamma` is set, else 1.

Validation logs the loss at fixed noise, then samples a fixed set of validation conditions (each with its
own condition and seed), decodes them and logs a grid (condition | target | sample) and the metrics of
`val.metrics` against the targets, beside two baselines on the same targets (`models/ldm/baselines.py`):
the mean training target and the same model with the conditions shuffled across the batch. At the end `final/` receives, besides the trained UNet and projector,
`scheduler/` (the noise schedule) and `ldm.json` (VAE reference, scale factor, condition and sampling
settings): all that `scripts/generate.py` needs; and `mean_target.safetensors`, the mean-target baseline
that a `-test` run (no training data) scores.
"""

import json
import os

import torch

from models.archs import define_network
from models.archs.diffusion_unet_arch import INJECTIONS
from models.base_model import BaseModel
from models.ldm.baselines import load_mean_target, log_baselines, mean_training_target, save_mean_target
from models.ldm.concat import ConcatConditionUNet, stacked
from models.ldm.frozen_vae import encode_latents, load_frozen_vae, vae_recon_type
from models.ldm.intensity import measure_target_intensity
from models.ldm.patched import SlidingWindowDenoiser, latent_size_of_window
from models.ldm.sampling import SAMPLERS, make_sampler, sample_latents
from models.ldm.schedules import (
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    make_noise_scheduler,
    min_snr_weights,
    training_target,
)
from models.vae.latent_scale import is_placeholder_scale
from utils import log_image, log_metrics
from utils.config_schema import Key
from utils.errors import ConfigError
from utils.misc import log_metric, log_validation_scalars
from utils.patches import patch_settings, random_windows
from utils.vae_losses import decoded_image

CONDITION_TYPES = ("image", "vector", "class", "none")
DEFAULT_CONDITION_KEY = {"vector": "coords", "class": "label"}

VAE_KEYS = {
    "pretrained": Key(
        None,
        "str",
        "A VAE run's `final/net_g` (or `final/`) folder, or `<root>/<name>/latest/final/net_g` (the newest "
        "finished run of that experiment); exactly one of this and `vae.monai_checkpoint`.",
        nullable=True,
    ),
    "monai_checkpoint": Key(
        None,
        "str",
        "A MONAI autoencoder `.pth` (state dict or `autoencoder_state_dict`), with `vae.network`.",
        nullable=True,
    ),
    "network": Key(None, "block", "The MonaiAutoencoderKL keys of `vae.monai_checkpoint`.", nullable=True),
    "scale_factor": Key(
        "auto",
        "any",
        "`auto` (stored; measured for a MONAI checkpoint), `stored`, `compute` (1/std of training latents) "
        "or a number.",
    ),
    "scale_batches": Key(8, "int", "Training batches used to measure the scale factor.", minimum=1),
}
CONDITION_KEYS = {
    "type": Key("image", "str", "`none` needs `network.with_conditioning: false`.", CONDITION_TYPES),
    "key": Key(
        None, "str", "Batch key of the condition (default: `val.lq_key`, `coords`, `label`).", nullable=True
    ),
    "indices": Key(
        None, "any", "Which numbers of a vector condition are used (default: all).", nullable=True
    ),
    "log_features": Key(
        None, "any", "Vector entries normalised in log (e.g. depths), by index.", nullable=True
    ),
    "inject": Key(
        "cross_attention",
        "str",
        "Where the condition enters the UNet: `cross_attention` (tokens attended to), `time_embedding` (a "
        "summary added to the time embedding: scales every ResNet block; vector and class conditions, 2D) or "
        "`both`.",
        INJECTIONS,
    ),
    "reciprocal_features": Key(
        None,
        "any",
        "Vector entries normalised as 1/value, by index: depths seen through a lens act by their inverse "
        "(defocus = 1/depth - 1/focus becomes a linear combination).",
        nullable=True,
    ),
    "num_classes": Key(0, "int", "Classes of a `class` condition.", minimum=0),
    "position_embedding": Key(True, "bool", "Sinusoidal positions on image tokens."),
    "concat": Key(
        False,
        "bool",
        "Stack an image condition's latent on the UNet input (`network.in_channels`: twice the latent's).",
    ),
    "fourier_features": Key(8, "int", "Fourier features per number of a vector condition.", minimum=0),
    "hidden_dim": Key(128, "int", "Width of the vector embedding's MLP.", minimum=1),
    "stats_batches": Key(8, "int", "Batches used to fit the vector normalisation.", minimum=1),
}
DIFFUSION_KEYS = {
    "num_train_timesteps": Key(1000, "int", "Training timesteps.", minimum=1),
    "beta_schedule": Key("scaled_linear", "str", "Noise schedule.", tuple(BETA_SCHEDULES)),
    "beta_start": Key(
        None,
        "float",
        "Default per schedule: 1e-4 (linear, quadratic), 0.00085 (scaled_linear).",
        nullable=True,
    ),
    "beta_end": Key(
        None, "float", "Default per schedule: 0.02 (linear, quadratic), 0.012 (scaled_linear).", nullable=True
    ),
    "prediction_type": Key("epsilon", "str", "What the UNet predicts.", tuple(PREDICTION_TYPES)),
}
TRAIN_KEYS = {
    "cond_drop_prob": Key(
        0.1,
        "float",
        "Probability of replacing a condition by the learned null token.",
        minimum=0.0,
        maximum=1.0,
    ),
    "snr_gamma": Key(
        None, "float", "Min-SNR-gamma loss weighting (e.g. 5); off when null.", minimum=0.0, nullable=True
    ),
    "cache_latents": Key(False, "bool", "Pre-encode the training set's latents once into the run folder."),
    "monai_checkpoint": Key(
        None,
        "str",
        "A PTI-LDM-VAE stage-2 `.pth` (`unet_state_dict` + `condition_projector_state_dict`, or "
        "`diffusion_unet.pt`) to continue training from or generate with (`network.type: DiffusionUNet`, MONAI).",
        nullable=True,
    ),
}
VAL_KEYS = {
    "sampler": Key("ddim", "str", "Sampler of the validation samples.", SAMPLERS),
    "num_inference_steps": Key(50, "int", "Sampling steps.", minimum=1),
    "guidance_scale": Key(1.0, "float", "Classifier-free guidance (1: the conditional prediction)."),
    "num_samples": Key(8, "int", "Conditions sampled per validation.", minimum=0),
    "num_images": Key(8, "int", "Rows in the logged grid.", minimum=1),
    "baselines": Key(
        True,
        "bool",
        "Score two baselines beside the samples: the mean training target and the same model with the "
        "conditions shuffled across the batch (a model that ignores its condition scores the same).",
    ),
    "baseline_batches": Key(16, "int", "Training batches averaged into the mean-target baseline.", minimum=1),
}


class LDM_model(BaseModel):
    config_keys = {
        "": {
            "vae": Key(None, "block", "The frozen stage-1 VAE.", nullable=True),
            "condition": Key(None, "block", "What the UNet is conditioned on.", nullable=True),
            "diffusion": Key(None, "block", "The noise schedule.", nullable=True),
        },
        "vae": VAE_KEYS,
        "condition": CONDITION_KEYS,
        "diffusion": DIFFUSION_KEYS,
        "train": TRAIN_KEYS,
        "val": VAL_KEYS,
    }

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        self.vae_opt = self.config_values("vae")
        self.cond_opt = self.config_values("condition")
        self.diffusion_opt = self.config_values("diffusion")
        self.hp = self.config_values("train")
        self.val_opt = self.config_values("val")
        self.gt_key, self.lq_key = opt["val"]["gt_key"], opt["val"]["lq_key"]
        self.cond_key = self.cond_opt["key"] or DEFAULT_CONDITION_KEY.get(self.cond_opt["type"], self.lq_key)

        # Not in self.models: the VAE is neither trained, nor checkpointed, nor saved with this run.
        self.vae, self.vae_reference = load_frozen_vae(
            self.vae_opt["pretrained"], self.vae_opt["monai_checkpoint"], self.vae_opt["network"]
        )
        self.vae.to(self.accelerator.device)
        self.recon_type = vae_recon_type(self.vae_opt["pretrained"])

        self.noise_scheduler = make_noise_scheduler(**self.diffusion_opt)
        unet = define_network(self._network_block(opt.network))
        self.concat = bool(self.cond_opt["concat"])
        if self.concat and self.cond_opt["type"] != "image":
            raise ConfigError(
                "'condition.concat: true' stacks an image condition's latent; it needs condition.type: image."
            )
        expected = self.vae.latent_channels * (2 if self.concat else 1)
        if unet.config.in_channels != expected or unet.config.out_channels != self.vae.latent_channels:
            raise ConfigError(
                f"'network.in_channels' / 'out_channels' are {unet.config.in_channels} / "
                f"{unet.config.out_channels} but the VAE's latents have {self.vae.latent_channels} channels"
                + (" and condition.concat stacks the condition latent on them" if self.concat else "")
                + f"; set in_channels: {expected} and out_channels: {self.vae.latent_channels}."
            )
        conditioned = self.cond_opt["type"] != "none"
        if conditioned != bool(unet.config.with_conditioning):
            raise ConfigError(
                f"'condition.type' is {self.cond_opt['type']} but 'network.with_conditioning' is "
                f"{unet.config.with_conditioning}; condition the UNet exactly when there is a condition."
            )
        self.unet = self.add_network("unet", unet)
        # The projector of a vector condition needs the vector's length, known once the data is; it is
        # built in setup_dataloaders (the engine collects the networks after that).
        self.projector = None

    def _network_block(self, network) -> dict:
        """The `network` block with `condition.inject` as the UNet's `condition_injection`."""
        inject = self.cond_opt["inject"]
        if inject != "cross_attention" and self.cond_opt["type"] == "image":
            raise ConfigError(
                f"'condition.inject: {inject}' needs a global condition (vector or class); an image "
                "condition has one token per latent position: use cross_attention or condition.concat."
            )
        block = dict(network)
        if block.get("condition_injection", inject) != inject:
            raise ConfigError(
                f"'network.condition_injection' is {block['condition_injection']!r} but 'condition.inject' is "
                f"{inject!r}; set condition.inject only."
            )
        block["condition_injection"] = inject
        return block

    # ------------------------------------------------------------------ set-up that needs the data

    def setup_dataloaders(self):
        super().setup_dataloaders()
        loader = self.train_loader if self.train_loader is not None else self.val_loader
        if self.cond_opt["type"] != "none":
            self.projector = self.add_network("projector", self._build_projector(loader))
        if self.hp["monai_checkpoint"]:  # PTI-LDM-VAE weights to continue training from or to generate with
            from models.ldm.pti_checkpoint import load_pti_ldm_checkpoint

            projector = self.projector.arch if self.projector is not None else None
            load_pti_ldm_checkpoint(self.hp["monai_checkpoint"], self.unet.arch, projector)
            self.logger.info(f"Loaded the PTI-LDM-VAE stage-2 weights of {self.hp['monai_checkpoint']}.")
        self._set_scale_factor(loader)
        self.mean_target = None
        if self.val_opt["baselines"] and self.train_loader is not None:
            self.mean_target = mean_training_target(
                self.train_loader, self.gt_key, self.val_opt["baseline_batches"]
            )
        elif self.val_opt["baselines"]:  # -test loads no training data: the mean saved with the weights
            pretrained = self.opt["path"].get("pretrained")
            self.mean_target = load_mean_target(pretrained)
            if self.mean_target is None and pretrained:
                self.logger.info(
                    f"'{pretrained}' holds no mean_target.safetensors (saved in final/ and best/ only), so "
                    "val_mean_target_* are not reported."
                )
        if self.hp["cache_latents"] and self.train_loader is not None:
            from models.ldm.latent_cache import cached_latent_loader

            self.train_loader = cached_latent_loader(self, self.train_loader)

    def _build_projector(self, loader):
        cond = self.cond_opt
        block = {
            "type": "ConditionProjector",
            "mode": cond["type"],
            "cross_attention_dim": self.unet.config.cross_attention_dim,
        }
        if cond["type"] == "image":
            block.update(in_channels=self.vae.latent_channels, position_embedding=cond["position_embedding"])
        elif cond["type"] == "class":
            block.update(num_classes=cond["num_classes"])
        else:
            first = self._vector(next(iter(loader)))
            block.update(
                in_channels=first.shape[1],
                fourier_features=cond["fourier_features"],
                hidden_dim=cond["hidden_dim"],
                log_features=list(cond["log_features"] or []),
                reciprocal_features=list(cond["reciprocal_features"] or []),
                global_token=cond["inject"] != "cross_attention",
            )
        projector = define_network(block)
        if cond["type"] == "vector":
            saved = os.path.join(self.opt["path"].get("pretrained") or "", "projector", "config.json")
            if os.path.isfile(saved):  # trained weights come with the normalisation they were trained with
                with open(saved) as f:
                    config = json.load(f)
                projector.set_vector_normalization(config["vector_shift"], config["vector_scale"])
            else:
                self._fit_vector_normalization(projector, loader)
        return projector

    def _vector(self, batch) -> torch.Tensor:
        if self.cond_key not in batch:
            raise ConfigError(
                f"The batch has no key '{self.cond_key}' (condition.key); its keys are {sorted(batch)}."
            )
        vector = torch.as_tensor(batch[self.cond_key]).float()
        vector = vector.reshape(len(vector), -1)
        if self.cond_opt["indices"] is not None:
            vector = vector[:, list(self.cond_opt["indices"])]
        return vector

    def _fit_vector_normalization(self, projector, loader):
        """Centre and scale each number to about [-1, 1] over the first training batches (after the log of
        `log_features`); a constant number (a fixed wavelength) keeps scale 1."""
        vectors = []
        for i, batch in enumerate(loader):
            if i >= self.cond_opt["stats_batches"]:
                break
            vectors.append(self._vector(batch))
        identity = torch.zeros(projector.config.in_channels), torch.ones(projector.config.in_channels)
        projector.set_vector_normalization(*[t.tolist() for t in identity])
        values = projector.normalize_vector(torch.cat(vectors))
        low, high = values.min(0).values, values.max(0).values
        shift = (high + low) / 2
        scale = torch.where(high - low > 1e-6, (high - low) / 2, torch.ones_like(low))
        projector.set_vector_normalization(shift.tolist(), scale.tolist())

    def _set_scale_factor(self, loader):
        """Use the VAE's stored scale factor; measure 1 / std of the training latents only when asked, or
        when the VAE has none (a MONAI checkpoint, or a VAE saved before it was measured)."""
        setting = self.vae_opt["scale_factor"]
        if isinstance(setting, (int, float)) and not isinstance(setting, bool):
            self.vae.config.scaling_factor = float(setting)
        elif setting == "compute" or (
            setting == "auto" and (self.vae_opt["monai_checkpoint"] or is_placeholder_scale(self.vae))
        ):
            if setting == "auto" and not self.vae_opt["monai_checkpoint"]:
                self.logger.info(
                    f"The VAE in '{self.vae_opt['pretrained']}' holds its placeholder scaling_factor "
                    f"{self.vae.config.scaling_factor:g} (saved before its first validation, or with "
                    "compute_scale_factor: false), so stage 2 measures the factor on the training latents."
                )
            self.vae.config.scaling_factor = 1.0
            total, total_sq, count = 0.0, 0.0, 0
            with torch.no_grad():
                for i, batch in enumerate(loader):
                    if i >= self.vae_opt["scale_batches"]:
                        break
                    z = self.encode(batch[self.gt_key]).double()
                    total, total_sq, count = (
                        total + z.sum().item(),
                        total_sq + (z**2).sum().item(),
                        count + z.numel(),
                    )
            mean = total / count
            self.vae.config.scaling_factor = 1.0 / max((total_sq / count - mean**2) ** 0.5, 1e-8)
            self.logger.info(f"Measured the latent scale factor: {self.vae.config.scaling_factor:.5g}.")
        elif setting not in ("auto", "stored"):
            raise ConfigError(f"'vae.scale_factor' is {setting!r}; use auto, stored, compute or a number.")
        self.scale_factor = float(self.vae.config.scaling_factor)

    # ------------------------------------------------------------------ encoding and conditions

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.accelerator.autocast():
            return encode_latents(self.vae, x.to(self.accelerator.device)).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.accelerator.autocast():
            return decoded_image(self.vae.decode(self.vae.unscale_latents(z)), self.recon_type).float()

    def feed_data(self, data, is_train=True):
        device = self.accelerator.device
        sample = {}
        if "latent" in data:  # from the latent cache
            sample["latent"] = data["latent"].to(device)
        else:
            if self.gt_key not in data:
                raise ConfigError(
                    f"The batch has no key '{self.gt_key}' (val.gt_key); its keys are {sorted(data)}."
                )
            sample["gt"] = data[self.gt_key].to(device)
            sample["latent"] = self.encode(sample["gt"])
        self.latent_shape = tuple(sample["latent"].shape[1:])
        kind = self.cond_opt["type"]
        if kind == "image":
            if "cond_latent" in data:
                sample["cond_latent"] = data["cond_latent"].to(device)
            else:
                if self.cond_key not in data:
                    raise ConfigError(
                        f"The batch has no condition image '{self.cond_key}' (condition.key, else val.lq_key); "
                        f"its keys are {sorted(data)}."
                    )
                sample["cond"] = data[self.cond_key].to(device)
                sample["cond_latent"] = self.encode(sample["cond"])
        elif kind == "vector":
            sample["cond"] = self._vector(data).to(device)
        elif kind == "class":
            sample["cond"] = torch.as_tensor(data[self.cond_key]).to(device)
        self.sample = sample
        if is_train and self.latent_window() is not None:  # train.patched: one random window per sample
            self.crop_latents(sample)

    def latent_window(self):
        """The latent size of a `train.patch_size` window under `train.patched`, else None."""
        settings = patch_settings(self.opt["train"], len(self.latent_shape) - 1)
        if settings is None:
            return None
        if getattr(self, "_latent_window", None) is None:
            self._latent_window = latent_size_of_window(self, settings[0])
        return self._latent_window

    def crop_latents(self, sample):
        keys = [k for k in ("latent", "cond_latent") if k in sample]
        for key, crop in zip(keys, random_windows([sample[k] for k in keys], self.latent_window())):
            sample[key] = crop

    def projector_input(self) -> torch.Tensor | None:
        if self.projector is None:
            return None
        return self.sample["cond_latent"] if self.cond_opt["type"] == "image" else self.sample["cond"]

    # ------------------------------------------------------------------ training

    def diffusion_loss(self, latents, noise, timesteps, drop):
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        condition = self.projector_input()
        context = self.projector(condition, drop) if condition is not None else None
        if self.concat:
            noisy = stacked(noisy, self.sample["cond_latent"], drop)
        prediction = self.unet(noisy, timesteps, context)
        target = training_target(self.noise_scheduler, latents, noise, timesteps)
        per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(1)
        mse = per_sample.mean()
        if self.hp["snr_gamma"]:
            per_sample = per_sample * min_snr_weights(
                self.noise_scheduler, timesteps, float(self.hp["snr_gamma"])
            )
        return per_sample.mean(), mse

    def optimize_parameters(self):
        latents = self.sample["latent"]
        batch = len(latents)
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (batch,), device=latents.device
        )
        # A mask every step, even at probability 0: the null token then always takes part in the graph,
        # which DDP without find_unused_parameters needs.
        drop = torch.rand(batch, device=latents.device) < float(self.hp["cond_drop_prob"])
        loss, mse = self.diffusion_loss(latents, noise, timesteps, drop)
        self.step(loss)
        return {"all": loss, "mse": mse}

    # ------------------------------------------------------------------ sampling and validation

    def sample_images(
        self, condition, shape, seeds, sampler=None, num_inference_steps=None, guidance_scale=None
    ):
        """Sample and decode len(seeds) images of latent `shape`, sample i under `condition[i]`."""
        sampler = sampler or self.val_opt["sampler"]
        guidance_scale = self.val_opt["guidance_scale"] if guidance_scale is None else guidance_scale
        unet, context, null = self.unet, None, None
        if self.latent_window() is not None and tuple(shape[1:]) != self.latent_window():
            # whole latents, window by window: the denoiser takes the conditions and makes its own tokens
            unet = SlidingWindowDenoiser(
                self.unet,
                self.projector,
                "concat" if self.concat else self.cond_opt["type"],
                self.latent_window(),
                patch_settings(self.opt["train"], len(shape) - 1)[1],
                float(guidance_scale),
            )
            context, guidance_scale = condition, 1.0
        elif condition is not None:
            if self.concat:
                unet = ConcatConditionUNet(self.unet, condition)
            context = self.projector(condition)
            if guidance_scale != 1.0:
                null = self.projector.null_tokens(condition)
        latents = sample_latents(
            unet,
            make_sampler(sampler, self.noise_scheduler.config),
            shape,
            seeds,
            context,
            null,
            guidance_scale=float(guidance_scale),
            num_inference_steps=num_inference_steps or self.val_opt["num_inference_steps"],
            device=self.accelerator.device,
        )
        return latents, self.decode(latents)

    def validate_step(self, batch, idx, lq_key, gt_key):
        self.feed_data(batch, is_train=False)
        latents = self.sample["latent"]
        n = len(latents)
        # The validation RNG is seeded by BaseModel: the same noise and timesteps at every validation.
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (n,), device=latents.device
        )
        if self.latent_window() is not None:  # the loss on one window per image, as in training
            whole = dict(self.sample)
            self.crop_latents(self.sample)
            noise = torch.randn_like(self.sample["latent"])
            _, mse = self.diffusion_loss(self.sample["latent"], noise, timesteps, None)
            self.sample = whole
        else:
            _, mse = self.diffusion_loss(latents, noise, timesteps, None)
        log_validation_scalars(self.accelerator, {"val_loss": float(mse)}, self.global_step, n=n)

        count = min(n, int(self.val_opt["num_samples"]) - idx)
        if count > 0 and "gt" in self.sample:
            condition = self.projector_input()
            condition = condition[:count] if condition is not None else None
            seeds = [self.opt["seed"] + idx + i for i in range(count)]
            _, images = self.sample_images(condition, latents.shape[1:], seeds)
            target = self.sample["gt"][:count].float()
            metrics_opt = self.opt["val"].get("metrics") or {}
            log_metrics(
                images.cpu().numpy(),
                target.cpu().numpy(),
                metrics_opt,
                self.accelerator,
                self.global_step,
                "val_",
            )
            if self.val_opt["baselines"]:
                log_baselines(self, condition, latents.shape[1:], seeds, target, metrics_opt)
            if idx == 0:
                shown = min(count, int(self.val_opt["num_images"]))
                panels = [target[:shown], images[:shown]]
                if "cond" in self.sample and self.sample["cond"].shape == self.sample["gt"].shape:
                    panels.insert(0, self.sample["cond"][:shown].float())
                    name = "val_cond_target_sample"
                else:  # a vector or class condition has no picture: show the error instead
                    panels.append((images[:shown] - target[:shown]).abs())
                    name = "val_target_sample_diff"
                grid = torch.cat(panels, dim=-1)
                log_image(self.opt, self.accelerator, grid.cpu().numpy(), name, self.global_step)
        return idx + n

    # ------------------------------------------------------------------ what generation needs

    def on_train_end(self):
        """Write `final/scheduler/` and `final/ldm.json` beside the UNet and projector the core saves."""
        log_metric(self.accelerator, {"latent_scale_factor": self.scale_factor}, self.global_step)
        self.write_generation_files(os.path.join(self.run_dir, "final"))

    def write_generation_files(self, final: str):
        """`scheduler/`, `ldm.json` and `mean_target.safetensors` into `final` (a run's final/ or best/ folder)."""
        if not hasattr(self, "_intensity"):
            loader = self.val_loader if self.val_loader is not None else self.train_loader
            self._intensity = measure_target_intensity(loader, self.gt_key, self.cond_opt["stats_batches"])
        if not self.accelerator.is_main_process:
            return
        os.makedirs(final, exist_ok=True)
        self.noise_scheduler.save_pretrained(os.path.join(final, "scheduler"))
        description = {
            "vae": self.vae_reference,
            "scale_factor": self.scale_factor,
            "recon_type": self.recon_type,
            "latent_shape": list(self.latent_shape) if getattr(self, "latent_shape", None) else None,
            "condition": {
                "type": self.cond_opt["type"],
                "key": self.cond_key,
                "indices": self.cond_opt["indices"],
                "concat": self.concat,
                "inject": self.cond_opt["inject"],
            },
            "unet": "unet",
            "projector": "projector" if self.projector is not None else None,
            "sampler": self.val_opt["sampler"],
            "num_inference_steps": self.val_opt["num_inference_steps"],
            "guidance_scale": self.val_opt["guidance_scale"],
            "intensity": self._intensity,
            "mean_target": save_mean_target(self.mean_target, final)
            if self.mean_target is not None
            else None,
            "patched": {
                "window": list(self._latent_window),
                "overlap": patch_settings(self.opt["train"], len(self._latent_window))[1],
            }
            if getattr(self, "_latent_window", None)
            else None,
        }
        with open(os.path.join(final, "ldm.json"), "w") as f:
            json.dump(description, f, indent=2)
