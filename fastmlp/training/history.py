"""What a run records: one :class:`EpochRecord` per epoch, the :class:`History` of the run, its
best epoch and the early-stopping rule (:class:`BestEpoch`), and ``metrics.csv``.

The model a run keeps (``model.npz``) is the one of its best epoch: the highest validation
accuracy so far, the first of equals; without a validation hold-out, the last epoch. The test
set never chooses anything: each epoch's test figures are kept for the curves only, and the
kept model's test accuracy is measured once, at the end (the history's ``notes`` say so).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .runs import json_safe

#: What the figures of a history.json are and are not used for (its ``notes``).
NOTES = [
    "model.npz holds the model of best_epoch: the highest validation accuracy (val_acc), or the last epoch "
    "without a validation hold-out; last.npz, when present, holds the last epoch's",
    "test_loss and test_acc at the top are those of the model in model.npz, measured once at the end of the run",
    "test_loss and test_acc of each epoch are reported for the curves only: nothing is chosen by them",
]

#: The columns of metrics.csv, one row per epoch.
METRICS_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "samples_per_s", "elapsed_s")


@dataclass
class EpochRecord:
    """What one epoch did. Accuracies are fractions in [0, 1]; losses are mean cross-entropies."""

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    test_loss: float | None
    test_acc: float | None
    train_seconds: float
    samples_per_s: float
    elapsed_s: float
    train_on: str = "plain"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """What a run did: its configuration, one record per epoch, how it ended, and the model it kept.

    ``status``: running, completed, stopped early, diverged or interrupted. ``best_epoch``: the
    epoch whose model ``model.npz`` holds; ``test_loss``/``test_acc``: that model's, measured
    once at the end (None before, or without a test set).
    """

    config: dict
    epochs: list[dict] = field(default_factory=list)
    status: str = "running"
    dataset: dict = field(default_factory=dict)
    message: str = ""
    best_epoch: int | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    notes: list[str] = field(default_factory=list)   # what the figures are for (a new run's: NOTES)

    def to_json(self) -> str:
        return json.dumps(json_safe(asdict(self)), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls(**json.loads(text))

    def column(self, key: str) -> list[float]:
        return [e.get(key, float("nan")) for e in self.epochs]

    def metrics_csv(self) -> str:
        """``metrics.csv``: a header of :data:`METRICS_COLUMNS`, then one row per epoch (empty: no value)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(METRICS_COLUMNS)
        for record in self.epochs:
            writer.writerow(["" if record.get(k) is None else record[k] for k in METRICS_COLUMNS])
        return out.getvalue()


def format_epoch(rec: dict) -> str:
    """One line per epoch, as printed by ``fastmlp train`` (``train*``: on augmented/dropout batches).

    Training and validation figures only: the test set is reported once, at the end of the run.
    """
    star = "" if rec.get("train_on", "plain") == "plain" else "*"
    parts = [f"epoch {rec['epoch']:>3}", f"loss{star} {rec['train_loss']:.4f}",
             f"train{star} {100 * rec['train_acc']:6.2f}%"]
    if rec.get("val_acc") is not None:
        parts += [f"val loss {rec['val_loss']:.4f}", f"val {100 * rec['val_acc']:6.2f}%"]
    parts += [f"{rec['samples_per_s']:8.0f} samples/s",
              f"{rec['elapsed_s']:6.1f}s"]
    return "  ".join(parts)


@dataclass
class BestEpoch:
    """The best epoch so far, and the early-stopping rule.

    An epoch is the best when its validation accuracy is the highest so far (the first of
    equals keeps it); without a validation set every epoch is (the last one is kept). It
    *improves* when it rises above the best before it by more than ``min_delta``; ``stale``
    counts the epochs since the last one that did, and with ``patience`` > 0 the run stops once
    ``stale`` reaches it (scikit-learn's ``n_iter_no_change`` and ``tol``, on the accuracy).
    """

    patience: int = 0
    min_delta: float = 0.0
    epoch: int = 0                 # the best epoch (0: none yet)
    val_acc: float | None = None   # its validation accuracy
    stale: int = 0                 # epochs since the validation accuracy last improved

    def observe(self, epoch: int, val_acc: float | None) -> bool:
        """Count ``epoch`` in; True when it is the new best epoch."""
        if val_acc is None:
            self.epoch, self.stale = epoch, 0
            return True
        improved = self.val_acc is None or val_acc > self.val_acc + self.min_delta
        self.stale = 0 if improved else self.stale + 1
        if self.val_acc is None or val_acc > self.val_acc:
            self.epoch, self.val_acc = epoch, val_acc
            return True
        return False

    @property
    def stop(self) -> bool:
        """True when the run should stop: ``patience`` epochs in a row without an improvement."""
        return self.patience > 0 and self.stale >= self.patience

    def reason(self) -> str:
        """Why the run stopped early, in one line."""
        by = f" by more than {self.min_delta:g}" if self.min_delta else ""
        return (f"the validation accuracy has not improved{by} for {self.stale} epoch{'s' * (self.stale != 1)} "
                f"(best {100 * self.val_acc:.2f}% at epoch {self.epoch})")

    @classmethod
    def replay(cls, patience: int, min_delta: float, records: list[dict]) -> BestEpoch:
        """The state after ``records`` (a history's epochs), as if they had been observed one by one."""
        best = cls(patience, min_delta)
        for record in records:
            best.observe(record["epoch"], record.get("val_acc"))
        return best


def ended(folder: str | os.PathLike) -> bool:
    """Whether the run in ``folder`` ended (completed or stopped early), as its history.json says; a run
    killed after its last checkpoint has not, and resuming it finishes it."""
    path = Path(folder) / "history.json"
    if not path.is_file():  # absent, or a named pipe that reading would wait on
        return False
    try:
        status = History.from_json(path.read_text(encoding="utf-8")).status
    except (OSError, ValueError, TypeError):
        return False
    return status in ("completed", "stopped early")


def nothing_left(folder: str | os.PathLike, config, records: list[dict]) -> str | None:
    """Why resuming the run in ``folder`` (its epochs so far: ``records``) with ``config`` would train
    nothing, in one line; None when it would train, or finish a run that was cut short."""
    if not ended(folder):
        return None
    done = len(records)
    if done >= config.epochs:
        return f"{folder}: the run has trained all its {done} epochs; give --epochs above {done} to continue it"
    best = BestEpoch.replay(config.patience, config.min_delta, records)
    if best.stop:
        return (f"{folder}: --patience {config.patience} stops the run after epoch {done}: {best.reason()}; give "
                f"--patience above {best.stale} (or 0: off) to continue it")
    return None
