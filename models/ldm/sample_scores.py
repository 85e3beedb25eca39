"""`generate.py --targets FOLDER`: the samples written, scored against their paired targets.

A sample is paired with the target TIF of its condition's name (`<name>.tif`, or `<name>_sK.tif`'s
`<name>` under `--num-samples`). Each is scored as `vae_reconstruct.py` scores, in the targets' own
intensity range (PSNR and SSIM with each target's data range), plus Dice of the foregrounds (above
0.5) when the targets are masks (whole numbers, at most 32 values: 0/1 masks or class maps). Two baselines say whether the condition mattered: the mean of all
targets scored against each target, and each sample scored against the target of another condition
(the conditions shuffled: a roll by one over the distinct names).
"""

import json
import re
from pathlib import Path

import numpy as np
import tifffile

from utils.errors import UserError
from utils.metrics.image import psnr, ssim
from utils.metrics.mask import dice

_SAMPLE_SUFFIX = re.compile(r"_s\d+$")


def score_samples(written: list[Path], out: Path, targets: Path) -> dict:
    """Score the TIFs `written` against the TIFs in `targets`; writes and returns `out/metrics.json`."""
    samples = {path: tifffile.imread(path).astype(np.float64) for path in written}
    pairs = {path: _condition_name(path, out) for path in samples}
    truth = {name: _read_target(targets, name, samples[path].shape) for path, name in pairs.items()}
    masks = _are_masks(list(truth.values()))
    per_sample = {
        str(path.relative_to(out)): _scores(samples[path], truth[pairs[path]], masks) for path in samples
    }
    names = sorted(truth)
    mean_target = np.mean([truth[n] for n in names], axis=0)
    report = {
        "targets": str(targets),
        "samples": per_sample,
        "mean": _mean(per_sample.values()),
        "mean_target_baseline": _mean(_scores(mean_target, truth[n], masks) for n in names),
    }
    if len(names) > 1:  # each sample against another condition's target
        other = dict(zip(names, names[1:] + names[:1]))
        report["shuffled_condition_baseline"] = _mean(
            _scores(samples[path], truth[other[name]], masks) for path, name in pairs.items()
        )
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def _are_masks(targets: list[np.ndarray]) -> bool:
    values = np.unique(np.concatenate([t.ravel() for t in targets]))
    return len(values) <= 32 and bool(np.all(values == np.round(values)))


def _condition_name(path: Path, out: Path) -> str:
    stem = str(path.relative_to(out).with_suffix(""))
    return _SAMPLE_SUFFIX.sub("", stem)


def _read_target(folder: Path, name: str, shape) -> np.ndarray:
    for suffix in (".tif", ".tiff"):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            target = tifffile.imread(path).astype(np.float64)
            if target.size != int(np.prod(shape)) or target.squeeze().shape != _squeezed(shape):
                raise UserError(
                    f"--targets '{path}' is {'x'.join(map(str, target.shape))}, but its sample is "
                    f"{'x'.join(map(str, shape))}; give targets of the samples' size."
                )
            return target.reshape(shape)
    raise UserError(
        f"--targets '{folder}' has no '{name}.tif' for the sample of condition '{name}'; targets are "
        "paired with the conditions by file name."
    )


def _squeezed(shape) -> tuple:
    return tuple(side for side in shape if side != 1)


def _scores(sample: np.ndarray, target: np.ndarray, masks: bool) -> dict[str, float]:
    p, t = sample.reshape(1, 1, *sample.shape), target.reshape(1, 1, *target.shape)
    scores = {"psnr": psnr(p, t), "ssim": ssim(p, t)}
    if masks:
        scores["dice"] = dice(p, t)
    return scores


def _mean(rows) -> dict[str, float]:
    rows = list(rows)
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
