"""Pre-encoded training latents, so that stage 2 does not run the frozen encoder at every step.

The training set is encoded once (targets, and image conditions) and stored in
`<run>/latent_cache/<key>.pt`. The key hashes the VAE's weights, its scale factor, the dataset's block
and length and the condition settings: another VAE or other data gets another file, and a resumed run
reuses the file. What is cached is one pass over the data, so a random augmentation is frozen at the
draw of that pass; leave `train.cache_latents` off to augment every epoch.
"""

import hashlib
import json
import os

import torch
from torch.utils.data import DataLoader, Dataset

from utils.cli.console import preparation_bar


class LatentDataset(Dataset):
    """Items of equal-length tensors: {'latent': ..., and 'cond_latent' or the condition's key}."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self):
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index):
        return {k: v[index] for k, v in self.tensors.items()}


def cache_key(model, dataset) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    block = model.opt["datasets"]["train"]
    block = block.to_dict() if hasattr(block, "to_dict") else dict(block)
    description = {
        "scale_factor": model.scale_factor,
        "dataset": {k: v for k, v in block.items() if k not in ("num_workers", "batch_size", "pin_memory")},
        "length": len(dataset),
        "condition": [model.cond_opt["type"], model.cond_key],
    }
    digest.update(json.dumps(description, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def encode_dataset(model, dataset, batch_size: int) -> dict[str, torch.Tensor]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    parts: dict[str, list] = {}
    kind = model.cond_opt["type"]
    what = f"encoding {len(dataset)} training latents with the frozen VAE (train.cache_latents)"
    for batch in preparation_bar(loader, len(loader), what):
        parts.setdefault("latent", []).append(model.encode(batch[model.gt_key]).cpu())
        if kind == "image":
            parts.setdefault("cond_latent", []).append(model.encode(batch[model.cond_key]).cpu())
        elif kind != "none":
            value = torch.as_tensor(batch[model.cond_key])
            parts.setdefault(model.cond_key, []).append(
                value.reshape(len(value), -1) if kind == "vector" else value
            )
    return {k: torch.cat(v) for k, v in parts.items()}


def cached_latent_loader(model, loader: DataLoader) -> DataLoader:
    """A loader over the cached latents of `loader`'s dataset (encoded now by the main process if absent)."""
    accelerator = model.accelerator
    path = os.path.join(model.run_dir, "latent_cache", f"{cache_key(model, loader.dataset)}.pt")
    if accelerator.is_main_process and not os.path.isfile(path):
        tensors = encode_dataset(model, loader.dataset, loader.batch_size)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(tensors, path + ".tmp")
        os.replace(path + ".tmp", path)  # never a half-written cache under the final name
        model.logger.info(f"Cached {len(tensors['latent'])} training latents in {path}.")
    accelerator.wait_for_everyone()
    tensors = torch.load(path, map_location="cpu", weights_only=True)
    return DataLoader(
        LatentDataset(tensors), batch_size=loader.batch_size, shuffle=True, drop_last=loader.drop_last
    )
