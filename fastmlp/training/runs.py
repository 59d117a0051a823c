"""A run's folder: claimed before training, locked while a run writes, never mixing two runs or
touching a person's files, and a checkpoint to resume from.

A run folder holds :data:`RUN_FILES`: ``history.json``, ``metrics.csv``, ``model.npz`` (the best
epoch's model), ``last.npz`` (the last epoch's, while it differs), ``curves.png`` and
``checkpoint.npz``, and :data:`MARKER` (``.fastmlp-run``), written first: it says the folder is a
fastmlp run's, who writes in it, and it is the file locked (``flock``) for as long as a run does.
Every other file is written atomically (temporary file, fsync, rename), so a kill at any moment
leaves each file either old and whole or new and whole; the checkpoint is the one a resumed run
trusts.

:class:`RunFolder` claims a folder before any training, each problem one :class:`UsageError` line:

* the folder must be creatable and writable (a file, ``/dev/null``, a read-only or ``/proc``
  folder or an over-long name is refused at once, not after an epoch);
* a new run refuses a folder holding files of those names that no fastmlp run wrote (no marker and
  no fastmlp checkpoint): a person's own ``history.json`` or ``model.npz`` is never replaced;
* a second run into a folder that another process is writing (a new run or a resumed one) is
  refused, naming the process that holds it;
* :meth:`RunFolder.begin` removes the previous run's files (and the temporary files a killed run
  left) only once the caller has checked the new run's settings and data: a run refused or
  interrupted before that leaves the folder as it was.

:func:`save_checkpoint` / :func:`read_checkpoint`: named float arrays plus JSON metadata in one
``.npz`` (no pickles), every field of the metadata checked when read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import socket
import stat
import sys
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, ensure_writable_folder, remove_stale_temporaries
from ..config import STOPPING, TrainConfig
from ..errors import UsageError

RUN_FILES = ("history.json", "metrics.csv", "model.npz", "last.npz", "curves.png", "checkpoint.npz")
CHECKPOINT = "checkpoint.npz"
MARKER = ".fastmlp-run"
_MARKER_TEXT = "a fastmlp run folder: the next run into it replaces the files its runs wrote here\n"
_WRITER = "writer: "


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


class RunFolder:
    """The folder of one run, claimed for it: a context manager (see the module).

    Entering checks the folder and takes its lock; :meth:`begin` starts writing (a new run removes
    the previous run's files); leaving releases the lock. A run that leaves before :meth:`begin`
    (refused, or interrupted) undoes what claiming did: the marker it created and the folders it
    made, so the folder is as it was.
    """

    def __init__(self, folder: str | os.PathLike, *, resume: bool = False):
        self.path, self.resume = Path(folder), resume
        #: True once the run started writing its files (:meth:`begin`)
        self.begun = False
        #: the last epoch whose files the folder holds for this run (0: none; the caller keeps it)
        self.saved = 0
        self._fd: int | None = None
        self._made_marker = False
        self._marker_text = b""  # what the marker held before this run claimed the folder
        self._made_folders: list[Path] = []

    def __enter__(self) -> RunFolder:
        self.claim()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()

    def claim(self) -> None:
        """Check the folder (creating it if needed) and lock it; one :class:`UsageError` line otherwise."""
        self._made_folders = _missing_folders(self.path)
        try:
            check_writable(self.path)
            if not self.resume:
                self._refuse_foreign_files()
            self._lock()
        except BaseException:
            self.release()
            raise

    def _refuse_foreign_files(self) -> None:
        if os.path.lexists(self.path / MARKER):
            return
        present = [name for name in RUN_FILES if os.path.lexists(self.path / name)]
        if present and not _is_checkpoint(self.path / CHECKPOINT):  # a checkpoint: a run of an earlier fastmlp
            raise UsageError(f"{self.path}: not a fastmlp run folder, and it holds {', '.join(present)}, which a "
                             f"run would replace; choose another output folder, or move them away")

    def _lock(self) -> None:
        marker = self.path / MARKER
        # Never through a link: the marker is truncated and written, which must not reach another file.
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):  # each retry follows a run that gave the folder up and removed its marker
            try:
                try:
                    fd, made = os.open(marker, flags | os.O_CREAT | os.O_EXCL, 0o666), True
                except FileExistsError:
                    fd, made = os.open(marker, flags), False
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise UsageError(f"{marker}: cannot lock the run folder ({describe_os_error(exc)})") from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise UsageError(f"{marker}: cannot lock the run folder (not a regular file)")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _writer(fd)
                os.close(fd)
                raise UsageError(f"{self.path}: another fastmlp run is writing this folder ({holder}); wait "
                                 f"for it to end, or choose another folder") from None
            except OSError:
                pass  # a file system without locks (ENOLCK): the folder is marked, not locked
            if _same_file(fd, marker):
                break
            os.close(fd)
        else:
            raise UsageError(f"{marker}: cannot lock the run folder (it keeps being replaced)")
        self._fd, self._made_marker = fd, made
        writer = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        self._marker_text = self._write_marker(f"{_MARKER_TEXT}{_WRITER}{writer}\n".encode())

    def _write_marker(self, text: bytes) -> bytes:
        """Put ``text`` in the locked marker; return what it held."""
        old = b""
        with contextlib.suppress(OSError):  # the marker's text is information; its lock is what counts
            old = os.pread(self._fd, 1 << 16, 0)
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)
        return old

    def begin(self) -> list[str]:
        """Start writing the run's files: remove the temporary files a killed run left and, for a new
        run, the previous run's files; return the names of those removed."""
        remove_stale_temporaries(self.path, list(RUN_FILES))
        self.begun = True
        if self.resume:
            return []
        removed = []
        for name in RUN_FILES:
            path = self.path / name
            if os.path.lexists(path):
                try:
                    path.unlink()
                except OSError as exc:
                    raise UsageError(f"{path}: cannot replace the previous run's file ({describe_os_error(exc)})") from None
                removed.append(name)
        return removed

    def release(self) -> None:
        """Give the folder up; before :meth:`begin`, first undo what claiming created."""
        undo = not self.begun
        if undo and self._made_marker:  # removed while still locked, so no other run locks a stale marker
            with contextlib.suppress(OSError):
                (self.path / MARKER).unlink()
        elif undo and self._fd is not None:
            self._write_marker(self._marker_text)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if undo:
            for folder in self._made_folders:  # deepest first; stops at one that holds something
                try:
                    folder.rmdir()
                except OSError:
                    break
        self._made_folders = []


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def busy_writer(folder: str | os.PathLike) -> str | None:
    """Who is writing the run in ``folder`` now, as its marker says; None when no run holds it."""
    try:
        fd = os.open(Path(folder) / MARKER, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _writer(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _writer(fd: int) -> str:
    """Who holds the lock, as its marker says."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith(_WRITER):
            return line[len(_WRITER):]
    return "a process that has not said which"


def _is_checkpoint(path: Path) -> bool:
    try:
        _, meta = load_checkpoint(path)
    except UsageError:
        return False
    return isinstance(meta.get("config"), dict)


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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{path}: not a readable checkpoint (metadata is not an object)")
    return arrays, meta


@contextlib.contextmanager
def lost_interrupts_kept():
    """Inside the block, a Ctrl-C that Python could not raise where it landed is kept, and raised by
    :func:`raise_lost_interrupt`: in a C callback (the JIT's cache loader calls back into Python as
    it loads each compiled kernel) Python prints "Exception ignored" and goes on, and the run with it.
    (``sys.unraisablehook`` sees such exceptions; every other one goes to the hook as before.)"""
    lost: list[BaseException] = []
    previous = sys.unraisablehook

    def keep(unraisable):
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            lost.append(unraisable.exc_value)
        else:
            previous(unraisable)

    sys.unraisablehook = keep
    _LOST.append(lost)
    try:
        yield
    finally:
        _LOST.remove(lost)
        sys.unraisablehook = previous


_LOST: list[list[BaseException]] = []  # the lists of lost_interrupts_kept blocks in force


def raise_lost_interrupt() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C was lost in a C callback (:func:`lost_interrupts_kept`)."""
    for lost in _LOST:
        if lost:
            lost.clear()
            raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C (SIGINT) held back until the block ends, then raised as KeyboardInterrupt: an epoch's files
    are written as one, so the folder never holds a checkpoint and a history of different epochs. Only in
    the main thread with Python's own handler (elsewhere signals cannot be caught, and nothing is held)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@dataclass
class Checkpoint:
    """A run's checkpoint, every field checked: its arrays, its metadata as saved, and the fields read from it."""

    arrays: dict[str, np.ndarray]
    meta: dict
    config: TrainConfig
    epoch: int                    # the epochs trained (>= 1)
    records: list[dict]           # the history's records of epochs 1..epoch
    checksums: dict | None        # the data files' checksums it was trained on


def read_checkpoint(folder: str | os.PathLike) -> Checkpoint:
    """The checkpoint of the run in ``folder``; one :class:`UsageError` line naming the file and the field
    when it is missing, unreadable or damaged (a field of the wrong type or out of range)."""
    path = Path(folder) / CHECKPOINT
    arrays, meta = load_checkpoint(path)

    def damaged(what: str) -> UsageError:
        return UsageError(f"{path}: the checkpoint is damaged: {what}")

    if not isinstance(meta.get("config"), dict):
        raise damaged("its configuration is not an object")
    try:
        config = TrainConfig.from_dict(meta["config"]).validate()
    except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
        raise damaged(f"its configuration: {exc}") from None
    for name, low in (("epoch", 1), ("adam_t", 0)):
        value = meta.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise damaged(f"its {name} is {value!r}, not a whole number >= {low}")
    sizes = meta.get("sizes")
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)):
        raise damaged(f"its layer sizes are {sizes!r}")
    try:  # the sampler's generator (PCG64) takes it, or the run cannot go on
        np.random.PCG64().state = meta.get("rng")
    except (TypeError, ValueError, KeyError, OverflowError):
        raise damaged("its random generator state is not one of PCG64") from None
    history = meta.get("history")
    if not isinstance(history, dict) or not isinstance(history.get("epochs"), list):
        raise damaged("its history is not an object with a list of epochs")
    records = history["epochs"][:meta["epoch"]]
    if len(records) < meta["epoch"]:
        raise damaged(f"its history records {len(records)} epochs, not {meta['epoch']}")
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or record.get("epoch") != number or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for k, v in record.items() if k != "train_on"):
            raise damaged(f"its history's record of epoch {number} is not a record of numbers")
    dataset = history.get("dataset", {})
    if not isinstance(dataset, dict) or not isinstance(dataset.get("checksums"), (dict, type(None))):
        raise damaged("its history's dataset is not an object of checksums")
    return Checkpoint(arrays, meta, config, meta["epoch"], records, dataset.get("checksums"))


