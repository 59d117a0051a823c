"""Training: the configuration, the seeded sampler, and the thin loop around the kernels.

One epoch is a fresh permutation of the training rows (the validation hold-out excluded), cut
into mini-batches of ``batch_size``; the last, shorter batch is kept, so every training image
is used exactly once per epoch. The random stream is used in the reference's order: first the
weights, layer by layer, then one permutation per epoch, so ``reference.train_reference`` on
the same rows and seed sees the same batches.

Each epoch records:

* ``train_loss``, ``train_acc``: means over the epoch's mini-batches, measured as they were
  trained on (the usual running figures; no extra pass over 55,000 images);
* ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc``: a batched forward pass over those
  sets with the parameters at the end of the epoch.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import kernels
from .atomic import write_text
from .data import Dataset, load_dataset, validation_split
from .model import MLP
from .config import ConfigError, TrainConfig  # noqa: F401  (part of this module's API)
from .optim import Adam


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, loss: float, history: "History"):
        super().__init__(f"loss became {loss} at epoch {epoch}, step {step}: training diverged "
                         f"(try a smaller --lr)")
        self.epoch, self.step, self.loss, self.history = epoch, step, loss, history


class TrainingStopped(Exception):
    """Raised by an ``on_epoch`` callback to stop training early (e.g. a pruned search trial)."""


@dataclass
class History:
    """What a run did: its configuration, one record per epoch, and how it ended."""

    config: dict
    epochs: list[dict] = field(default_factory=list)
    status: str = "running"          # running, completed, diverged, interrupted, stopped
    dataset: dict = field(default_factory=dict)
    message: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, allow_nan=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "History":
        return cls(**json.loads(text))

    def column(self, key: str) -> list[float]:
        return [e.get(key, float("nan")) for e in self.epochs]


@dataclass
class TrainResult:
    model: MLP
    history: History


class Progress:
    """One self-rewriting line on a terminal (epoch, fraction, samples/s, loss); quiet elsewhere."""

    def __init__(self, stream=sys.stderr, enabled: bool | None = None):
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled

    def update(self, epoch: int, epochs: int, done: int, total: int, rate: float, loss: float) -> None:
        if not self.enabled:
            return
        frac = done / total
        bar = "#" * int(24 * frac)
        self.stream.write(f"\repoch {epoch}/{epochs} [{bar:<24}] {100 * frac:5.1f}%  "
                          f"{rate:8.0f} samples/s  loss {loss:.4f} ")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def format_epoch(rec: dict) -> str:
    """One line per epoch, as printed by ``fastmlp train``."""
    parts = [f"epoch {rec['epoch']:>3}", f"loss {rec['train_loss']:.4f}", f"train {100 * rec['train_acc']:6.2f}%"]
    if rec.get("val_acc") is not None:
        parts.append(f"val {100 * rec['val_acc']:6.2f}%")
    if rec.get("test_acc") is not None:
        parts.append(f"test {100 * rec['test_acc']:6.2f}%")
    parts += [f"{rec['samples_per_s']:8.0f} samples/s",
              f"{rec['elapsed_s']:6.1f}s"]
    return "  ".join(parts)


def _steps_per_call(n_steps: int) -> int:
    """Steps handed to one kernel call: about 20 calls an epoch, for the progress line."""
    return max(1, min(n_steps, math.ceil(n_steps / 20)))


def train(config: TrainConfig, dataset: Dataset | Callable[[], Dataset] | None = None, *, data_dir=None,
          verify: bool = True, out_dir=None,
          on_epoch: Callable[[dict], None] | None = None, progress: Progress | None = None,
          log: Callable[[str], None] | None = None, train_rows: np.ndarray | None = None,
          evaluate_test: bool = True) -> TrainResult:
    """Train an MLP on ``dataset`` with ``config``.

    When ``dataset`` is None, ``config.dataset`` is loaded from ``data_dir`` (downloaded on
    first use); when it is a callable (e.g. :class:`fastmlp.data.BackgroundLoad`), it is
    called for the dataset. Either way train() then owns the arrays and frees them before the
    final plot, which keeps the peak memory down.

    ``on_epoch(record)`` runs after each epoch's evaluation; raising :class:`TrainingStopped`
    there ends training cleanly (status ``stopped``). ``train_rows`` restricts training to a
    subset of the training rows (after the validation split). With ``out_dir``, writes
    ``history.json`` and ``model.npz`` after every epoch and ``curves.png`` at the end, each
    atomically. Raises :class:`TrainingDiverged` when the loss stops being finite, after
    saving the history so far.
    """
    t_start = time.perf_counter()
    config.validate()
    owns_dataset = not isinstance(dataset, Dataset)
    if owns_dataset:
        dataset = dataset() if dataset is not None else load_dataset(config.dataset, data_dir, verify=verify,
                                                                     download=True)
        if log is not None:
            log(f"data: {dataset.name} from {dataset.source} ({len(dataset.train_images)} train, "
                f"{len(dataset.test_images)} test images{'' if verify else ', unverified'})")
    n_train_all = len(dataset.train_images)
    config.validate(n_train_all)
    fit_idx, val_idx = validation_split(n_train_all, config.val_size)
    if train_rows is not None:
        fit_idx = fit_idx[np.asarray(train_rows, dtype=np.int64)]
        if config.batch_size > len(fit_idx):
            raise ConfigError(f"batch_size {config.batch_size} is larger than the training subset ({len(fit_idx)})")
    fit_idx = fit_idx.astype(np.int64)
    test_rows = np.arange(len(dataset.test_images), dtype=np.int64)

    rng = np.random.default_rng(config.seed)
    sizes = [dataset.num_features, *config.hidden_sizes, dataset.num_classes]
    model = MLP.initialized(sizes, rng)
    grads = np.zeros_like(model.params)
    adam = Adam(model.num_parameters, config.lr, config.beta1, config.beta2, config.eps)
    ws = model.workspace(config.batch_size)
    history = History(config=config.to_dict(), dataset={"name": dataset.name, "source": str(dataset.source),
                                                        "checksums": dataset.checksums,
                                                        "train_rows": int(len(fit_idx)),
                                                        "val_rows": int(len(val_idx))})
    out = Path(out_dir) if out_dir is not None else None
    progress = progress or Progress(enabled=False)
    n = len(fit_idx)
    n_steps = -(-n // config.batch_size)
    per_call = _steps_per_call(n_steps)
    losses = np.empty(per_call, np.float64)
    images, labels = dataset.train_images, dataset.train_labels

    def save(status: str, message: str = "") -> None:
        history.status, history.message = status, message
        if out is not None:
            write_text(out / "history.json", history.to_json())
            if history.epochs:
                model.save(out / "model.npz", config=config.to_dict(), dataset=history.dataset,
                           epoch=history.epochs[-1]["epoch"], status=status)

    def run_steps(order, first, k, lr):
        return kernels.train_steps(
            model.params, grads, adam.m, adam.v, model.layout, images, labels, order, first, k,
            config.batch_size, ws.x, ws.y, ws.z, ws.h, ws.d, ws.act_off,
            lr, adam.beta1, adam.beta2, adam.eps, adam.t, losses)

    run_steps(fit_idx, 0, 0, config.lr)  # zero steps: loads the compiled kernel before timing starts
    if log is not None:
        log(f"training: {n} images an epoch, {n_steps} steps of {config.batch_size}")
    try:
        for epoch in range(1, config.epochs + 1):
            t_epoch = time.perf_counter()
            order = fit_idx[rng.permutation(n)]
            lr = config.lr * config.lr_decay ** (epoch - 1)
            loss_sum, correct, step = 0.0, 0, 0
            while step < n_steps:
                k = min(per_call, n_steps - step)
                correct += run_steps(order, step, k, lr)
                bad = np.flatnonzero(~np.isfinite(losses[:k]))
                if bad.size:
                    progress.clear()
                    err = TrainingDiverged(epoch, step + int(bad[0]) + 1, float(losses[bad[0]]), history)
                    save("diverged", str(err))
                    raise err
                sizes_k = np.minimum(config.batch_size, n - (step + np.arange(k)) * config.batch_size)
                loss_sum += float(losses[:k] @ sizes_k)
                adam.t += k
                step += k
                seen = min(step * config.batch_size, n)
                progress.update(epoch, config.epochs, seen, n, seen / (time.perf_counter() - t_epoch),
                                loss_sum / seen)
            train_seconds = time.perf_counter() - t_epoch
            rec = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / n, "train_acc": correct / n}
            if len(val_idx):
                rec["val_loss"], rec["val_acc"] = model.evaluate(images, labels, val_idx)
            else:
                rec["val_loss"] = rec["val_acc"] = None
            if evaluate_test:
                rec["test_loss"], rec["test_acc"] = model.evaluate(dataset.test_images, dataset.test_labels, test_rows)
            else:
                rec["test_loss"] = rec["test_acc"] = None
            rec["train_seconds"] = train_seconds
            rec["samples_per_s"] = n / train_seconds
            rec["elapsed_s"] = time.perf_counter() - t_start
            progress.clear()
            history.epochs.append(rec)
            save("running")
            if log is not None:
                log(format_epoch(rec))
            if on_epoch is not None:
                on_epoch(rec)
    except TrainingStopped as stop:
        save("stopped", str(stop))
        return TrainResult(model, history)
    except KeyboardInterrupt:
        progress.clear()
        save("interrupted", "interrupted by the user")
        raise
    save("completed")
    if out is not None:
        if owns_dataset:  # free ~55 MB of images before matplotlib loads
            del dataset, images, labels, fit_idx, val_idx, test_rows
        from .plots import plot_curves
        plot_curves(history, out / "curves.png")
    return TrainResult(model, history)
