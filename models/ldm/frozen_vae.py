"""The stage-1 autoencoder as stage 2 sees it: loaded once, frozen, in eval mode, never saved again.

Two sources:

- `pretrained`: a VAE run's `final/net_g` folder (or the `final/` or run folder holding it), or
  `<root>/<name>/latest`: the newest finished run of that stage-1 experiment. The arch is the one its
  `config.json` names; its `scaling_factor` is the one the VAE run measured and stored.
- `monai_checkpoint` + `network`: a MONAI training run's `autoencoder_epochN.pth` / `checkpoint_epochN.pth` with
  the MonaiAutoencoderKL keys it was trained with. Such files carry no scale factor.
"""

import logging
import os

import torch
import yaml

from models.archs import find_arch
from models.vae.scale_factor import is_placeholder_scale
from utils.errors import ConfigError
from utils.errors.files import read_json

LATEST = "latest"
FINISHED_MARK = os.path.join("final", "metrics.json")  # written last by a run's final save


def resolve_latest(pretrained: str) -> str:
    """`<root>/<name>/latest[/final/net_g]` -> the same path in the newest finished run of `<root>/<name>`.

    This chains stage 2 to stage 1 whatever run key stage 1 got (`make train` names its run by the time):
    a run is finished when its `final/metrics.json` exists, the newest is the one written last. A path
    without a `latest` component, or one that exists as written, is returned unchanged.
    """
    parts = os.path.normpath(pretrained).split(os.sep)
    if LATEST not in parts or os.path.exists(pretrained):
        return pretrained
    at = parts.index(LATEST)
    experiment = os.sep.join(parts[:at]) or "."
    rest = parts[at + 1 :]
    finished = sorted(
        (os.path.getmtime(os.path.join(experiment, run, FINISHED_MARK)), run)
        for run in (os.listdir(experiment) if os.path.isdir(experiment) else [])
        if os.path.isfile(os.path.join(experiment, run, FINISHED_MARK))
    )
    if not finished:
        raise ConfigError(
            f"'vae.pretrained' is '{pretrained}', but '{experiment}' holds no finished stage-1 run (a run folder "
            f"with {FINISHED_MARK}); train one first, e.g. `make train`, or give a run's final/net_g folder."
        )
    return os.path.join(experiment, finished[-1][1], *rest)


def vae_folder(pretrained: str) -> str:
    """The save_pretrained folder `pretrained` names: itself, or its `net_g/` when given a run's final/
    (`latest` in the path: see `resolve_latest`)."""
    pretrained = resolve_latest(pretrained)
    for folder in (pretrained, os.path.join(pretrained, "net_g"), os.path.join(pretrained, "final", "net_g")):
        if os.path.isfile(os.path.join(folder, "config.json")):
            return folder
    raise ConfigError(
        f"'vae.pretrained' is '{pretrained}', which holds no trained autoencoder (config.json); point it at a "
        "VAE run's final/net_g folder, e.g. experiments/VAE_PSF/<key>/final/net_g (or experiments/VAE_PSF/latest: "
        "the newest finished run)."
    )


def load_frozen_vae(pretrained: str | None = None, monai_checkpoint: str | None = None, network=None):
    """(vae, reference): the frozen arch, and the dict that `load_frozen_vae(**reference)` reloads it from."""
    if bool(pretrained) == bool(monai_checkpoint):
        raise ConfigError(
            "Set exactly one of 'vae.pretrained' (a VAE run's final/net_g folder) and 'vae.monai_checkpoint' "
            "(a MONAI autoencoder .pth file, with 'vae.network' holding its MonaiAutoencoderKL keys)."
        )
    if pretrained:
        folder = vae_folder(str(pretrained))
        if os.path.normpath(folder) != os.path.normpath(str(pretrained)):
            # One line saying which run `latest` chose, so the chain is never a guess.
            logging.getLogger("trainer").info(f"vae.pretrained: {pretrained} -> {folder}")
        model_type = read_json(os.path.join(folder, "config.json")).get("model_type")
        _, arch_cls = find_arch(model_type)
        vae = arch_cls.from_pretrained(folder)
        reference = {"pretrained": os.path.abspath(folder)}
    else:
        from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch

        keys = {k: v for k, v in dict(network or {}).items() if k != "type"}
        vae = MonaiAutoencoderKL_arch.from_monai_checkpoint(str(monai_checkpoint), **keys)
        reference = {"monai_checkpoint": os.path.abspath(str(monai_checkpoint)), "network": keys}
    vae.eval().requires_grad_(False)
    return vae, reference


def vae_recon_type(pretrained: str | None) -> str:
    """The VAE run's `train.recon_type` (its decoder outputs logits for bce), read from its config.yml."""
    if pretrained:
        folder = vae_folder(str(pretrained))
        for candidate in (os.path.join(folder, "..", "config.yml"), os.path.join(folder, "config.yml")):
            if os.path.isfile(candidate):
                with open(candidate) as f:
                    return ((yaml.safe_load(f) or {}).get("train") or {}).get("recon_type", "l1")
    return "l1"


def encode_latents(vae, x):
    """The scaled latent stage 2 diffuses: the posterior mean (KL), the latent (deterministic) or the
    quantised code (VQ), scaled."""
    encoded = vae.encode(x)
    if encoded.latent_dist is not None:
        z = encoded.latent_dist.mean
    else:
        z = encoded.latent if encoded.latent is not None else encoded.quantized
    return vae.scale_latents(z)


def set_scale_factor(model, loader) -> None:
    """Use the VAE's stored scale factor; measure 1 / std of the training latents only when asked, or
    when the VAE has none (a MONAI checkpoint, or a VAE saved before it was measured). Sets
    `model.vae.config.scaling_factor` and `model.scale_factor`."""
    setting = model.vae_opt["scale_factor"]
    if isinstance(setting, (int, float)) and not isinstance(setting, bool):
        if not setting > 0:  # latents multiplied by 0 or a negative number carry nothing / come out flipped
            raise ConfigError(
                f"'vae.scale_factor' is {setting!r}; a number must be above 0 (about 1 / the latents' std), "
                "or use auto, stored or compute."
            )
        model.vae.config.scaling_factor = float(setting)
    elif setting == "compute" or (
        setting == "auto" and (model.vae_opt["monai_checkpoint"] or is_placeholder_scale(model.vae))
    ):
        if setting == "auto" and not model.vae_opt["monai_checkpoint"]:
            model.logger.info(
                f"The VAE in '{model.vae_opt['pretrained']}' holds its placeholder scaling_factor "
                f"{model.vae.config.scaling_factor:g} (saved before its first validation, or with "
                "compute_scale_factor: false), so stage 2 measures the factor on the training latents."
            )
        model.vae.config.scaling_factor = 1.0
        total, total_sq, count = 0.0, 0.0, 0
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i >= model.vae_opt["scale_batches"]:
                    break
                z = model.encode(batch[model.gt_key]).double()
                total, total_sq, count = (
                    total + z.sum().item(),
                    total_sq + (z**2).sum().item(),
                    count + z.numel(),
                )
        mean = total / count
        model.vae.config.scaling_factor = 1.0 / max((total_sq / count - mean**2) ** 0.5, 1e-8)
        model.logger.info(f"Measured the latent scale factor: {model.vae.config.scaling_factor:.5g}.")
    elif setting not in ("auto", "stored"):
        raise ConfigError(f"'vae.scale_factor' is {setting!r}; use auto, stored, compute or a number.")
    model.scale_factor = float(model.vae.config.scaling_factor)
