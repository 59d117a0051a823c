"""How many threads a process computes with: the cores it may use, the one thread limiter, and the policy.

:func:`limit_threads` is the only place that pins threads for a run (BLAS through threadpoolctl,
the kernels' own threads): ``fastmlp train --threads``, the report's retraining and every search
worker use it, and while it holds, :func:`fixed_threads` tells the trainer to use exactly that
many. :func:`thread_env` gives the environment variables a child interpreter must start with so
that its BLAS has one thread from the first import.

The policy, when no count is fixed: a training step runs as parts fixed by the shape, claimed by
any number of threads, each with single-threaded BLAS (:mod:`fastmlp.engine.step`), and its
results do not depend on the thread count. So :class:`ThreadChooser` may pick the count by
measuring, while the run goes, without changing a single number of the history: on an idle
machine all cores win; when another process keeps a core busy, threads that wait for each other
lose, and one thread takes over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..errors import ConfigError


def available_cores() -> int:
    """The cores this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: An interpreter started with this variable set computes on that many threads at most.
THREADS_VARIABLE = "FASTMLP_THREADS"


def usable_cores() -> int:
    """The threads a kernel call may use: :func:`available_cores`, or ``$FASTMLP_THREADS`` when it
    is set lower (a child process started by :func:`thread_env`)."""
    cores = available_cores()
    try:
        return max(1, min(cores, int(os.environ.get(THREADS_VARIABLE, cores))))
    except ValueError:
        return cores
BLAS_THREAD_TIMEOUT = "4"  # OpenBLAS's minimum: its idle pool threads sleep at once (2^4 cycles)


def thread_env(threads: int) -> dict[str, str]:
    """The variables an interpreter not started yet needs to compute on ``threads`` threads:
    :data:`THREADS_VARIABLE`, and single-threaded BLAS and OpenMP (see :func:`single_threaded_blas`)."""
    return {THREADS_VARIABLE: str(threads), "OMP_NUM_THREADS": "1", "OPENBLAS_THREAD_TIMEOUT": BLAS_THREAD_TIMEOUT,
            **{name: "1" for name in BLAS_VARIABLES}}


def single_threaded_blas() -> None:
    """Make the BLAS libraries of this process start with one thread (before NumPy is imported).

    fastmlp's kernels split each step on their own threads and call BLAS from each with one
    thread; a BLAS thread pool only competes with them (processes whose pool started with
    several threads ran two-thread training at half speed in some runs: docs/tuning.md). So the
    command sets these variables for itself, whatever the environment says (``--threads`` sets
    the count).

    It also sets ``OPENBLAS_THREAD_TIMEOUT`` to its minimum: OpenBLAS's pool thread, started once by
    :func:`fastmlp.engine.blas.start_blas_threads`, would otherwise spin for about 0.1 s after
    that call, competing with the first training calls.
    """
    os.environ.update({name: "1" for name in BLAS_VARIABLES}, OPENBLAS_THREAD_TIMEOUT=BLAS_THREAD_TIMEOUT)


_FIXED: list[int] = []  # the counts of the limit_threads in force, innermost last
#: The most threads a run may be given: each holds a workspace, and beyond the cores they only wait
MAX_THREADS = 1024


def fixed_threads() -> int | None:
    """The thread count a :class:`limit_threads` in force fixes, or None (the trainer chooses)."""
    return _FIXED[-1] if _FIXED else None


class limit_threads:
    """The trainer's thread count fixed at ``threads``, and BLAS at one thread (the kernels'
    parallelism is their own), from now until :meth:`unregister` (or the end of a ``with``
    block); None leaves everything as it is."""

    def __init__(self, threads: int | None):
        self._held = None
        if threads is not None and not 1 <= threads <= MAX_THREADS:
            raise ConfigError(f"threads must be in 1..{MAX_THREADS}; got {threads}")
        if threads is not None:
            from threadpoolctl import threadpool_limits
            self._held = contextlib.ExitStack()
            self._held.enter_context(threadpool_limits(limits=1, user_api="blas"))
            _FIXED.append(threads)

    def unregister(self) -> None:
        if self._held is not None:
            _FIXED.pop()
            self._held.close()
            self._held = None

    def __enter__(self) -> limit_threads:
        return self

    def __exit__(self, *exc) -> None:
        self.unregister()


