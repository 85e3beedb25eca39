"""Stage 1: train an autoencoder (AutoencoderKL, MonaiAutoencoderKL or VQVAE) with the latent-diffusion recipe.

    loss_G = recon + perceptual_weight * perceptual + kl_weight * KL (or the VQ loss)
             + disc_weight * w * adversarial          (the last term from step `disc_start` on)
    loss_D = discriminator_loss(D(x), D(x_hat))       (from step `disc_start` on, its own optimizer)

`w` is the adaptive weight of the latent-diffusion recipe when `adaptive_disc_weight` is true, else 1.
The discriminator is the arch of the top-level `network_d` block (a `PatchDiscriminator`); without that
block, or with `disc_weight: 0`, training is GAN-free. Whenever the weights are saved (checkpoints,
best/, final/) the latent scale factor (1 / std of the latents over the validation set) is stored in
the arch's config, so stage 2 and every export, from any saved folder, use the same value.
"""

from types import SimpleNamespace

import torch

from models.archs import define_network
from models.base_model import BaseModel
from models.vae.latent_scale import measure_latent_std, store_scale_factor
from utils import log_image, log_metrics
from utils.errors import ConfigError
from utils.misc import log_metric, log_validation_scalars
from utils.patches import patch_settings, random_windows, sliding_window
from utils.vae_losses import (
    GAN_TYPES,
    RECON_TYPES,
    adaptive_gan_weight,
    decoded_image,
    discriminator_loss,
    generator_loss,
    kl_loss,
    recon_loss,
)

TRAIN_KEYS = {
    "recon_type": "l1",
    "focal_gamma": 2.0,
    "kl_weight": 1e-6,
    "kl_reduction": "batchmean",
    "perceptual_weight": 0.0,
    "perceptual_weights_path": None,
    "disc_weight": 0.5,
    "disc_start": 0,
    "disc_loss": "hinge",
    "disc_learning_rate": None,
    "adaptive_disc_weight": True,
    "compute_scale_factor": True,
    "monai_checkpoint": None,
}
VAL_KEYS = {"num_images": 8}


