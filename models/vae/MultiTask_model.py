"""Stage 1 with several heads: a `MultiTaskAutoencoder` trained on a keyed composite loss.

    loss = sum over train.losses of weight * term(output[key], batch[target])

(`utils/losses/keyed.py`.) Every term is logged under its label; the encoder reads the batch key
`val.gt_key` (the image).
"""

import torch

from engine import BaseModel
from models.archs import define_network
from models.vae.posterior_noise import global_batch_noise
from utils.config.schema import Key
from utils.errors import ConfigError, did_you_mean
from utils.errors.classes import check_batch_classes
from utils.losses.keyed import KeyedLoss
from utils.losses.vae import check_recon_activation
from utils.metrics.segmentation import accuracy, class_map, segmentation_scores

TRAIN_KEYS = {
    "losses": Key(
        [{"type": "MSE", "key": "rgb", "target": "image", "weight": 1.0}],
        "any",
        "The keyed loss terms, each `{type, key (a network output), target (a batch key), weight}` "
        "(see utils/losses/keyed.py).",
    ),
    "compute_scale_factor": Key(
        True, "bool", "At the end, store 1 / std of the validation latents as the arch's `scaling_factor`."
    ),
}
VAL_KEYS = {"num_images": Key(8, "int", "Images in each logged validation grid.", minimum=1)}


