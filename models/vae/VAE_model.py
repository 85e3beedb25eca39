"""Stage 1: train an autoencoder (AutoencoderKL, MonaiAutoencoderKL, VQVAE or MonaiVQVAE) with the latent-diffusion recipe.

    loss_G = recon + perceptual_weight * perceptual + kl_weight * KL (or the VQ loss)
             + disc_weight * w * adversarial          (the last term from step `disc_start` on)
    loss_D = discriminator_loss(D(x), D(x_hat))       (from step `disc_start` on, its own optimizer)

`w` is the adaptive weight of the latent-diffusion recipe when `adaptive_disc_weight` is true, else 1.
"""

from types import SimpleNamespace

import torch

from engine import BaseModel
from models.archs import define_network
from models.shared_keys import PATCH_KEYS
from models.vae.posterior_noise import global_batch_noise
from models.vae.scale_factor import measure_latent_std, store_scale_factor
from utils.config.schema import Key
from utils.errors import ConfigError
from utils.images.comparison import as_batch, comparison_grid
from utils.images.patches import patch_settings, random_windows, sliding_window
from utils.latent_maps.training_map import ValidationLatentMap, read_latent_map_options
from utils.losses.vae import (
    GAN_TYPES,
    KL_REDUCTIONS,
    RECON_TYPES,
    adaptive_gan_weight,
    check_recon_activation,
    decoded_image,
    discriminator_loss,
    generator_loss,
    kl_loss,
    recon_loss,
)

TRAIN_KEYS = {
    "recon_type": Key(
        "l1",
        "str",
        "Reconstruction loss; the BCE types treat the decoder output as logits, targets in [0, 1].",
        RECON_TYPES,
    ),
    "focal_gamma": Key(2.0, "float", "Focal exponent of `bce_focal`.", minimum=0.0),
    "kl_weight": Key(
        1e-6, "float", "Weight of KL(q(z|x) || N(0, I)), from the arch's own posterior.", minimum=0.0
    ),
    "kl_reduction": Key(
        "batchmean", "str", "`batchmean`: sum over the latent, mean over the batch.", KL_REDUCTIONS
    ),
    "perceptual_weight": Key(
        0.0, "float", "VGG16 perceptual loss weight; needs `perceptual_weights_path`.", minimum=0.0
    ),
    "perceptual_weights_path": Key(
        None, "str", "A local VGG16 weights file (nothing is downloaded).", nullable=True
    ),
    "disc_weight": Key(0.5, "float", "Adversarial weight (with a `network_d` block).", minimum=0.0),
    "disc_start": Key(0, "int", "Optimizer steps before the discriminator and its loss start.", minimum=0),
    "disc_loss": Key("hinge", "str", "Adversarial loss.", GAN_TYPES),
    "disc_learning_rate": Key(
        None,
        "float",
        "The discriminator's own rate (default: `train.optim.learning_rate`); it has its own optimizer.",
        minimum=0.0,
        nullable=True,
    ),
    "adaptive_disc_weight": Key(
        True, "bool", "Scale the adversarial term by the ratio of gradient norms at the decoder's last layer."
    ),
    "compute_scale_factor": Key(
        True, "bool", "At the end, store 1 / std of the validation latents as the arch's `scaling_factor`."
    ),
    "monai_checkpoint": Key(
        None,
        "str",
        "A PTI-LDM-VAE autoencoder `.pth` to start from (`network.type: MonaiAutoencoderKL`); a "
        "`checkpoint_epochN.pth` also restores its discriminator, optimizers, step and best loss.",
        nullable=True,
    ),
}
VAL_KEYS = {
    "num_images": Key(8, "int", "Images in each logged validation grid.", minimum=1),
    "latent_map": Key(
        None,
        "block",
        "Map of the validation latents to every tracker, e.g. `{method: pca, every: 200}` "
        "(see utils/latent_maps/training_map.py).",
        nullable=True,
    ),
    "image_log_scale": Key(False, "bool", "Show the validation grid on a log10 scale (PSF halos)."),
}


