"""Load a trained VAE and encode datasets into posterior means, in batches, with a progress bar."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from utils.errors import UserError
from utils.latent_maps.features import thumbnails


@dataclass
class Encoded:
    latents: np.ndarray | list  # (N, C, *spatial) posterior means (VQ: quantised codes); a list of
    # (C, *spatial) when the images differ in size
    names: list[str]
    groups: list[str]
    thumbs: np.ndarray  # (N, size, size) uint8


def run_config(run: Path) -> dict:
    """The config.yml saved in a run's final/ (or checkpoint-N/) folder or its parent."""
    for candidate in (run / "config.yml", run.parent / "config.yml"):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text()) or {}
    raise UserError(
        f"No config.yml in '{run}' or its parent: --run must be a VAE run's final/ or checkpoint folder."
    )


def load_encoder(run: Path | None = None, pth: Path | None = None, network: dict | None = None):
    """(vae in eval mode, the run's config or {}) from a run's final/ folder or a PTI-LDM-VAE .pth."""
    from models.ldm.frozen_vae import load_frozen_vae

    if run is not None:
        opt = run_config(run)
        vae, _ = load_frozen_vae(pretrained=str(run))
        return vae, opt
    vae, _ = load_frozen_vae(monai_checkpoint=str(pth), network=network or {})
    return vae, {}


def posterior_means(vae, x: torch.Tensor) -> torch.Tensor:
    encoded = vae.encode(x)
    latent_dist = getattr(encoded, "latent_dist", None)
    return latent_dist.mean if latent_dist is not None else encoded.quantized


def encode_sources(
    vae, sources, batch_size: int = 16, device: str = "cpu", progress: bool = True, thumb_size: int = 48
) -> Encoded:
    """Encode every item of every source; groups come from each source (one label or one per item)."""
    from tqdm.auto import tqdm

    vae = vae.to(device).eval()
    latents, names, groups, thumbs = [], [], [], []
    total = sum(len(s.dataset) for s in sources)
    with torch.no_grad(), tqdm(total=total, desc="encoding", unit="img", disable=not progress) as bar:
        for source in sources:
            # Items are collated here, in runs of one size: a folder may hold images of several sizes.
            loader = torch.utils.data.DataLoader(
                source.dataset, batch_size=batch_size, shuffle=False, collate_fn=list
            )
            start = len(names)
            for batch in (b for items in loader for b in _same_size_batches(items, source.image_key)):
                if source.image_key not in batch:
                    raise UserError(
                        f"The dataset's items have no key '{source.image_key}'; their keys are {sorted(batch)}."
                    )
                x = batch[source.image_key].to(device)
                latents += list(posterior_means(vae, x).float().cpu().numpy())
                thumbs.append(thumbnails(batch[source.image_key].float().numpy(), thumb_size))
                count = len(x)
                first = len(names)
                names += [str(n) for n in batch.get("name", range(first, first + count))]
                bar.update(count)
            items = len(names) - start
            groups += source.group_of_item if source.group_of_item is not None else [source.group] * items
    if not names:
        raise UserError("Nothing to encode: every given folder, manifest or validation set is empty.")
    if len({z.shape for z in latents}) == 1:
        latents = np.stack(latents)
    return Encoded(latents, names, groups, np.concatenate(thumbs))


def _same_size_batches(items: list, key: str):
    """torch's collate of each run of consecutive items whose `key` tensors have one shape."""
    from torch.utils.data import default_collate

    run: list = []
    for item in items:
        if run and _shape(run[-1], key) != _shape(item, key):
            yield default_collate(run)
            run = []
        run.append(item)
    if run:
        yield default_collate(run)


def _shape(item, key: str):
    value = item.get(key) if isinstance(item, dict) else None
    return tuple(getattr(value, "shape", ()))