class MultiTask_model(BaseModel):
    config_keys = {"train": TRAIN_KEYS, "val": VAL_KEYS}

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        self.hp = self.config_values("train")
        self.val_opt = self.config_values("val")
        self.gt_key = opt["val"]["gt_key"]
        generator = define_network(opt.network)
        if not hasattr(generator, "decode_heads"):
            raise ConfigError(
                f"MultiTask_model trains a multi-head autoencoder; 'network.type' is {opt.network.type}, "
                "use MultiTaskAutoencoder (or VAE_model for a single-output autoencoder)."
            )
        self.net_g = self.add_network("net_g", generator)
        self.loss = KeyedLoss(_plain_list(self.hp["losses"]))
        heads = {h["name"]: h["type"] for h in self.net_g.head_specs}
        outputs = [*heads, "latent", "latent_dist"]
        for i, term in enumerate(self.loss.terms):
            if term["key"] not in outputs:
                raise ConfigError(
                    f"'train.losses[{i}].key' is {term['key']!r}{did_you_mean(term['key'], outputs)}, which is no "
                    "output of this network; its outputs "
                    f"are: {', '.join(outputs)}."
                )
            if term["type"] == "BCEWithLogits" and heads.get(term["key"]) == "RGBHead":
                check_recon_activation(
                    f"train.losses[{i}].type", term["type"], self.net_g.config.output_activation
                )
            if term["key"] == "latent_dist" and not self.net_g.config.variational:
                raise ConfigError(
                    f"'train.losses[{i}]' is a {term['type']} term, which needs 'network.variational: true'."
                )
        # The head each validation metric reads: (head name, head type, batch key of its target).
        self.scored = [(t["key"], heads[t["key"]], t["target"]) for t in self.loss.terms if t["key"] in heads]
        self.scored = list(dict.fromkeys(self.scored))

    def class_targets(self):
        """Each segmentation or classification head's `num_classes` and the batch key it is scored on."""
        index = {h["name"]: i for i, h in enumerate(self.net_g.head_specs)}
        return [
            (
                f"'network.heads[{index[head]}].num_classes' (head '{head}')",
                self.net_g.head_specs[index[head]].get("num_classes", 2),
                key,
            )
            for head, kind, key in self.scored
            if kind in ("SegmentationHead", "ClassificationHead")
        ]

    # ------------------------------------------------------------------ hooks

    def feed_data(self, data, is_train=True):
        needed = {self.gt_key} | {t["target"] for t in self.loss.terms if t["target"]}
        missing = sorted(needed - set(data))
        if missing:
            raise ConfigError(
                f"The batch has no key {missing[0]!r} (read by val.gt_key or a train.losses target); its keys "
                f"are {sorted(data)}."
            )
        # Mask files are read per item: a class the head cannot hold is named here, not by cross-entropy.
        check_batch_classes(
            self.class_targets(), data, f"'datasets.{'train' if is_train else self.evaluated_set}'"
        )
        device = self.accelerator.device
        self.sample = {k: data[k].to(device) for k in needed}

    def _outputs(self, sample_posterior: bool) -> dict:
        encoded = self.net_g.encode(self.sample[self.gt_key])
        posterior = encoded.latent_dist
        if posterior is None:
            latents = encoded.latent
        elif sample_posterior:
            latents = posterior.mean + posterior.std * global_batch_noise(self, posterior.mean)
        else:
            latents = posterior.mode()
        return {**self.net_g.decode_heads(latents), "latent": latents, "latent_dist": posterior}

    def optimize_parameters(self):
        with self.accelerator.autocast():
            losses = self.loss(self._outputs(sample_posterior=True), self.sample)
        self.step(losses["all"], self.optimizers[0])
        return losses

    def validate_step(self, batch):
        """Reports, for each term's head: PSNR/SSIM (`val.metrics`) for an RGBHead against its target,
        Dice and IoU per class for a SegmentationHead, accuracy for a ClassificationHead; and logs image |
        reconstruction | mask | predicted mask grids."""
        self.feed_data(batch, is_train=False)
        outputs = self._outputs(sample_posterior=False)
        losses = self.loss(outputs, self.sample)
        scalars = {k if k != "all" else "loss": float(v) for k, v in losses.items()}
        latents = outputs["latent"]
        scalars.update(latent_mean=float(latents.mean()), latent_std=float(latents.std()))
        for head, kind, target_key in self.scored:
            pred, target = outputs[head].float(), self.sample[target_key]
            if kind == "RGBHead":
                self.log(pred=pred.cpu().numpy(), target=target.float().cpu().numpy(), prefix=f"{head}_")
            elif kind == "SegmentationHead":
                scalars.update(segmentation_scores(pred, target, prefix=f"{head}_"))
            else:
                scalars[f"{head}_accuracy"] = accuracy(pred, target)
        self.log(scalars)
        if self.validated_samples == 0:
            self._log_grid(outputs)

    def validation_metric_names(self):
        """What validate_step reports: the loss terms, the latent statistics, each scored head's scores."""
        names = {
            f"val_{n}" for n in ("loss", "latent_mean", "latent_std", *(t["label"] for t in self.loss.terms))
        }
        classes = {h["name"]: h.get("num_classes", 2) for h in self.net_g.head_specs}
        for head, kind, _ in self.scored:
            if kind == "RGBHead":
                names |= self.metric_names(f"{head}_")
            elif kind == "SegmentationHead":
                per_class = [f"_c{k}" for k in range(1, classes[head])]
                names |= {f"val_{head}_{s}{c}" for s in ("dice", "iou") for c in ["", *per_class]}
            else:
                names.add(f"val_{head}_accuracy")
        return names

    def _log_grid(self, outputs):
        count = min(len(self.sample[self.gt_key]), int(self.val_opt["num_images"]))
        x = self.sample[self.gt_key][:count].float()
        panels = [x]
        image_head = self.net_g.image_head
        if image_head is not None:
            panels.append(outputs[image_head][:count].float())
        for head, kind, target_key in self.scored:
            if kind == "SegmentationHead":
                classes = outputs[head].shape[1] - 1
                truth = class_map(self.sample[target_key][:count]).float() / classes
                predicted = outputs[head][:count].argmax(1).float() / classes
                panels += [truth[:, None].expand_as(x[:, :1]), predicted[:, None].expand_as(x[:, :1])]
        width = x.shape[1]
        panels = [p if p.shape[1] == width else p[:, :1].expand(-1, width, -1, -1) for p in panels]
        grid = torch.cat(panels, dim=-1).cpu().numpy()
        self.log_images("val_image_recon_mask_pred", grid)

    # ------------------------------------------------------------------ the latent scale factor

    def on_train_end(self):
        """Store 1 / std of the validation latents (posterior means) as the arch's `scaling_factor`, so an
        `LDM_model` on this run's `final/net_g` diffuses unit-variance latents."""
        if not self.hp["compute_scale_factor"] or self.val_loader is None:
            return
        total, total_sq, count = 0.0, 0.0, 0
        with torch.no_grad(), self.ema_weights():
            for batch in self.val_loader:
                self.feed_data(batch, is_train=False)
                encoded = self.net_g.encode(self.sample[self.gt_key])
                z = encoded.latent_dist.mean if encoded.latent_dist is not None else encoded.latent
                stats = torch.tensor([z.sum().item(), (z**2).sum().item(), z.numel()], dtype=torch.float64)
                stats = self.accelerator.reduce(stats.to(self.accelerator.device), "sum").cpu()
                total, total_sq, count = (
                    total + stats[0].item(),
                    total_sq + stats[1].item(),
                    count + stats[2].item(),
                )
        mean = total / count
        std = max((total_sq / count - mean**2) ** 0.5, 1e-8)
        self.net_g.arch.config.scaling_factor = 1.0 / std
        self.logger.info(f"Latent std over the validation set: {std:.5g}; scaling_factor = {1.0 / std:.5g}.")
        self.log({"latent_scaling_factor": 1.0 / std})


def _plain_list(value):
    """The `train.losses` option (an Opt view or OmegaConf list) as a list of plain dicts."""
    value = value.to_dict() if hasattr(value, "to_dict") else value
    if hasattr(value, "__iter__") and not isinstance(value, str | dict):
        return [dict(v.to_dict() if hasattr(v, "to_dict") else v) for v in value]
    return value