def check_resume(checkpoint: Checkpoint, config: TrainConfig, checksums: dict | None, out: Path) -> None:
    """:class:`UsageError` unless the run in ``out`` may go on as ``config`` on data of ``checksums``: its
    own settings but for :data:`~fastmlp.config.STOPPING`, its own data, epochs left, and a schedule
    that the new epoch count leaves as it was."""
    want = {k: v for k, v in config.to_dict().items() if k not in STOPPING}
    have = {k: v for k, v in checkpoint.config.to_dict().items() if k not in STOPPING}
    if want != have:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        raise UsageError(f"{out}: the run was trained with other settings ({', '.join(diff)}); resume it "
                         f"with its own, or start a new run in another folder")
    if not _same_data(checkpoint.checksums, checksums):
        raise UsageError(f"{out}: the run was trained on other data files (checksums differ)")
    if checkpoint.epoch > config.epochs:
        raise UsageError(f"{out}: the run already has {checkpoint.epoch} epochs; --epochs {config.epochs} "
                         f"is fewer")
    if config.schedule != "decay" and config.epochs != checkpoint.config.epochs:  # steps over the whole run
        raise UsageError(f"{out}: the run's {config.schedule} schedule spans its {checkpoint.config.epochs} epochs; "
                         f"--epochs {config.epochs} would change the rates of the epochs it ran: resume with "
                         f"--epochs {checkpoint.config.epochs}, or start a new run")


def _same_data(trained: dict | None, given: dict | None) -> bool:
    """Whether the data files' checksums are those the run was trained on ("unverified": a checkpoint of
    an earlier version, which did not name unverified content, matches any)."""
    if trained is None or given is None or trained.keys() != given.keys():
        return trained == given
    return all(trained[k] in (given[k], "unverified") for k in trained)
