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


class ThreadTuner:
    """Chooses, by measuring, how many BLAS threads the training's GEMMs run on, and keeps choosing.

    Whether two BLAS threads beat one depends on the GEMMs' size (small ones lose more to
    waking and synchronising threads than they gain), on ``OPENBLAS_NUM_THREADS`` and friends,
    and on what else the machine runs: with a busy neighbour, a thread that spins for a core
    it cannot get makes every GEMM wait for it. So the tuner measures: each candidate in
    ``choices`` is timed on real training calls (untried ones first), the cheapest per step is
    used, and every ``probe_every``-th call runs a few steps with the runner-up to notice a
    change of conditions. Costs are exponential moving averages of seconds per step.

    OpenBLAS splits a GEMM among threads by rows and columns of the output, never along the
    summed dimension, so the numbers computed do not depend on the thread count (a test checks
    that a run's history is the same with 1 and 2 threads): switching costs no reproducibility.
    """

    def __init__(self, choices: tuple[int, ...] | None = None, probe_every: int = 8, smoothing: float = 0.3):
        from threadpoolctl import ThreadpoolController
        cores = available_cores()
        self.choices = tuple(sorted(set(choices or (1, cores))))
        self.probe_every = probe_every
        self.smoothing = smoothing
        self.cost: dict[int, float | None] = {c: None for c in self.choices}
        self.calls = 0
        self._controller = ThreadpoolController()  # the BLAS libraries loaded by now
        self._original = self._controller.info()
        self.current: int | None = None

    def plan(self, n_steps: int) -> tuple[int, int]:
        """``(threads, steps)`` for the next call of up to ``n_steps`` steps: a probe runs fewer steps."""
        self.calls += 1
        untried = [c for c in self.choices if self.cost[c] is None]
        if untried:
            return untried[0], max(1, n_steps // 4)
        ranked = sorted(self.choices, key=lambda c: self.cost[c])
        if len(ranked) > 1 and self.calls % self.probe_every == 0:
            return ranked[1], max(1, n_steps // 8)
        return ranked[0], n_steps

    def use(self, threads: int) -> None:
        if threads != self.current:
            self._controller.limit(limits=threads, user_api="blas")
            self.current = threads

    def record(self, threads: int, seconds: float, n_steps: int) -> None:
        per_step = seconds / max(1, n_steps)
        old = self.cost[threads]
        self.cost[threads] = per_step if old is None else old + self.smoothing * (per_step - old)

    def best(self) -> int | None:
        known = [c for c in self.choices if self.cost[c] is not None]
        return min(known, key=lambda c: self.cost[c]) if known else None

    def restore(self) -> None:
        """Give the BLAS libraries back the thread counts they had before the tuner."""
        for lib in self._original:
            self._controller.select(filepath=lib["filepath"]).limit(limits=lib["num_threads"])
        self.current = None
