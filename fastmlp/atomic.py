"""Atomic, durable file writes: a temporary file in the target folder, fsync, then one rename.

A reader (or a crash, or a power cut) never sees a half-written file, and an existing file is
replaced only once the new one is complete and on disk. Temporary files are named
``.NAME.XXXX.tmp.SUFFIX`` beside their target; :func:`remove_stale_temporaries` clears the
ones a killed process left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # e.g. a folder that cannot be opened for reading: nothing more can be done
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (and /dev/null) do not support fsync
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; fsync it and rename it onto ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a new file normally follows the umask
    try:
        yield Path(tmp)
        _fsync_path(tmp)
        os.replace(tmp, target)
        _fsync_path(target.parent, directory=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) if needed and write and delete a probe file in it.

    Raises ``FileExistsError`` when a file stands where the folder should be, and ``OSError``
    when the folder cannot be created or written (read-only, ``/proc``, a name too long...).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise FileExistsError(17, "File exists")
    with tempfile.TemporaryFile(dir=folder):
        pass
    return folder


def remove_stale_temporaries(folder: str | os.PathLike, names: list[str]) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` for targets ``names`` in ``folder``; return them."""
    folder = Path(folder)
    removed = []
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
