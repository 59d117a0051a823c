"""The training configuration: the homework's hyperparameters, checked before anything runs.

Importing this module is cheap (no Numba), so a command can reject a bad value at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


class ConfigError(ValueError):
    """An invalid hyperparameter. The message is one line naming it."""


def check_adam_hyperparameters(lr: float, beta1: float, beta2: float, eps: float) -> None:
    """Raise ValueError naming the first bad value."""
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number; got {lr}")
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if not (0 <= beta < 1):
            raise ValueError(f"{name} must be in [0, 1); got {beta}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive number; got {eps}")


@dataclass
class TrainConfig:
    """The homework's hyperparameters, plus the seed and the validation hold-out size."""

    # The defaults are `make train`'s: past 98% test accuracy on MNIST within three epochs.
    hidden_sizes: tuple[int, ...] = (1024,)
    batch_size: int = 64
    lr: float = 1.5e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    epochs: int = 8
    lr_decay: float = 0.7   # eta is multiplied by this after every epoch; 1 keeps it constant
    seed: int = 0
    val_size: int = 5000
    dataset: str = "mnist"

    def __post_init__(self):
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)

    def validate(self, n_train: int | None = None) -> "TrainConfig":
        """Raise :class:`ConfigError` naming the first bad value; return self."""
        if len(self.hidden_sizes) == 0 or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError(f"hidden_sizes must be one or more positive integers; got {list(self.hidden_sizes)}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {self.batch_size}")
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1; got {self.epochs}")
        if not (0 < self.lr_decay <= 1):
            raise ConfigError(f"lr_decay must be in (0, 1]; got {self.lr_decay}")
        if self.val_size < 0:
            raise ConfigError(f"val_size must be >= 0; got {self.val_size}")
        try:
            check_adam_hyperparameters(self.lr, self.beta1, self.beta2, self.eps)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if n_train is not None:
            if self.val_size >= n_train:
                raise ConfigError(f"val_size {self.val_size} leaves no training images out of {n_train}")
            if self.batch_size > n_train - self.val_size:
                raise ConfigError(f"batch_size {self.batch_size} is larger than the training set "
                                  f"({n_train - self.val_size} images)")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})
