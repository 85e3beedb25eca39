"""Stage 2: a conditional latent diffusion model in the latent space of a frozen stage-1 VAE.

    z0 = scale(VAE.encode(target))               frozen VAE, eval mode, its stored scale factor
    zt = sqrt(a_t) z0 + sqrt(1 - a_t) noise       diffusers' DDPMScheduler (linear, scaled_linear, quadratic, cosine)
    loss = w(t) * || UNet(zt, t, tokens(condition or null)) - target(epsilon | v | z0) ||^2

`tokens` come from the condition projector (`models/archs/condition_projector_arch.py`), trained with
the UNet; `w(t)` is min-SNR-gamma when `train.snr_gamma` is set, else 1.
"""

import torch

from engine import BaseModel
from models.archs import define_network
from models.archs.autoencoder_outputs import decode_generated
from models.ldm.baselines import baseline_mean_target, baseline_metric_names, log_baselines
from models.ldm.concat import ConcatConditionUNet, stacked
from models.ldm.conditioning import (
    CONDITION_KEYS,
    build_projector,
    check_condition_lists,
    check_unet_fits_condition,
    condition_inputs,
    condition_key,
    projector_input,
    unet_network_block,
)
from models.ldm.frozen_vae import encode_latents, load_frozen_vae, set_scale_factor, vae_recon_type
from models.ldm.generation_files import sampled_latent_shape, write_generation_files
from models.ldm.intensity import measure_target_intensity
from models.ldm.keys import DIFFUSION_KEYS, TRAIN_KEYS, VAE_KEYS, VAL_KEYS
from models.ldm.patched import SlidingWindowDenoiser, latent_size_of_window
from models.ldm.pti_checkpoint import PTILDMStart
from models.ldm.sampling import make_sampler, sample_latents
from models.ldm.schedules import (
    check_sampling_steps,
    make_noise_scheduler,
    min_snr_weights,
    training_target,
)
from utils.config.schema import Key
from utils.errors import ConfigError
from utils.images.patches import patch_settings, random_windows
from utils.losses.vae import decoded_image


