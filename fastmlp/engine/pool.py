"""The threads a kernel call runs on: the caller and a pool of Python threads, each in the same ``nogil`` kernel.

``run(kernel, threads, sync, *args)`` calls ``kernel(t, threads, *args)`` once for every t in
``0 .. threads - 1``: t = 0 on the calling thread, the others on pooled threads, all at once, and
returns thread 0's result. The kernels are compiled with ``nogil=True``, so the threads run in
parallel; inside, they claim parts and meet at barriers (:mod:`fastmlp.engine.sync`).

Why Python threads rather than Numba's ``prange``: one parallel region per call, whatever the
number of phases in it (Numba compiles every ``prange`` loop as a function of its own, which
costs seconds of compilation each and loads slowly from its cache), and a thread count that is an
argument like any other (no global setting, no recompilation).

A call that finds the pool busy (another thread of the process is in a kernel call) runs on its
own thread alone: the results are the same bits, only slower. A child made by ``fork`` starts
with a new, empty pool: the parent's pooled threads do not exist in it.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from .sync import ABORT


class _Worker:
    """One pooled thread: waits for a job, runs it, reports."""

    def __init__(self, number: int):
        self.number = number
        self.start = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.job = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name=f"fastmlp-worker-{number}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            self.start.acquire()
            kernel, threads, sync, args = self.job
            try:
                kernel(self.number, threads, *args)
            except BaseException as exc:  # reported by the caller; the others stop at their next barrier
                self.error = exc
                sync[ABORT] = 1
            self.job = None
            self.done.release()


class Pool:
    """Threads 1, 2, ... of every kernel call, made on first use and kept for the process."""

    def __init__(self):
        self._workers: list[_Worker] = []
        self._busy = threading.Lock()

    def run(self, kernel, threads: int, sync: np.ndarray, *args):
        """``kernel(t, threads, *args)`` on ``threads`` threads; thread 0's result. ``sync`` is the
        call's barrier array (:mod:`fastmlp.engine.sync`), reset here."""
        threads = max(1, int(threads))
        if threads > 1 and not self._busy.acquire(blocking=False):
            threads = 1  # another call is under way in this process: run this one alone
        if threads == 1:
            sync[:] = 0
            return kernel(0, 1, *args)
        try:
            sync[:] = 0
            while len(self._workers) < threads - 1:
                self._workers.append(_Worker(len(self._workers) + 1))
            helpers = self._workers[:threads - 1]
            for w in helpers:
                w.error = None
                w.job = (kernel, threads, sync, args)
                w.start.release()
            try:
                result = kernel(0, threads, *args)
            except BaseException:
                sync[ABORT] = 1
                raise
            finally:
                for w in helpers:
                    w.done.acquire()
            for w in helpers:
                if w.error is not None:
                    raise w.error
            return result
        finally:
            self._busy.release()


_POOL = Pool()


def _new_pool_after_fork() -> None:
    global _POOL
    _POOL = Pool()  # the parent's workers (and the lock, perhaps held by one of its threads) stay behind


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_pool_after_fork)


def run(kernel, threads: int, sync: np.ndarray, *args):
    """:meth:`Pool.run` on the process's pool."""
    return _POOL.run(kernel, threads, sync, *args)
