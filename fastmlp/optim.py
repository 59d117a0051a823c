"""Adam over flat float32 buffers.

Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1. With
gradient g at step t = 1, 2, ...::

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

Defaults are the paper's: lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8. The moments ``m``
and ``v`` share the parameter buffer's layout, so one pass of
:func:`fastmlp.kernels.adam_update` updates every weight and bias.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .config import check_adam_hyperparameters


class Adam:
    """Adam state (m, v, t) for a flat parameter buffer of ``n`` float32 values; ``t`` counts updates."""

    def __init__(self, n: int, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        check_adam_hyperparameters(lr, beta1, beta2, eps)
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.m = np.zeros(n, np.float32)
        self.v = np.zeros(n, np.float32)
        self.t = 0

    def advance(self, n_steps: int) -> None:
        """Count ``n_steps`` updates made by a fused kernel (``kernels.train_steps``) with this state."""
        self.t += int(n_steps)

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        """One update of ``params`` in place from ``grads`` (same layout)."""
        self.t += 1
        kernels.adam_update(params, grads, self.m, self.v, self.lr, self.beta1, self.beta2, self.eps, self.t)
