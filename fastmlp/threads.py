"""How many threads a process computes with: the cores it may use, and the one BLAS/Numba thread limiter.

:func:`limit_threads` is the only place that pins BLAS threads (threadpoolctl) for a run:
``fastmlp train --threads``, the report's retraining and every search worker use it.
:func:`thread_env` gives the environment variables a child interpreter must start with so that
its BLAS and Numba pools have that size from the first import.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_env(threads: int) -> dict[str, str]:
    """The variables that size BLAS, OpenMP and Numba pools in an interpreter not started yet."""
    return {name: str(threads) for name in THREAD_VARIABLES}


class limit_threads:
    """BLAS threads capped at ``threads`` from now until :meth:`unregister` (or the end of a ``with``
    block); None leaves them as they are."""

    def __init__(self, threads: int | None):
        self._limiter = None
        if threads is not None:
            from threadpoolctl import threadpool_limits
            self._limiter = threadpool_limits(limits=threads)

    def unregister(self) -> None:
        if self._limiter is not None:
            self._limiter.unregister()
            self._limiter = None

    def __enter__(self) -> "limit_threads":
        return self

    def __exit__(self, *exc) -> None:
        self.unregister()


@contextlib.contextmanager
def child_thread_env(threads: int) -> Iterator[None]:
    """:func:`thread_env` set in ``os.environ`` inside the block (for spawning), restored after."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update(thread_env(threads))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

