"""Atomic, durable file writes: a temporary file in the target folder, fsync, then one rename.

A reader (or a crash, or a power cut) never sees a half-written file, and an existing file is
replaced only once the new one is complete and on disk. Temporary files are named
``.NAME.XXXX.tmp.SUFFIX`` beside their target; :func:`remove_stale_temporaries` clears the
ones a killed process left behind.

Only regular files are written (:func:`write_target`): a path naming a folder, a device
(``/dev/null``), a named pipe or a socket is refused with one :class:`~fastmlp.errors.UsageError`
line before anything is written, since replacing it by a file would destroy it. A symbolic
link is followed: the file it points to is replaced (atomically, the temporary file in that
file's folder) and the link stays as it is; a link to anything but a regular file or a new
name is refused like its target, and a link that loops is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError
from .files import kind_of_file


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


def write_target(target: str | os.PathLike) -> Path:
    """The path a write to ``target`` replaces: ``target``, or the file a symbolic link leads to.

    Raises :class:`UsageError` (one line naming ``target``) when that is not a regular file or a
    new name: a folder (also a name ending in ``/``), a device, a named pipe, a socket, a link
    that loops. Only a check: the file is not opened.
    """
    shown = os.fspath(target)
    if isinstance(shown, bytes):
        shown = os.fsdecode(shown)
    if shown.endswith(("/", os.sep)):
        raise UsageError(f"{shown}: names a folder; give a file name to write")
    path = Path(shown)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
        if path.is_symlink():
            raise UsageError(f"{shown}: a symbolic link that loops; give a file name to write")
        if not path.parent.is_dir():  # a dangling link is followed into a folder that is there, never made
            raise UsageError(f"{shown}: a symbolic link to {path}, whose folder does not exist")
        shown = f"{shown} (a link to {path})"
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return path  # a new file: its folder is made, or its absence reported, as it is written
    except OSError:
        return path  # e.g. a folder that cannot be searched: writing will say so
    if stat.S_ISREG(mode):
        return path
    kind = kind_of_file(mode)
    if kind == "a folder":
        raise UsageError(f"{shown}: is a folder; give a file name to write")
    if kind == "not a regular file":
        raise UsageError(f"{shown}: is not a regular file; fastmlp writes only regular files")
    raise UsageError(f"{shown}: is {kind}, not a regular file; fastmlp writes only regular files, replacing them whole")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; fsync it and rename it onto ``target`` on success.

    ``target`` is checked first (:func:`write_target`: only a regular file or a new name; a
    symbolic link is followed), and again just before the rename. A replaced file's
    permissions are kept; a new file's follow the umask.
    """
    target = write_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()  # mkstemp makes 0600; a new file normally follows the umask
    os.chmod(tmp, mode)
    try:
        yield Path(tmp)
        _fsync_path(tmp)
        write_target(target)  # what stood there may have changed while the file was written
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
        # exactly mkstemp's names (8 characters of [a-z0-9_]): a person's own ".model.npz.notes.tmp.txt" stays
        ours = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp{re.escape(Path(name).suffix)}")
        for tmp in folder.glob(f".{name}.*.tmp*"):
            if not ours.fullmatch(tmp.name):
                continue
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
