"""What `scripts/generate.py` turns its arguments into for an LDM (or the LDM under a ControlNet): names,
condition inputs and intensity stats, each mistake one sentence.

- `--conditions <folder>`: TIFs read and normalised as the run's validation data was (its `config.yml`),
  refused when the VAE would not give them back at their own size;
- `--vector x,y,...` / `--vectors FILE` (JSON list or CSV rows): finite numbers, as many as the run's
  `condition.indices` or `condition.features` use;
- `--labels 0 1 2`: class indices below the run's `num_classes`;
- `--num-samples N`: the samples of an unconditional run, or N samples of each condition.
"""

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from dataset.common.image_keys import NETWORK_INPUT_KEYS
from models.archs.vector_features import entries_used
from utils.errors import UserError
from utils.errors.files import as_user_error


def read_conditions(run: Path, folder: Path):
    """(names, condition images) from a folder of TIFs, normalised like the run's validation data (`run`:
    the run's folder, holding its config.yml, or a YAML experiment file)."""
    from dataset.tif_dataset import TIFFolderDataset

    config = run if run.suffix in (".yml", ".yaml") else run / "config.yml"
    opt = yaml.safe_load(config.read_text()) if config.is_file() else {}
    block = (opt.get("datasets") or {}).get("val") or {}
    dataset = TIFFolderDataset(
        {
            "dir": str(folder),
            "phase": "val",
            **{k: block[k] for k in NETWORK_INPUT_KEYS if block.get(k) is not None},
        }
    )
    items = [dataset[i] for i in range(len(dataset))]
    stats = torch.stack([torch.as_tensor(item["norm"]["gt"], dtype=torch.float64) for item in items])
    return [item["name"] for item in items], torch.stack([item["gt"] for item in items]), stats


def read_vectors(path: Path | None, inline: list[str]) -> list[list[float]]:
    vectors = [_numbers(text.split(","), f"--vector {text!r}") for text in inline]
    if path is not None:
        where = f"--vectors '{path}'"
        if not path.is_file():
            raise UserError(f"{where} is not a file; give a JSON list of vectors or a CSV file of rows.")
        try:
            text = path.read_text()
            rows = json.loads(text) if path.suffix == ".json" else None
        except Exception as error:  # missing, a folder, not UTF-8, not JSON: one sentence naming the file
            raise as_user_error(error, str(path)) or error from None
        if rows is None:  # CSV / whitespace rows
            rows = [line.replace(",", " ").split() for line in text.splitlines() if line.strip()]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise UserError(f"{where} must hold a list of vectors, e.g. [[0.1, 0.2, 900], [0.3, 0.1, 1000]].")
        vectors += [_numbers(row, f"{where} (row {i + 1})") for i, row in enumerate(rows)]
    if not vectors:
        raise UserError("The vectors given are empty; give --vector x,y,... or a --vectors file with rows.")
    return vectors


def _numbers(values, where: str) -> list[float]:
    """The finite numbers of one vector; NaN would be sampled into a NaN image without complaint."""
    numbers = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{where} has {str(value)!r}, which is not a number.") from None
        if not np.isfinite(number):
            raise UserError(f"{where} has {str(value)!r}; every number must be finite.")
        numbers.append(number)
    return numbers


def parse_labels(values: list[str]) -> list[int]:
    """`--labels 0 1 2` or `--labels 0,1,2`."""
    labels = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                labels.append(int(part))
            except ValueError:
                raise UserError(f"--labels takes whole numbers (class indices); got {part!r}.") from None
    return labels


