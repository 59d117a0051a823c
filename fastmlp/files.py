"""Reading only regular files: what a path is, in words, and opening it without waiting on a pipe."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from .errors import DataError


def kind_of_file(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular_file(path: str | os.PathLike, error: type[Exception] = DataError) -> BinaryIO:
    """Open ``path`` for binary reading; ``error`` (one line) unless it is a regular file.

    The file is opened without blocking and examined before any read, so a named pipe or a
    device is refused at once instead of hanging. Other failures raise ``OSError``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: {kind_of_file(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
