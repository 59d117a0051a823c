"""The best configuration of a search trained again, for the report: from scratch, with the trial's
seed, on the whole training set but the validation hold-out, for the epochs the trial ran, in
``<out>/best`` (``curves.png``, ``history.json``, ``model.npz``); its test accuracy is measured once,
after the last epoch. ``result.json`` records it, and a second report of the same study reuses it.
A run of the user's own in that folder is never trained over.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import write_text
from ..config import TrainConfig
from ..errors import UsageError
from ..search.study import format_config
from ..training.runs import RUN_FILES


def run_config(out: Path) -> dict | None:
    """The configuration of the run in ``out`` (its history.json's), or None when it cannot be read."""
    try:
        config = json.loads((out / "history.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return config if isinstance(config, dict) else None


def _read_result(path: Path) -> dict:
    """An earlier report's ``result.json`` ({} when there is none, or it cannot be read)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def retrain_best(number: int, trial_config: dict, epochs: int, out: Path, *, data_dir=None, verify: bool = True,
                 dataset=None, log=print) -> dict:
    """Train trial ``number``'s configuration again (same seed) for its ``epochs`` on the whole training
    set, in the folder ``out``; test once at the end.

    Reuses ``out/result.json`` when it was written for the same configuration and data.
    """
    from ..data.datasets import load_dataset
    from ..training.train import train

    config = TrainConfig.from_dict({**trial_config, "epochs": epochs})
    if dataset is None:
        dataset = load_dataset(config.dataset, data_dir, verify=verify, download=True)
    key = {"config": config.to_dict(), "checksums": dataset.checksums}
    result_path = out / "result.json"
    old = _read_result(result_path)
    here = run_config(out) if any((out / name).exists() for name in RUN_FILES) else None
    # the run there must be a report's: this configuration's (cut short, or done), or the one result.json
    # describes; a person's own run (even beside an earlier report's result.json) is never trained over
    if here is not None and here != config.to_dict() and here != old.get("config"):
        raise UsageError(f"{out}: holds another training run (not a retrain of this report's); the report "
                         f"trains the best configuration there: give another --out, or move that run")
    if old.get("key") == key and here == config.to_dict() and (out / "curves.png").exists():
        log(f"report: reusing the retrained best configuration in {out}")
        return old
    log(f"report: training trial {number}'s configuration again on the whole training set: "
        f"{format_config(config.to_dict())}, {config.epochs} epochs, seed {config.seed}")
    t0 = time.perf_counter()
    result = train(config, dataset, out_dir=out, evaluate_test=False,
                   log=lambda line: log("  " + line) if line.startswith("epoch") else None)
    seconds = time.perf_counter() - t0
    test_loss, test_acc = result.model.evaluate(dataset.test_images, dataset.test_labels)  # the kept model's
    last, kept = result.history.epochs[-1], result.history.best_epoch
    data = {"key": key, "trial": number, "config": config.to_dict(), "epochs": config.epochs,
            "train_rows": result.history.dataset.get("train_rows"), "val_rows": result.history.dataset.get("val_rows"),
            "train_loss": last["train_loss"], "train_acc": last["train_acc"], "val_loss": last["val_loss"],
            "val_acc": last["val_acc"], "kept_epoch": kept, "test_loss": test_loss, "test_acc": test_acc,
            "test_rows": int(len(dataset.test_images)), "seconds": seconds}
    write_text(result_path, json.dumps(data, indent=2) + "\n")
    from ..training.curves import plot_curves
    plot_curves(result.history, out / "curves.png",
                title=f"best configuration (trial {number}) trained again: hidden {list(config.hidden_sizes)}, "
                      f"batch {config.batch_size}; test accuracy {100 * test_acc:.2f}% (epoch {kept}'s model)")
    log(f"report: test accuracy {100 * test_acc:.2f}% (measured once, on the model of epoch {kept}, "
        f"{kept_text(data)})")
    return data


def kept_text(r: dict) -> str:
    """Why the retrained run kept the model it tested: the best validation accuracy, or the last epoch."""
    return "the best validation accuracy" if r.get("val_rows") and "kept_epoch" in r else "the last epoch"