class VAE_model(BaseModel):
    config_keys = {"": {"network_d"}, "train": set(TRAIN_KEYS), "val": set(VAL_KEYS)}

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        train = {k: opt["train"].get(k, default) for k, default in TRAIN_KEYS.items()}
        if train["recon_type"] not in RECON_TYPES:
            raise ConfigError(
                f"'train.recon_type' is {train['recon_type']!r}; use one of {', '.join(RECON_TYPES)}."
            )
        if train["disc_loss"] not in GAN_TYPES:
            raise ConfigError(
                f"'train.disc_loss' is {train['disc_loss']!r}; use one of {', '.join(GAN_TYPES)}."
            )
        self.hp = train
        self.gt_key = opt["val"]["gt_key"]

        self.net_g = define_network(opt.network)
        if train["monai_checkpoint"]:
            # Continue from a PTI-LDM-VAE run: its autoencoder_epochN.pth or checkpoint_epochN.pth.
            if not hasattr(self.net_g, "load_monai_checkpoint"):
                raise ConfigError(
                    f"'train.monai_checkpoint' needs 'network.type: MonaiAutoencoderKL', not '{opt.network.type}'."
                )
            self.net_g.load_monai_checkpoint(train["monai_checkpoint"])
        self.models.append(self.net_g)
        self.is_vq = type(self.net_g).__name__.startswith("VQ")
        self.net_d = None
        if opt.get("network_d") is not None and train["disc_weight"] > 0:
            self.net_d = define_network(opt.network_d)
            self.models.append(self.net_d)
        self.perceptual = None
        if train["perceptual_weight"] > 0:
            if not train["perceptual_weights_path"]:
                raise ConfigError(
                    "'train.perceptual_weight' is above 0 but 'train.perceptual_weights_path' is empty; point it at "
                    "a VGG16 weights file (see utils/perceptual.py) or set the weight to 0."
                )
            from utils.perceptual import PerceptualLoss

            self.perceptual = PerceptualLoss(train["perceptual_weights_path"]).to(self.accelerator.device)

    # ------------------------------------------------------------------ optimizers: one for G, one for D

    def build_optimizers(self):
        generator = [p for p in self.net_g.parameters() if p.requires_grad]
        optimizers = [self.make_optimizer(generator)]
        if self.net_d is not None:
            optimizers.append(self.make_optimizer(self.net_d.parameters(), lr=self.hp["disc_learning_rate"]))
        return optimizers

    @property
    def gan_active(self) -> bool:
        return self.net_d is not None and self.global_step >= self.hp["disc_start"]

    # ------------------------------------------------------------------ hooks

    def feed_data(self, data, is_train=True):
        if self.gt_key not in data:
            raise ConfigError(
                f"The batch has no key '{self.gt_key}' (val.gt_key); its keys are {sorted(data)}. Set 'val.gt_key' "
                "to the key holding the images."
            )
        gt = data[self.gt_key]
        if is_train and self.patches(gt) is not None:  # train.patched: one random window per image
            gt = random_windows([gt], self.patches(gt)[0])[0]
        self.sample = {"gt": gt}

    def patches(self, x):
        """(patch size, overlap) under `train.patched`, else None."""
        return patch_settings(self.opt["train"], x.ndim - 2)

    def _autoencode(self, x):
        """The training forward pass, with posterior noise that does not depend on the process count."""
        if self.is_vq:
            return self.net_g(x)
        posterior = self.net_g.encode(x).latent_dist
        latents = posterior.mean + posterior.std * self._global_batch_noise(posterior.mean)
        return SimpleNamespace(
            reconstruction=self.net_g.decode(latents), latent_dist=posterior, latents=latents
        )

    def _global_batch_noise(self, like):
        # Drawn for the whole global batch from (seed, position in training) and sliced to this process's
        # share: N processes with batch b then sample exactly the noise of one process with batch N * b,
        # and a resumed run the noise of an uninterrupted one.
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        generator = torch.Generator().manual_seed(
            hash((self.opt["seed"], self.state.epoch, self.state.batches_in_epoch)) % 2**63
        )
        full = torch.randn((processes * like.shape[0], *like.shape[1:]), generator=generator)
        return full[rank * like.shape[0] : (rank + 1) * like.shape[0]].to(like.device, like.dtype)

    def _generator_losses(self, x, out):
        hp = self.hp
        image = decoded_image(out.reconstruction, hp["recon_type"])
        losses = {"recon": recon_loss(out.reconstruction, x, hp["recon_type"], hp["focal_gamma"])}
        nll = losses["recon"]
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(image, x)
            nll = nll + hp["perceptual_weight"] * losses["perceptual"]
        if self.is_vq:
            losses["quant"] = out.quant_loss
            losses["perplexity"] = out.perplexity.detach()
            total = nll + out.quant_loss
        else:
            losses["kl"] = kl_loss(out.latent_dist, hp["kl_reduction"])
            total = nll + hp["kl_weight"] * losses["kl"]
        return image, nll, total, losses

    def optimize_parameters(self):
        opt_g = self.optimizers[0]
        x = self.sample["gt"]
        opt_g.zero_grad()
        out = self._autoencode(x)
        image, nll, total, losses = self._generator_losses(x, out)
        if self.gan_active:
            # D judges the reconstruction for the generator's loss through the raw arch, with its weights
            # frozen: this pass must leave no gradient in D, and D's DDP wrapper must not expect one.
            self.net_d.requires_grad_(False)
            with self.accelerator.autocast():
                losses["g_adv"] = generator_loss(self.net_d.arch(image), self.hp["disc_loss"])
            weight = (
                adaptive_gan_weight(nll, losses["g_adv"], self.net_g.arch.last_decoder_layer())
                if self.hp["adaptive_disc_weight"]
                else torch.ones((), device=x.device)
            )
            losses["adv_weight"] = weight
            total = total + self.hp["disc_weight"] * weight * losses["g_adv"]
            self.net_d.requires_grad_(True)
        self.accelerator.backward(total)
        opt_g.step()

        if self.gan_active:
            opt_d = self.optimizers[1]
            opt_d.zero_grad()
            losses["d"] = discriminator_loss(self.net_d(x), self.net_d(image.detach()), self.hp["disc_loss"])
            self.accelerator.backward(losses["d"])
            opt_d.step()
        losses["all"] = total
        return losses

    def validate_step(self, batch, idx, lq_key, gt_key):
        self.feed_data(batch, is_train=False)
        x = self.sample["gt"]
        if self.patches(x) is not None:
            return self._validate_whole_images(x, idx)
        out = self.net_g(x, sample_posterior=False)
        image = decoded_image(out.reconstruction, self.hp["recon_type"])
        _, _, total, losses = self._generator_losses(x, out)
        pred, target = image.float().cpu().numpy(), x.float().cpu().numpy()
        metrics_opt = self.opt["val"].get("metrics") or {}
        log_metrics(pred, target, metrics_opt, self.accelerator, self.global_step, comment="val_")
        # The validation loss and latent statistics are averaged over the pass like the metrics.
        latents = out.latents if getattr(out, "latents", None) is not None else out.latent_dist.mean
        log_validation_scalars(
            self.accelerator,
            {
                "val_loss": float(total),
                "val_recon": float(losses["recon"]),
                "val_latent_mean": float(latents.mean()),
                "val_latent_std": float(latents.std()),
            },
            self.global_step,
            n=len(x),
        )
        if idx == 0:
            n = min(len(x), int(self.opt["val"].get("num_images", VAL_KEYS["num_images"])))
            triplet = torch.cat([x[:n], image[:n], (image[:n] - x[:n]).abs()], dim=-1)
            log_image(
                self.opt,
                self.accelerator,
                triplet.float().cpu().numpy(),
                "val_input_recon_diff",
                self.global_step,
            )
        return idx + len(x)

    def _validate_whole_images(self, x, idx):
        """`train.patched`: reconstruct whole images window by window, blended (utils/patches.py)."""
        size, overlap = self.patches(x)
        raw = sliding_window(lambda p: self.net_g(p, sample_posterior=False).reconstruction, x, size, overlap)
        image = decoded_image(raw, self.hp["recon_type"])
        recon = recon_loss(raw, x, self.hp["recon_type"], self.hp["focal_gamma"])
        metrics_opt = self.opt["val"].get("metrics") or {}
        log_metrics(
            image.float().cpu().numpy(),
            x.float().cpu().numpy(),
            metrics_opt,
            self.accelerator,
            self.global_step,
            "val_",
        )
        log_validation_scalars(self.accelerator, {"val_recon": float(recon)}, self.global_step, n=len(x))
        if idx == 0:
            n = min(len(x), int(self.opt["val"].get("num_images", VAL_KEYS["num_images"])))
            triplet = torch.cat([x[:n], image[:n], (image[:n] - x[:n]).abs()], dim=-1)
            log_image(
                self.opt,
                self.accelerator,
                triplet.float().cpu().numpy(),
                "val_input_recon_diff",
                self.global_step,
            )
        return idx + len(x)

    # ------------------------------------------------------------------ the latent scale factor

    def save_archs(self, folder: str):
        """Store the latent scale factor of these weights first, so that every saved net_g (checkpoint-N,
        best/, final/) carries a measured one: stage 2 may start from any of them."""
        self.update_scale_factor()
        super().save_archs(folder)

    def on_train_end(self):
        """Store 1 / std of the validation latents in the arch's config (the stage-2 scale factor)."""
        self.update_scale_factor()

    def update_scale_factor(self):
        if not self.hp["compute_scale_factor"] or self.val_loader is None or not self._is_set_up:
            return
        if getattr(self, "_scale_measured_at", None) == self.global_step:
            return  # already measured on these weights
        std = measure_latent_std(self)
        factor = store_scale_factor(self.net_g.arch, std, self.global_step)
        self._scale_measured_at = self.global_step
        self.logger.info(f"Latent std over the validation set: {std:.5g}; scaling_factor = {factor:.5g}.")
        log_metric(self.accelerator, {"latent_scaling_factor": factor}, self.global_step)
