"""`Loss('1*MSE+0.1*L1')`, importable where plugins look for it; defined in utils/losses/expression.py."""

from utils.losses import Loss

__all__ = ["Loss"]