def network_inputs(pipe, run: Path, conditions, vectors, labels, num_samples):
    """(names, inputs for the pipeline or None, per-sample intensity stats or None) for this run's kind."""
    kind = pipe.condition_type
    given = {"--conditions": conditions is not None, "--vector(s)": bool(vectors), "--labels": bool(labels)}
    wanted = {"image": "--conditions", "vector": "--vector(s)", "class": "--labels"}.get(kind)
    extra = [flag for flag, present in given.items() if present and flag != wanted]
    if extra:
        what = f"conditioned on {kind}s (give {wanted})" if wanted else "unconditional (give --num-samples)"
        raise UserError(f"This LDM is {what}, so {', '.join(extra)} does not apply.")
    if kind == "none":
        count = 4 if num_samples is None else num_samples
        return [f"sample_{i:04d}" for i in range(count)], None, None
    names, inputs, stats = _conditioned_inputs(pipe, run, kind, conditions, vectors, labels)
    if num_samples is None or num_samples == 1:
        return names, inputs, stats
    # N samples of each condition, named `<condition>_s<k>`; sample i of the whole list still starts
    # from the noise of seed + i, so the same call gives the same files.
    names = [f"{name}_s{k:02d}" for name in names for k in range(num_samples)]
    inputs = inputs.repeat_interleave(num_samples, dim=0)
    stats = None if stats is None else stats.repeat_interleave(num_samples, dim=0)
    return names, inputs, stats


def _conditioned_inputs(pipe, run: Path, kind: str, conditions, vectors, labels):
    if kind == "image":
        if conditions is None:
            raise UserError("This LDM is conditioned on images: give --conditions, a folder of TIFs.")
        names, inputs, stats = read_conditions(run, conditions)
        check_condition_size(pipe, names[0], inputs[:1])
        return names, inputs, stats
    if kind == "vector":
        if not vectors:
            raise UserError("This LDM is conditioned on vectors: give --vectors FILE or --vector x,y,...")
        lengths = sorted({len(v) for v in vectors})
        indices = pipe.description["condition"].get("indices")
        formulas = list(getattr(pipe.projector.config, "features", None) or [])
        if formulas:  # the formulas name the entries they use (v0, v1, ...)
            indices = list(range(entries_used(formulas)))
        needed = pipe.projector.config.in_channels
        usable = len(lengths) == 1 and (
            max(indices) < lengths[0] if indices is not None else lengths[0] == needed
        )
        if not usable:
            layout = (
                f"at least {max(indices) + 1} numbers (it uses entries {list(indices)})"
                if indices
                else (f"{needed} numbers")
            )
            raise UserError(f"This LDM takes vectors of {layout}; the vectors given have {lengths} numbers.")
        inputs = torch.tensor(vectors, dtype=torch.float32)
        return [f"sample_{i:04d}" for i in range(len(inputs))], inputs, None
    if kind == "class":
        classes = pipe.projector.config.num_classes
        if not labels:
            raise UserError(
                f"This LDM is conditioned on class labels: give --labels with indices from 0 to {classes - 1}, "
                "e.g. --labels 0 1 2."
            )
        bad = [label for label in labels if not 0 <= label < classes]
        if bad:
            raise UserError(f"--labels has {bad}, but this LDM knows {classes} classes: 0 to {classes - 1}.")
        inputs = torch.tensor(labels)
        return [f"class{int(c)}_{i:04d}" for i, c in enumerate(labels)], inputs, None
    raise UserError(f"This LDM's condition type '{kind}' cannot be given to generate.py.")


def check_condition_size(pipe, name: str, image: torch.Tensor) -> None:
    """Refuse conditions the VAE cannot give back at their own size: a 13x21 image comes back 14x22 from
    a VAE that halves once, and the sample would no longer line up with its condition."""
    from models.ldm.frozen_vae import encode_latents

    with torch.no_grad():
        latent = encode_latents(pipe.vae, image.float().to(next(pipe.vae.parameters()).device))
        returned = list(pipe.vae.decode(pipe.vae.unscale_latents(latent)).shape[2:])
    size = list(image.shape[2:])
    if size != returned:
        factor = max(round(s / n) for s, n in zip(size, latent.shape[2:]))
        raise UserError(
            f"The condition '{name}' is {'x'.join(map(str, size))}, but this run's VAE gives back "
            f"{'x'.join(map(str, returned))}; give conditions whose sides are multiples of {factor} (e.g. "
            f"crop to {'x'.join(str(s - s % factor) for s in size)})."
        )