class LDM_model(BaseModel):
    """The condition is an image encoded by the same VAE, a vector of numbers (PSF coordinates), or a
    class label; `condition.type: none` trains an unconditional model. With probability
    `train.cond_drop_prob` a sample's tokens are replaced by the learned null token, so classifier-free
    guidance works at sampling."""

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
        self.latent_window_size = None  # under train.patched, measured by latent_window() when first needed
        self.vae_opt = self.config_values("vae")
        self.cond_opt = self.config_values("condition")
        self.diffusion_opt = self.config_values("diffusion")
        self.hp = self.config_values("train")
        self.val_opt = self.config_values("val")
        self.gt_key, self.lq_key = opt["val"]["gt_key"], opt["val"]["lq_key"]
        check_condition_lists(self.cond_opt)
        self.cond_key = condition_key(self.cond_opt, self.lq_key)

        # Not in self.models: the VAE is neither trained, nor checkpointed, nor saved with this run.
        self.vae, self.vae_reference = load_frozen_vae(
            self.vae_opt["pretrained"], self.vae_opt["monai_checkpoint"], self.vae_opt["network"]
        )
        self.vae.to(self.accelerator.device)
        self.recon_type = vae_recon_type(self.vae_opt["pretrained"])

        self.noise_scheduler = make_noise_scheduler(**self.diffusion_opt)
        check_sampling_steps(
            self.val_opt["num_inference_steps"], self.noise_scheduler.config.num_train_timesteps
        )
        unet = define_network(unet_network_block(self, opt.network))
        self.concat = bool(self.cond_opt["concat"])
        check_unet_fits_condition(self, unet)
        self.unet = self.add_network("unet", unet)
        # The projector of a vector condition needs the vector's length, known once the data is; it is
        # built in setup_dataloaders (the engine collects the networks after that).
        self.projector = None

    # ------------------------------------------------------------------ set-up that needs the data

    def setup_dataloaders(self):
        super().setup_dataloaders()
        loader = self.train_loader if self.train_loader is not None else self.val_loader
        if self.cond_opt["type"] != "none":
            self.projector = self.add_network("projector", build_projector(self, loader))
        # PTI-LDM-VAE weights to continue training from or to generate with (and its training state)
        self.pti = PTILDMStart(self) if self.hp["monai_checkpoint"] else None
        set_scale_factor(self, loader)
        self.mean_target = baseline_mean_target(self) if self.val_opt["baselines"] else None
        # Stored with the weights (ldm.json): the data's range and the latent size generation samples at.
        generation_loader = self.val_loader if self.val_loader is not None else self.train_loader
        self.target_intensity = measure_target_intensity(
            generation_loader, self.gt_key, self.cond_opt["stats_batches"]
        )
        phase = "val" if self.val_loader is not None else "train"
        self.latent_shape = sampled_latent_shape(self, generation_loader, phase)
        if self.hp["cache_latents"] and self.train_loader is not None:
            from models.ldm.latent_cache import cached_latent_loader

            self.train_loader = cached_latent_loader(self, self.train_loader)

    # ------------------------------------------------------------------ encoding and conditions

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.accelerator.autocast():
            return encode_latents(self.vae, x.to(self.accelerator.device)).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.accelerator.autocast():
            return decoded_image(decode_generated(self.vae, z), self.recon_type).float()

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
        if self.latent_shape is None:  # not known at set-up (see sampled_latent_shape)
            self.latent_shape = tuple(sample["latent"].shape[1:])
        sample.update(condition_inputs(self, data, device))
        self.sample = sample
        if is_train and self.latent_window() is not None:  # train.patched: one random window per sample
            self.crop_latents(sample)

    def latent_window(self):
        """The latent size of a `train.patch_size` window under `train.patched`, else None."""
        settings = patch_settings(self.opt["train"], len(self.latent_shape) - 1)
        if settings is None:
            return None
        if self.latent_window_size is None:
            self.latent_window_size = latent_size_of_window(self, settings[0])
        return self.latent_window_size

    def crop_latents(self, sample):
        keys = [k for k in ("latent", "cond_latent") if k in sample]
        for key, crop in zip(keys, random_windows([sample[k] for k in keys], self.latent_window())):
            sample[key] = crop

    # ------------------------------------------------------------------ training

    def diffusion_loss(self, latents, noise, timesteps, drop):
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        condition = projector_input(self)
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

    def validate_step(self, batch):
        """Logs the loss at fixed noise, then samples a fixed set of validation conditions (each with its
        own condition and seed), decodes them and logs a grid (condition | target | sample) and the
        metrics of `val.metrics` against the targets, beside two baselines on the same targets
        (`models/ldm/baselines.py`): the mean training target and the same model with the conditions
        shuffled across the batch."""
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
        self.log({"loss": float(mse)})

        idx = self.validated_samples  # the index of this batch's first sample in the pass
        count = min(n, int(self.val_opt["num_samples"]) - idx)
        if count > 0 and "gt" in self.sample:
            condition = projector_input(self)
            condition = condition[:count] if condition is not None else None
            seeds = [self.opt["seed"] + idx + i for i in range(count)]
            _, images = self.sample_images(condition, latents.shape[1:], seeds)
            target = self.sample["gt"][:count].float()
            self.log(pred=images.cpu().numpy(), target=target.cpu().numpy())
            if self.val_opt["baselines"]:
                log_baselines(self, condition, latents.shape[1:], seeds, target)
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
                self.log_images(name, grid.cpu().numpy())

    # ------------------------------------------------------------------ what generation needs

    def class_targets(self):
        """A `class` condition's embedding table against the data's labels."""
        if self.cond_opt["type"] != "class":
            return []
        return [("'condition.num_classes'", int(self.cond_opt["num_classes"]), self.cond_key)]

    def input_size_divisor(self):
        """The UNet's latent divisor times the VAE's downsampling."""
        return getattr(self.vae, "size_divisor", 1) * getattr(self.unet.arch, "size_divisor", 1)

    def validation_metric_names(self):
        return self.metric_names() | {"val_loss"} | baseline_metric_names(self)

    def on_train_end(self):
        self.log({"latent_scale_factor": self.scale_factor})

    def restored_training_state(self):
        return self.pti.training_state() if self.pti is not None else None

    def save_archs(self, folder: str):
        """The UNet and projector, then `scheduler/`, `ldm.json` and `mean_target.safetensors` beside them,
        in every weights folder (checkpoint-N, best/, final/): `-test` and `scripts/generate.py` take any.
        `ldm.json` holds the VAE reference, scale factor, latent shape, condition and sampling settings;
        `mean_target.safetensors` is the mean-target baseline that a `-test` run (no training data) scores."""
        super().save_archs(folder)
        write_generation_files(self, folder)
