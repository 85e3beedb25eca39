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

    latents, names, groups, thumbs = [], [], [], []
    counts = [0] * len(sources)
    total = sum(len(s.dataset) for s in sources)
    with tqdm(total=total, desc="encoding", unit="img", disable=not progress) as bar:
        for number, batch_names, means, batch_thumbs in encoded_batches(
            vae, sources, batch_size, device, thumb_size
        ):
            latents += list(means)
            names += batch_names
            thumbs.append(batch_thumbs)
            counts[number] += len(means)
            bar.update(len(means))
    for source, count in zip(sources, counts):
        groups += source.group_of_item if source.group_of_item is not None else [source.group] * count
    if not names:
        raise UserError("Nothing to encode: every given folder, manifest or validation set is empty.")
    if len({z.shape for z in latents}) == 1:
        latents = np.stack(latents)
    return Encoded(latents, names, groups, np.concatenate(thumbs))


def encoded_batches(vae, sources, batch_size: int = 16, device: str = "cpu", thumb_size: int = 48):
    """(source number, names, posterior means as numpy, thumbnails) for each batch, in order.

    On the CPU, 2D images and the network's weights are made channels_last (the weights in place): oneDNN's
    convolutions then encode about 25% faster (tif.yml's AutoencoderKL and bench/vae.py's MONAI network,
    bench/latents.py). Files are read here, between the batches, not in a thread beside torch's own: on
    2 cores such a thread slows the encoding 1.5x."""
    vae = vae.to(device).eval()
    channels_last, converted = torch.device(device).type == "cpu", False
    done = 0
    for number, batch, batch_thumbs in _prepared_batches(sources, batch_size, thumb_size):
        x = batch[sources[number].image_key].to(device)
        if channels_last and x.ndim == 4:
            if not converted:
                vae, converted = vae.to(memory_format=torch.channels_last), True
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            means = posterior_means(vae, x).float().cpu().numpy()
        names = [str(n) for n in batch.get("name", range(done, done + len(x)))]
        done += len(x)
        yield number, names, means, batch_thumbs


def _prepared_batches(sources, batch_size: int, thumb_size: int):
    """(source number, batch, thumbnails) for every batch of every source, in order."""
    for number, source in enumerate(sources):
        # Items are collated here, in runs of one size: a folder may hold images of several sizes.
        loader = torch.utils.data.DataLoader(
            source.dataset, batch_size=batch_size, shuffle=False, collate_fn=list
        )
        for items in loader:
            for batch in _same_size_batches(items, source.image_key):
                if source.image_key not in batch:
                    raise UserError(
                        f"The dataset's items have no key '{source.image_key}'; their keys are {sorted(batch)}."
                    )
                yield number, batch, thumbnails(batch[source.image_key].float(), thumb_size)


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
