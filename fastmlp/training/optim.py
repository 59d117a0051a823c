"""Adam over flat float32 buffers, with decoupled weight decay and weight averaging, and eta's schedules.

Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1. With
gradient g at step t = 1, 2, ...::

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

Defaults are the paper's: lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8. The moments ``m``
and ``v`` share the parameter buffer's layout, so one pass of
:func:`fastmlp.engine.update.adam_update` updates every weight and bias.

Options, all off by default (then the update is exactly the paper's): ``weight_decay`` (AdamW,
Loshchilov & Hutter 2019: weights, not biases, shrink by ``1 - lr weight_decay`` each step),
``max_norm`` (each hidden unit's incoming weights kept within that L2 norm) and ``ema`` (an
exponential moving average of the parameters, a fifth buffer of the same layout, updated in the
same pass: :func:`fastmlp.engine.update.adamw_update`).

:class:`Schedule` gives eta per step: the per-epoch decay ``lr * lr_decay ** (epoch - 1)``, or
per step a cosine with linear warm-up, or one-cycle (:func:`fastmlp.engine.update.lr_at_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import check_adam_hyperparameters
from ..engine import update
from ..engine.layout import aligned_zeros

SCHEDULE_CODES = {"decay": update.SCHED_CONSTANT, "cosine": update.SCHED_COSINE, "onecycle": update.SCHED_ONECYCLE}


class Adam:
    """Adam state (m, v, t, and the average) for a flat parameter buffer of ``n`` float32 values.

    ``t`` counts updates. ``ema`` is the averaged parameters (empty when ``ema_decay`` is 0);
    :meth:`start_average` sets it to the initial parameters.
    """

    def __init__(self, n: int, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, max_norm: float = 0.0, ema_decay: float = 0.0):
        check_adam_hyperparameters(lr, beta1, beta2, eps)
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.weight_decay, self.max_norm, self.ema_decay = float(weight_decay), float(max_norm), float(ema_decay)
        self.m = aligned_zeros(n)
        self.v = aligned_zeros(n)
        self.ema = aligned_zeros(n if ema_decay > 0 else 0)
        self.t = 0

    @property
    def plain(self) -> bool:
        """True when the update is the paper's (no decay, no max-norm, no average)."""
        return self.weight_decay == 0 and self.max_norm == 0 and self.ema_decay == 0

    def start_average(self, params: np.ndarray) -> None:
        if self.ema.size:
            self.ema[:] = params

    def advance(self, n_steps: int) -> None:
        """Count ``n_steps`` updates made by the training kernels (:mod:`fastmlp.engine.step`) with this state."""
        self.t += int(n_steps)

    def step(self, params: np.ndarray, grads: np.ndarray, layout: np.ndarray | None = None,
             lr: float | None = None) -> None:
        """One update of ``params`` in place from ``grads`` (same layout); ``lr`` overrides eta.

        ``layout`` (the model's) is needed when weight decay, max-norm or the average is on.
        """
        self.t += 1
        lr = self.lr if lr is None else lr
        if self.plain:
            update.adam_update(params, grads, self.m, self.v, lr, self.beta1, self.beta2, self.eps, self.t)
        else:
            update.adamw_update(params, grads, self.m, self.v, self.ema, layout, lr, self.beta1, self.beta2,
                                 self.eps, self.t, self.weight_decay, self.max_norm, self.ema_decay)


@dataclass
class Schedule:
    """Eta of every step of a run of ``epochs`` epochs of ``steps_per_epoch`` steps.

    ``kind`` ``decay``: ``lr * lr_decay ** (epoch - 1)`` through epoch ``epoch``; ``cosine`` and
    ``onecycle``: per step, with ``warmup`` epochs of warm-up, ending at ``lr * floor``.
    """

    kind: str
    lr: float
    lr_decay: float
    warmup: float
    floor: float
    epochs: int
    steps_per_epoch: int

    @property
    def code(self) -> int:
        return SCHEDULE_CODES[self.kind]

    @property
    def warmup_steps(self) -> float:
        return self.warmup * self.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def epoch_lr(self, epoch: int) -> float:
        """The eta handed to the kernel for ``epoch`` (from 1): the base of the per-step schedule."""
        return self.lr * self.lr_decay ** (epoch - 1) if self.kind == "decay" else self.lr

    def at_step(self, k: int, epoch: int) -> float:
        """Eta of step k (from 0, counted over the run) during ``epoch``."""
        return float(update.lr_at_step(self.code, self.epoch_lr(epoch), k, self.warmup_steps,
                                        float(self.total_steps), self.floor))