class VAE_model(BaseModel):
    """The discriminator is the arch of the top-level `network_d` block (a `PatchDiscriminator`); without
    that block, or with `disc_weight: 0`, training is GAN-free."""

    config_keys = {
        "": {
            "network_d": Key(
                None, "block", "The discriminator's arch block (a `PatchDiscriminator`).", nullable=True
            )
        },
        "train": {**TRAIN_KEYS, **PATCH_KEYS},
        "val": VAL_KEYS,
    }

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        train = self.config_values("train")
        self.hp = train
        self.gt_key = opt["val"]["gt_key"]
        map_options = read_latent_map_options(
            opt["val"].get("latent_map"),
            opt["train"].get("validation_steps"),
            opt["train"].get("validation_epochs"),
        )
        self.latent_map = ValidationLatentMap(map_options) if map_options else None

        generator = define_network(opt.network)
        if train["recon_type"] in ("bce", "bce_focal"):  # logits: no output activation before them
            check_recon_activation(
                "train.recon_type", train["recon_type"], getattr(generator.config, "output_activation", None)
            )
        self.is_vq = getattr(generator, "snaps_to_codebook", False)  # a VQ arch: a codebook, no posterior
        self.net_g = self.add_network("net_g", generator)
        self.net_d = None
        if opt.get("network_d") is not None and train["disc_weight"] > 0:
            self.net_d = self.add_network("net_d", define_network(opt.network_d))
        self.pti = None  # continue a PTI-LDM-VAE run: its autoencoder_epochN.pth or checkpoint_epochN.pth
        if train["monai_checkpoint"]:
            from models.pti.vae import PTIVAEStart

            self.pti = PTIVAEStart(
                train["monai_checkpoint"], generator, self.net_d.arch if self.net_d is not None else None
            )
        self.perceptual = None
        if train["perceptual_weight"] > 0:
            if not train["perceptual_weights_path"]:
                raise ConfigError(
                    "'train.perceptual_weight' is above 0 but 'train.perceptual_weights_path' is empty; point it at "
                    "a VGG16 weights file (see utils/losses/perceptual.py) or set the weight to 0."
                )
            from utils.losses.perceptual import PerceptualLoss

            self.perceptual = PerceptualLoss(train["perceptual_weights_path"]).to(self.accelerator.device)

    # ------------------------------------------------------------------ optimizers: one for G, one for D

    def build_optimizers(self):
        generator = [p for p in self.net_g.parameters() if p.requires_grad]
        optimizers = [self.make_optimizer(generator)]
        if self.net_d is not None:
            optimizers.append(self.make_optimizer(self.net_d.parameters(), lr=self.hp["disc_learning_rate"]))
        return optimizers

    def restored_training_state(self):
        return self.pti.training_state() if self.pti is not None else None

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
        latents = posterior.mean + posterior.std * global_batch_noise(self, posterior.mean)
        return SimpleNamespace(
            reconstruction=self.net_g.decode(latents), latent_dist=posterior, latents=latents
        )

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
        out = self._autoencode(x)
        image, nll, total, losses = self._generator_losses(x, out)
        if self.gan_active:
            # D judges the reconstruction for the generator's loss through the bare arch (`.arch`, not the
            # DDP-wrapped handle), with its weights frozen: this pass must leave no gradient in D, and D's
            # DDP wrapper must not expect one.
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
        self.step(total, opt_g)

        if self.gan_active:
            losses["d"] = discriminator_loss(self.net_d(x), self.net_d(image.detach()), self.hp["disc_loss"])
            self.step(losses["d"], self.optimizers[1])
        losses["all"] = total
        return losses

    def validate_step(self, batch):
        self.feed_data(batch, is_train=False)
        x = self.sample["gt"]
        if self.patches(x) is not None:
            return self._validate_whole_images(x)
        out = self.net_g(x, sample_posterior=False)
        image = decoded_image(out.reconstruction, self.hp["recon_type"])
        _, _, total, losses = self._generator_losses(x, out)
        self.log(pred=image.float().cpu().numpy(), target=x.float().cpu().numpy())
        # The validation loss and latent statistics are averaged over the pass like the metrics.
        latents = out.latents if getattr(out, "latents", None) is not None else out.latent_dist.mean
        if self.latent_map is not None:
            self.latent_map.add(latents, x, batch.get("name"))
        self.log(
            {
                "loss": float(total),
                "recon": float(losses["recon"]),
                "latent_mean": float(latents.mean()),
                "latent_std": float(latents.std()),
            }
        )
        self._log_comparison(x, image)

    def validation_metric_names(self):
        if self.opt["train"].get("patched"):  # whole images, window by window
            return self.metric_names() | {"val_recon"}
        return self.metric_names() | {f"val_{k}" for k in ("loss", "recon", "latent_mean", "latent_std")}

    def _log_comparison(self, x, image):
        if self.validated_samples == 0:  # one labelled, upscaled grid per validation
            val = self.config_values("val")
            n = min(len(x), int(val["num_images"]))
            grid = comparison_grid(x[:n], image[:n], log_scale=bool(val["image_log_scale"]))
            self.log_images("val_input_recon_diff", as_batch(grid))

    def validation(self, max_batches=-1):
        """BaseModel's validation pass, with the latents of the pass mapped at the `val.latent_map` steps."""
        if self.latent_map is not None:
            self.latent_map.begin(self.global_step)
        metrics = super().validation(max_batches)
        if self.latent_map is not None:
            self.latent_map.finish(self.opt, self.accelerator, self.global_step)
        return metrics

    def _validate_whole_images(self, x):
        """`train.patched`: reconstruct whole images window by window, blended (utils/images/patches.py)."""
        size, overlap = self.patches(x)
        raw = sliding_window(lambda p: self.net_g(p, sample_posterior=False).reconstruction, x, size, overlap)
        image = decoded_image(raw, self.hp["recon_type"])
        recon = recon_loss(raw, x, self.hp["recon_type"], self.hp["focal_gamma"])
        self.log(pred=image.float().cpu().numpy(), target=x.float().cpu().numpy())
        self.log({"recon": float(recon)})
        self._log_comparison(x, image)

    # ------------------------------------------------------------------ the latent scale factor

    def save_archs(self, folder: str):
        """Store the latent scale factor of these weights first, so that every saved net_g (checkpoint-N,
        best/, final/) carries a measured one (1 / std of the latents over the validation set): stage 2
        and every export, from any saved folder, use the same value."""
        self.update_scale_factor()
        super().save_archs(folder)

    def on_train_end(self):
        """Store 1 / std of the validation latents in the arch's config (the stage-2 scale factor)."""
        self.update_scale_factor()

    def update_scale_factor(self):
        if not self.hp["compute_scale_factor"] or self.val_loader is None or not self.named_networks:
            return
        if getattr(self, "_scale_measured_at", None) == self.global_step:
            return  # already measured on these weights
        std = measure_latent_std(self)
        factor = store_scale_factor(self.net_g.arch, std, self.global_step)
        self._scale_measured_at = self.global_step
        self.logger.info(f"Latent std over the validation set: {std:.5g}; scaling_factor = {factor:.5g}.")
        self.log({"latent_scaling_factor": factor})
