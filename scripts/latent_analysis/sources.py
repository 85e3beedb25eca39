"""What to encode: groups of TIF folders, a CSV manifest with a group column, or a run's validation set,
read with the normalisation and patch size the VAE was trained with; labels optionally from a regex."""

import re
from dataclasses import dataclass

from dataset.common.image_keys import NETWORK_INPUT_KEYS
from utils.errors import ConfigError, DataError


@dataclass
class Source:
    """One dataset to encode; `group` labels all its items unless `group_of_item` labels each."""

    dataset: object
    image_key: str
    group: str | None = None
    group_of_item: list[str] | None = None


def network_input_options(run_opt: dict) -> dict:
    """The run's data options that decide what the VAE saw (normalisation, patch size, channels)."""
    datasets = run_opt.get("datasets") or {}
    block = datasets.get("val") or datasets.get("train") or {}
    return {k: block[k] for k in NETWORK_INPUT_KEYS if block.get(k) is not None}


def parse_group(text: str) -> tuple[str, str]:
    """'edente=data/edente' -> ('edente', 'data/edente')."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise ConfigError(f"--group '{text}' should be NAME=FOLDER, e.g. --group edente=data/edente.")
    return name, folder


def folder_sources(groups: list[str], input_options: dict) -> list[Source]:
    from dataset.tif_dataset import TIFFolderDataset

    sources = []
    for text in groups:
        name, folder = parse_group(text)
        dataset = TIFFolderDataset({"dir": folder, "phase": "val", **input_options})
        sources.append(Source(dataset, dataset.gt_key, group=name))
    return sources


def manifest_source(csv_path: str, path_column: str, group_column: str, input_options: dict) -> Source:
    from dataset.manifest_dataset import ManifestDataset

    dataset = ManifestDataset(
        {
            "csv": csv_path,
            "columns": {"gt": path_column},
            "group_column": group_column,
            "phase": "val",
            **input_options,
        }
    )
    return Source(dataset, "gt", group_of_item=[str(r.group) for r in dataset.records])


def validation_source(run_opt: dict) -> Source:
    from dataset import create_dataset

    block = (run_opt.get("datasets") or {}).get("val")
    if not block:
        raise ConfigError(
            "--val-set: the run's config.yml has no 'datasets.val' block; give --group or --manifest."
        )
    dataset = create_dataset({**block, "phase": "val"})
    image_key = (run_opt.get("val") or {}).get("gt_key", "gt")
    return Source(dataset, image_key, group="val")


def label_by_regex(names: list[str], pattern: str) -> list[str]:
    """Each name's first capture group (or whole match) of `pattern`, e.g. '^(p\\d+)_' -> 'p01'."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"--label-regex '{pattern}' is not a valid regular expression: {error}.") from None
    labels = []
    for name in names:
        match = compiled.search(name)
        if match is None:
            raise DataError(
                f"--label-regex '{pattern}' does not match the file name '{name}'; every name needs a label."
            )
        labels.append(match.group(1) if compiled.groups else match.group(0))
    return labels
