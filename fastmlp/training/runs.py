"""A run's folder: checked before training, never mixing two runs, and a checkpoint to resume from.

A run folder holds :data:`RUN_FILES`: ``history.json``, ``metrics.csv``, ``model.npz`` (the best
epoch's model), ``last.npz`` (the last epoch's, while it differs), ``curves.png`` and
``checkpoint.npz``. Every file is written atomically (temporary file, fsync, rename), so a
kill at any moment leaves each file either old and whole or new and whole; the checkpoint is
the one a resumed run trusts.

* :func:`prepare_run_folder` runs before any training: the folder must be creatable and
  writable (a file, ``/dev/null``, a read-only or ``/proc`` folder or an over-long name is one
  line, at once, not after an epoch); temporary files a killed run left are removed; and a new
  run removes the previous run's files, so the folder never mixes two runs.
* :func:`save_checkpoint` / :func:`load_checkpoint`: named float arrays plus JSON metadata in
  one ``.npz`` (no pickles).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, ensure_writable_folder, remove_stale_temporaries
from ..errors import UsageError

RUN_FILES = ("history.json", "metrics.csv", "model.npz", "last.npz", "curves.png", "checkpoint.npz")
CHECKPOINT = "checkpoint.npz"


def describe_os_error(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and write one probe file in it; :class:`UsageError` otherwise."""
    try:
        ensure_writable_folder(folder)
    except FileExistsError:
        raise UsageError(f"{folder}: cannot be the output folder: a file of that name exists") from None
    except OSError as exc:
        raise UsageError(f"{folder}: cannot write the output folder ({describe_os_error(exc)})") from None


def prepare_run_folder(folder: str | os.PathLike, *, resume: bool = False) -> list[str]:
    """Make ``folder`` ready for a run; return the names of the previous run's files removed.

    With ``resume`` the previous run's files stay (the run continues them).
    """
    folder = Path(folder)
    check_writable(folder)
    remove_stale_temporaries(folder, list(RUN_FILES))
    if resume:
        return []
    removed = []
    for name in RUN_FILES:
        path = folder / name
        if path.exists():
            try:
                path.unlink()
            except OSError as exc:
                raise UsageError(f"{path}: cannot replace the previous run's file ({describe_os_error(exc)})") from None
            removed.append(name)
    return removed


def json_safe(value):
    """``value`` with every non-finite float replaced by None, so strict JSON parsers read it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` and the JSON ``meta`` to ``path`` atomically (fsynced)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(json_safe(meta), sort_keys=True)), **arrays)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by :func:`save_checkpoint`: ``(arrays, meta)``; :class:`UsageError` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path.parent}: no checkpoint to resume from (no {path.name}: the run ended before "
                         f"its first epoch, or it is not a run folder)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k != "meta"}
            meta = json.loads(str(f["meta"]))
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise UsageError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{path}: not a readable checkpoint (metadata is not an object)")
    return arrays, meta
