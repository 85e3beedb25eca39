"""What `scripts/generate.py` and `-test` need beside the trained UNet and projector, in every weights
folder of a run (`checkpoint-N/`, `best/`, `final/`): `scheduler/` (the noise schedule), `ldm.json` (VAE
reference, scale factor, latent shape, condition and sampling settings, the data's intensity range) and
`mean_target.safetensors` (the mean-target baseline)."""

import json
import os
import shutil

import torch

from models.ldm.baselines import save_mean_target
from utils.errors.batches import batch_errors
from utils.errors.files import read_json
from utils.images.patches import patch_settings


def sampled_latent_shape(model, loader, phase: str) -> tuple[int, ...] | None:
    """The latent shape generation samples at: that of the first item of `loader` (the validation data, or
    the training data without it), set once at set-up, so every weights folder records the same one
    whatever size training crops its batches to. None when the item has neither a latent nor the target
    key (`feed_data` then names what is missing)."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__getitem__"):
        return None
    item = dataset[0]
    if "latent" in item:  # a dataset of pre-encoded latents
        return tuple(torch.as_tensor(item["latent"]).shape)
    if model.gt_key not in item:
        return None
    with batch_errors(model.opt, phase, item):
        return tuple(model.encode(torch.as_tensor(item[model.gt_key])[None]).shape[1:])


def write_generation_files(model, folder: str) -> None:
    """`scheduler/`, `ldm.json` and `mean_target.safetensors` into `folder` (a weights folder of the run)."""
    if not model.accelerator.is_main_process:
        return
    os.makedirs(folder, exist_ok=True)
    model.noise_scheduler.save_pretrained(os.path.join(folder, "scheduler"))
    description = {
        "vae": model.vae_reference,
        "scale_factor": model.scale_factor,
        "recon_type": model.recon_type,
        "latent_shape": list(model.latent_shape) if model.latent_shape else None,
        "condition": {
            "type": model.cond_opt["type"],
            "key": model.cond_key,
            "indices": model.cond_opt["indices"],
            "concat": model.concat,
            "inject": model.cond_opt["inject"],
        },
        "unet": "unet",
        "projector": "projector" if model.projector is not None else None,
        "sampler": model.val_opt["sampler"],
        "num_inference_steps": model.val_opt["num_inference_steps"],
        "guidance_scale": model.val_opt["guidance_scale"],
        "intensity": model.target_intensity,
        "mean_target": save_mean_target(model.mean_target, folder) if model.mean_target is not None else None,
        "patched": {
            "window": list(model.latent_window_size),
            "overlap": patch_settings(model.opt["train"], len(model.latent_window_size))[1],
        }
        if model.latent_window_size
        else None,
    }
    with open(os.path.join(folder, "ldm.json"), "w") as f:
        json.dump(description, f, indent=2)


def copy_generation_folder(source: str, target: str) -> None:
    """Copy what generation reads from an LDM weights folder (`ldm.json`, `scheduler/` and the files it
    names) into `target`; a checkpoint-N source's training state (optimizers, RNG) is left out."""
    description = read_json(os.path.join(source, "ldm.json"))
    names = [
        "ldm.json",
        "scheduler",
        description["unet"],
        description.get("projector"),
        description.get("mean_target"),
    ]
    os.makedirs(target, exist_ok=True)
    for name in filter(None, names):
        path = os.path.join(source, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(target, name), dirs_exist_ok=True)
        elif os.path.isfile(path):
            shutil.copy2(path, os.path.join(target, name))
