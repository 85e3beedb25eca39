"""`Loss('1*MSE+0.1*L1')`: a weighted sum of named losses, parsed without `eval`.

Calling it returns every term by name (unweighted, for logging) and `'all'`, the weighted sum to
back-propagate. Terms are separated by `+` or `|`.
"""

import re

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import ConfigError, did_you_mean


def charbonnier(pred, target, eps: float = 1e-3):
    # A smooth L1 that stays differentiable at 0 (common in image restoration).
    return torch.sqrt((pred - target) ** 2 + eps**2).mean()


def bce(pred, target):
    # Predictions are probabilities; the clamp keeps log() finite at exactly 0 or 1.
    return F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), target)


class SSIMLoss(nn.Module):
    """1 - SSIM, by MONAI, for 2D (NCHW) or 3D (NCDHW) tensors with values in [0, 1]."""

    def __init__(self):
        super().__init__()
        self._by_dims = {}

    def forward(self, pred, target):
        from monai.losses import SSIMLoss as MonaiSSIMLoss

        dims = pred.ndim - 2
        if dims not in self._by_dims:
            self._by_dims[dims] = MonaiSSIMLoss(
                spatial_dims=dims, data_range=1.0, win_size=min(7, *pred.shape[2:]) | 1
            )
        return self._by_dims[dims](pred, target)


LOSSES = {
    "MSE": lambda: F.mse_loss,
    "L1": lambda: F.l1_loss,
    "Huber": lambda: F.smooth_l1_loss,
    "Charbonnier": lambda: charbonnier,
    "BCE": lambda: bce,
    "BCEWithLogits": lambda: F.binary_cross_entropy_with_logits,
    "SSIM": SSIMLoss,
}

_TERM = re.compile(
    r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$"
)


class Loss(nn.Module):
    """A weighted sum of named losses: `Loss('1*MSE+0.1*L1')(pred, target)['all']`."""

    def __init__(self, spec: str):
        super().__init__()
        self.spec = spec
        self.terms = self.parse(spec)
        self.fns = nn.ModuleDict()
        self._plain = {}
        for name, _ in self.terms:
            fn = LOSSES[name]()
            if isinstance(fn, nn.Module):
                self.fns[name] = fn
            else:
                self._plain[name] = fn

    @staticmethod
    def parse(spec: str, where: str = "loss") -> list[tuple[str, float]]:
        """`'1*MSE+0.1*L1'` -> `[('MSE', 1.0), ('L1', 0.1)]`, or a ConfigError naming the bad term."""
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"'{where}' must be a loss expression such as '1*MSE+0.1*L1', got {spec!r}.")
        by_lower = {n.lower(): n for n in LOSSES}
        terms = []
        for raw in re.split(r"[+|]", spec):
            match = _TERM.match(raw)
            if not match:
                raise ConfigError(
                    f"'{where}' = {spec!r}: the term {raw.strip()!r} is not of the form 'weight*Name' (e.g. 0.1*L1)."
                )
            name = by_lower.get(match["name"].lower())
            if name is None:
                raise ConfigError(
                    f"'{where}' = {spec!r}: unknown loss '{match['name']}'{did_you_mean(match['name'], LOSSES)}; "
                    f"known: {', '.join(LOSSES)}."
                )
            if any(name == n for n, _ in terms):
                raise ConfigError(
                    f"'{where}' = {spec!r} names the loss '{name}' twice; add the weights instead."
                )
            terms.append((name, float(match["weight"]) if match["weight"] else 1.0))
        return terms

    def forward(self, pred, target) -> dict[str, torch.Tensor]:
        values = {}
        total = 0.0
        for name, weight in self.terms:
            fn = self.fns[name] if name in self.fns else self._plain[name]
            values[name] = fn(pred, target)
            total = total + weight * values[name]
        values["all"] = total
        return values

    def extra_repr(self) -> str:
        return repr(self.spec)
