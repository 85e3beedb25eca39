"""A keyed composite loss: each term reads one model output and one batch key, with its own weight.

    train:
      losses:
        - {type: MSE, key: rgb, target: image, weight: 1.0}
        - {type: CrossEntropy, key: segmentation, target: mask, weight: 0.05}
        - {type: KLD, weight: 1.0e-6}                       # variational encoders
        - {type: LatentStandardization, weight: 0.01}       # batch mean of the latents -> 0, std -> 1

`KeyedLoss` and `parse_terms` say what each field reads.
"""

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import ConfigError, did_you_mean


def _cross_entropy(pred, target):
    # Segmentation logits (N, K, H, W) against a class map (N, H, W) or (N, 1, H, W); labels (N,).
    target = target.long()
    if pred.ndim == target.ndim + 1 + 1 and target.shape[1] == 1:
        target = target[:, 0]
    return F.cross_entropy(pred.float(), target)


def _kld(posterior, _target=None):
    # KL(q || N(0, I)) summed over the latent and averaged over the batch, as the VAE model's default.
    return posterior.kl().mean()


def _latent_standardization(latents, _target=None):
    # Pushes the batch's latents towards mean 0 and std 1, so stage 2 sees unit-variance codes even for a
    # deterministic encoder, whose latent scale is otherwise free to drift.
    latents = latents.float()
    return latents.mean().pow(2) + (latents.std() - 1.0).pow(2)


# type -> (function(pred, target), default key, needs a target)
LOSS_TYPES = {
    "MSE": (F.mse_loss, None, True),
    "L1": (F.l1_loss, None, True),
    "CrossEntropy": (_cross_entropy, None, True),
    "BCEWithLogits": (F.binary_cross_entropy_with_logits, None, True),
    "KLD": (_kld, "latent_dist", False),
    "LatentStandardization": (_latent_standardization, "latent", False),
}
TERM_KEYS = ("type", "key", "target", "weight")


class KeyedLoss(nn.Module):
    """`key` names an output (a head's name, or `latent` / `latent_dist`), `target` a batch key. `KLD`
    reads the posterior (`latent_dist`) and `LatentStandardization` the latents (`latent`) unless told
    otherwise; both need no target. `KeyedLoss(terms)(outputs, batch)` returns every term unweighted
    under its label (`MSE_rgb`, `CrossEntropy_segmentation`, `KLD`, ...) and `'all'`, the weighted sum."""

    def __init__(self, terms, where: str = "train.losses"):
        super().__init__()
        self.terms = parse_terms(terms, where)

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        values, total = {}, 0.0
        for term in self.terms:
            fn = LOSS_TYPES[term["type"]][0]
            pred = outputs[term["key"]]
            target = batch[term["target"]] if term["target"] else None
            if target is not None and term["type"] in ("MSE", "L1", "BCEWithLogits"):
                target = target.to(pred.dtype)
            values[term["label"]] = fn(pred, target)
            total = total + term["weight"] * values[term["label"]]
        values["all"] = total
        return values


def parse_terms(terms, where: str = "train.losses") -> list[dict]:
    """The YAML list as dicts with every field filled in (and a `label`), or a ConfigError naming the term."""
    if not isinstance(terms, list | tuple) or not terms:
        raise ConfigError(
            f"'{where}' must be a list of loss terms such as [{{type: MSE, key: rgb, target: image, weight: 1}}], "
            f"got {terms!r}."
        )
    parsed, labels = [], set()
    for i, term in enumerate(terms):
        term = dict(term) if hasattr(term, "items") else term
        if not isinstance(term, dict):
            raise ConfigError(
                f"'{where}[{i}]' is {term!r}; each term is a mapping with type, key, target, weight."
            )
        for name in term:
            if name not in TERM_KEYS:
                raise ConfigError(
                    f"Unknown key '{where}[{i}].{name}'{did_you_mean(name, TERM_KEYS)}; a term takes: "
                    f"{', '.join(TERM_KEYS)}."
                )
        kind = term.get("type")
        if kind not in LOSS_TYPES:
            raise ConfigError(
                f"'{where}[{i}].type' is {kind!r}{did_you_mean(str(kind), LOSS_TYPES)}; use one of "
                f"{', '.join(LOSS_TYPES)}."
            )
        _, default_key, needs_target = LOSS_TYPES[kind]
        key = term.get("key", default_key)
        target = term.get("target")
        if not key:
            raise ConfigError(
                f"'{where}[{i}]' ({kind}) needs 'key', the model output it reads (a head's name)."
            )
        if needs_target and not target:
            raise ConfigError(
                f"'{where}[{i}]' ({kind} on '{key}') needs 'target', the batch key it compares with."
            )
        weight = term.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ConfigError(f"'{where}[{i}].weight' is {weight!r}; give a number >= 0.")
        label = kind if key == default_key else f"{kind}_{key}"
        if label in labels:
            raise ConfigError(f"'{where}[{i}]' repeats the term {label}; add the weights instead.")
        labels.add(label)
        parsed.append({"type": kind, "key": key, "target": target, "weight": float(weight), "label": label})
    return parsed