@contextlib.contextmanager
def child_thread_env(threads: int) -> Iterator[None]:
    """:func:`thread_env` set in ``os.environ`` inside the block (for spawning), restored after."""
    saved = {k: os.environ.get(k) for k in thread_env(1)}
    os.environ.update(thread_env(threads))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class ThreadChooser:
    """The thread count of the next training call: ``fixed`` when given, else the faster of ``most``
    and 1 as the calls themselves measure it.

    At the start the counts take turns, each until it has ``START_CALLS`` counted calls (its
    first call not counted: it starts threads and warms caches), and the count with the fastest
    single call becomes the incumbent: a disturbance only ever slows a call, so one unlucky
    call does not hand a whole short run to the slower count (measured: in 2 of 6 processes the
    first counted two-thread call ran at half speed). From then on the incumbent runs, and the
    other count is given one call (a probe) when it is due: ``probe_seconds`` of training after
    its last call, and at once when the incumbent's last ``SLOW_CALLS`` calls all ran below
    ``SLOWDOWN`` times its recent median (a neighbour may have arrived; one slow call alone is
    too common on a shared machine to pay a probe for). A probe takes over when it beats the
    incumbent's recent rate (the median of its last three calls, so one disturbed call does not
    decide). Time is counted in training seconds (the calls' own), so a trainer that pauses
    (evaluation, other work in the process) does not probe more often. Trials (the start's calls
    and probes, :attr:`trying`) are short calls (:meth:`call_steps`).

    The two directions are not alike. One thread beats all cores only when another process holds
    a core, and then by far (measured: 1.4-2.5x); a slow episode of a shared machine can make
    two threads look a little slower than one for a while. So the fewer threads must be
    ``FEWER_MARGIN`` times faster to take over, at the start or from a probe. A probe that loses
    by more than ``LOSS_MARGIN`` waits twice as long for the next: up to ``MAX_PROBE_SECONDS`` for
    fewer threads, but only up to ``MORE_PROBE_LIMIT`` times ``probe_seconds`` for more, so that
    a start misjudged in an episode, or a neighbour's leaving, is noticed within seconds
    (measured beside a busy neighbour, two-thread probes every 0.5 s cost the default 10% at
    784-1024-1024-10 / 128).
    """

    START_CALLS = 2
    TRIAL_FRACTION = 0.25
    FEWER_MARGIN = 1.15
    LOSS_MARGIN = 0.8
    MORE_PROBE_LIMIT = 4
    SLOWDOWN = 0.7
    SLOW_CALLS = 2
    MAX_PROBE_SECONDS = 32.0

    def __init__(self, most: int, fixed: int | None = None, probe_seconds: float = 0.5):
        self.counts = [fixed] if fixed is not None else ([most, 1] if most > 1 else [1])
        self.rates: dict[int, list[float]] = {c: [] for c in self.counts}
        self.probe_seconds = probe_seconds
        self.interval = {c: probe_seconds for c in self.counts}
        self.trained = 0.0  # seconds of training calls so far
        self.ran_at = {c: -float("inf") for c in self.counts}
        self.warm: set[int] = set()
        self.slow_calls = 0  # the incumbent's consecutive slow calls
        self.incumbent: int | None = None if len(self.counts) > 1 else self.counts[0]
        self.current = self.counts[0]

    @property
    def trying(self) -> bool:
        """Whether the next call is a trial (the start's turns or a probe) rather than the incumbent's."""
        return self.incumbent is None or self.current != self.incumbent

    def call_steps(self, usual: int) -> int:
        """Steps for the next call of a trainer whose calls usually run ``usual`` steps: a trial is
        short (``TRIAL_FRACTION`` of them, at least one), so trying the slower count costs little."""
        return max(1, int(usual * self.TRIAL_FRACTION)) if self.trying else usual

    def rate(self, threads: int) -> float | None:
        """The median samples/s of the last three calls on ``threads`` threads (None before any)."""
        recent = sorted(self.rates[threads][-3:])
        return recent[len(recent) // 2] if recent else None

    def _margin(self, challenger: int, incumbent: int) -> float:
        """How many times faster ``challenger`` threads must run to replace ``incumbent`` threads."""
        return self.FEWER_MARGIN if challenger < incumbent else 1.0

    def record(self, threads: int, samples: int, seconds: float) -> None:
        """The last call trained ``samples`` examples in ``seconds`` on ``threads`` threads."""
        if samples <= 0 or seconds <= 0 or threads not in self.rates:
            return
        self.trained += seconds
        self.ran_at[threads] = self.trained
        slowed = False
        if threads not in self.warm:
            self.warm.add(threads)
        else:
            rate = samples / seconds
            before = self.rate(threads)
            self.rates[threads].append(rate)
            del self.rates[threads][:-3]
            if self.incumbent is not None and threads != self.incumbent:  # a probe
                self.slow_calls = 0
                incumbent_rate = self.rate(self.incumbent)
                if rate > self._margin(threads, self.incumbent) * incumbent_rate:
                    self.incumbent = threads
                    self.interval = {c: self.probe_seconds for c in self.counts}
                elif rate < self.LOSS_MARGIN * incumbent_rate:
                    limit = (self.MAX_PROBE_SECONDS if threads < self.incumbent
                             else self.MORE_PROBE_LIMIT * self.probe_seconds)
                    self.interval[threads] = min(2 * self.interval[threads], limit)
            elif before is not None and rate < self.SLOWDOWN * before:
                self.slow_calls += 1
                slowed = self.slow_calls >= self.SLOW_CALLS
            else:
                self.slow_calls = 0
        if self.incumbent is None:
            starting = [c for c in self.counts if len(self.rates[c]) < self.START_CALLS]
            if starting:  # take turns: the count with the fewest calls so far (warm-up included)
                self.current = min(starting, key=lambda c: len(self.rates[c]) + (c in self.warm))
                return
            most, fewest = max(self.counts), min(self.counts)
            best = {c: max(self.rates[c]) for c in self.counts}
            self.incumbent = fewest if best[fewest] > self._margin(fewest, most) * best[most] else most
        due = [c for c in self.counts if c != self.incumbent
               and (slowed or self.trained - self.ran_at[c] >= self.interval[c])]
        self.current = due[0] if due else self.incumbent
