"""The search's objective and its workers: train one configuration per trial, many trials per worker.

The objective is the loop Optuna's examples show, over :class:`fastmlp.training.train.Trainer`::

    trainer = Trainer.for_dataset(config, dataset, train_rows=subset, evaluate_test=False)
    for record in trainer.epochs():
        trial.report(record.val_acc, record.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(...)

It looks for the best **validation** accuracy; the test set is never evaluated here. A trial
whose loss becomes NaN or infinite is recorded as pruned, with the reason. Ctrl-C (or SIGTERM)
and the ``--timeout`` budget stop the running trial after its current epoch, mark it FAIL with
the reason and queue it again (:func:`fastmlp.search.study.requeue`); a worker that dies without a
word is found by Optuna's heartbeat and its trial queued again the same way. A retried trial
trains with the seed of the trial it repeats.

Workers: :func:`run_search` runs ``jobs`` worker processes on this machine (spawned, each with
``cores // jobs`` BLAS and Numba threads), or the search in this process when ``jobs`` is 1.
Each worker runs one trial at a time until its ``trials`` are done, the deadline passes, or the
study holds ``max_trials`` finished trials (:class:`StudyBudget`, exact over every machine).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError, UserError
from ..training.threads import available_cores, child_thread_env, limit_threads, thread_env
from .space import Space, labelled
from .study import (
    MAX_RETRIES,
    SETTINGS_ATTR,
    SearchSettings,
    check_fixed_settings,
    counts,
    display_url,
    fail_stale_trials,
    format_config,
    format_duration,
    frozen,
    heartbeat_settings,
    load_study,
    make_pruner,
    make_sampler,
    open_storage,
    origin_number,
    process_token,
    quiet_optuna,
    recover_lost_trials,
    requeue,
    storage_lock,
    study_names,
    summary,
    trial_seed,
    trial_val_acc,
    worker_name,
)

OBJECTIVE_NAME = "validation accuracy"


class TrialCut(Exception):
    """The time budget ran out during a trial (it is marked FAIL and queued again)."""


class InterruptGate:
    """Ctrl-C (SIGINT) and SIGTERM that never tear a storage write in half.

    While an epoch trains (inside :meth:`guarded`) a signal raises KeyboardInterrupt at once;
    anywhere else (Optuna asking for or recording a trial, a report between epochs) it is only
    noted, and the next epoch, or :meth:`check`, raises it. A second signal raises at once.
    """

    def __init__(self):
        self.requested = False
        self.armed = False

    def handler(self, signum, frame) -> None:
        already, self.requested = self.requested, True
        if self.armed or already:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def guarded(self, items: Iterable) -> Iterator:
        """``items``, with a signal raising at once while the next item is computed."""
        items = iter(items)
        while True:
            self.check()
            self.armed = True
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.armed = False
            yield item

    def install(self) -> dict | None:
        """Handle SIGINT and SIGTERM (main thread only); returns the previous handlers."""
        if threading.current_thread() is not threading.main_thread():
            return None
        return {sig: signal.signal(sig, self.handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def restore(previous: dict | None) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)


class Objective:
    """Train one configuration; report each epoch's validation accuracy; return the last one."""

    def __init__(self, settings: SearchSettings, space: Space, dataset, deadline: float | None = None,
                 gate: InterruptGate | None = None):
        import numpy as np
        self.settings, self.space, self.dataset, self.deadline = settings, space, dataset, deadline
        self.gate = gate or InterruptGate()
        self.train_rows = None if settings.subset is None else np.arange(settings.subset, dtype=np.int64)
        self.on_start: Callable[[], None] | None = None  # called first in every trial (releases the budget lock)
        self.cut = self.lost = False

    def config_for(self, trial):
        """The trial's :class:`~fastmlp.config.TrainConfig`: drawn from the space, seeded by its origin."""
        from ..config import TrainConfig
        return TrainConfig(**self.space.suggest(trial), seed=trial_seed(self.settings.seed, origin_number(frozen(trial))),
                           val_size=self.settings.val_size, dataset=self.settings.dataset)

    def __call__(self, trial) -> float:
        optuna = quiet_optuna()
        from ..training.train import Trainer, TrainingDiverged
        if self.on_start is not None:
            self.on_start()
        self.gate.check()
        t0 = time.perf_counter()
        config = self.config_for(trial)
        trial.set_user_attr("worker", worker_name())
        trial.set_user_attr("process", process_token())
        trial.set_user_attr("config", config.to_dict())
        # by the homework's names, for the dashboard (Optuna's parameter names are the space's keys)
        trial.set_user_attr("hyperparameters", labelled(config.to_dict(), self.space))
        record = None
        try:
            trainer = Trainer.for_dataset(config, self.dataset, train_rows=self.train_rows, evaluate_test=False)
            for record in self.gate.guarded(trainer.epochs()):
                trial.report(record.val_acc, record.epoch)
                if record.epoch == config.epochs:
                    break  # trained to the end: complete, whatever comes now
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {record.epoch}")
                if self.deadline is not None and time.time() >= self.deadline:
                    raise TrialCut(f"time budget ran out after epoch {record.epoch}")
        except optuna.TrialPruned as exc:
            self.finish(trial, record, t0, str(exc))
            raise
        except TrainingDiverged as exc:
            reason = f"diverged: loss became {exc.loss} at epoch {exc.epoch}, step {exc.step}"
            self.finish(trial, record, t0, reason)
            raise optuna.TrialPruned(reason) from None
        except TrialCut as exc:
            self.cut = True
            self.finish(trial, record, t0, f"{exc}; {self.queue_again(trial)}")
            raise
        except KeyboardInterrupt:
            self.gate.requested = True
            epoch = record.epoch + 1 if record is not None else 1
            self.finish(trial, record, t0, f"interrupted during epoch {epoch}; {self.queue_again(trial)}")
            raise
        except Exception as exc:
            if isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
                self.lost = True
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.finish(trial, record, t0, f"error: {type(exc).__name__}: {first}")
            raise
        self.finish(trial, record, t0)
        return float(record.val_acc)

    @staticmethod
    def queue_again(trial) -> str:
        """Queue the running trial again (before it is marked, so the copy carries no stop reason)."""
        return "queued again" if requeue(trial.study, frozen(trial)) else f"not queued again (tried {MAX_RETRIES} times)"

    @staticmethod
    def finish(trial, record, t0: float, reason: str | None = None) -> None:
        """What the trial did, as user attributes: epochs run, time, last losses and accuracies, why it stopped."""
        trial.set_user_attr("epochs_run", record.epoch if record is not None else 0)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        if record is not None:
            for key in ("train_loss", "train_acc", "val_loss", "val_acc", "samples_per_s"):
                trial.set_user_attr(key, getattr(record, key))
        if reason is not None:
            trial.set_user_attr("stop_reason", reason)


class ProgressPrinter:
    """One line per finished trial, with the study's totals, the best so far and the time left."""

    def __init__(self, deadline: float | None, prefix: str = "", log: Callable[[str], None] = print,
                 t0: float | None = None):
        self.deadline, self.prefix, self.log = deadline, prefix, log
        self.t0 = time.time() if t0 is None else t0

    def __call__(self, study, trial) -> None:
        from .study import best_trial
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state.is_finished() for t in trials)
        best = best_trial(trials)
        acc = trial_val_acc(trial)
        config = trial.user_attrs.get("config")
        parts = [f"{self.prefix}trial {trial.number:>4} {trial.state.name.lower():<8}",
                 f"val {100 * acc:6.2f}%" if acc is not None else "val    -   ",
                 f"{trial.user_attrs.get('epochs_run', 0):>3} ep",
                 f"{trial.user_attrs.get('seconds', 0.0):6.1f}s"]
        if config:
            parts.append(format_config(config))
        reason = trial.user_attrs.get("stop_reason")
        if reason and trial.state.name != "COMPLETE":
            parts.append(f"({reason})")
        totals = [f"{done} done", f"best {100 * best.value:.2f}% (#{best.number})" if best else "best -"]
        if self.deadline is not None:
            totals.append(f"{format_duration(self.deadline - time.time())} left")
        else:
            totals.append(f"{format_duration(time.time() - self.t0)} elapsed")
        self.log("  ".join(parts) + "  | " + ", ".join(totals))


# ----------------------------------------------------------------------------- one worker

def run_worker(settings: SearchSettings, *, worker: int = 0, n_trials: int | None = None,
               max_trials: int | None = None, deadline: float | None = None, dataset=None,
               threads: int | None = None, prefix: str = "", parent: int | None = None,
               log: Callable[[str], None] = print) -> None:
    """Run trials of the study, one at a time, until one of these stops it.

    ``n_trials`` trials done by this worker; the study holding ``max_trials`` finished (complete
    or pruned) trials, counted over every worker of every machine; the deadline; Ctrl-C; or,
    for a worker process (``parent`` given), its parent's death. KeyboardInterrupt propagates,
    after the running trial has been marked and queued again.
    """
    quiet_optuna()
    from ..data.datasets import load_dataset
    space = settings.space_obj()
    if dataset is None:
        dataset = load_dataset(settings.dataset, settings.data_dir, verify=settings.verify, download=True)
    study = load_study(open_storage(settings.storage), settings.study_name)
    study.sampler = make_sampler(settings.seed, worker, len(study.get_trials(deepcopy=False)))
    study.pruner = make_pruner(settings.pruner, space)
    gate = InterruptGate()
    objective = Objective(settings, space, dataset, deadline, gate)
    progress = ProgressPrinter(deadline, prefix, log)
    budget = StudyBudget(study, settings.storage, max_trials, log, prefix) if max_trials else None
    done = 0
    previous = gate.install()
    try:
        with limit_threads(threads):
            while n_trials is None or done < n_trials:
                if gate.requested or objective.cut or (parent is not None and os.getppid() != parent):
                    break
                if deadline is not None and time.time() >= deadline:
                    break
                with contextlib.ExitStack() as held:
                    if budget is not None:
                        verdict = budget.claim(held, gate, deadline)
                        if verdict == "full":
                            break
                        if verdict == "wait":
                            continue
                    objective.on_start = held.close  # the next trial holds its place: let the others ask
                    try:
                        study.optimize(objective, n_trials=1, catch=(TrialCut,), callbacks=[progress],
                                       gc_after_trial=False)
                    except ValueError:
                        if not objective.lost:
                            raise
                        objective.lost = False
                        log(f"{prefix}a trial was marked failed elsewhere while it ran (late heartbeats); "
                            f"it was queued again")
                done += 1
        gate.check()
    finally:
        InterruptGate.restore(previous)


class StudyBudget:
    """``--max-trials N``: at most N finished (complete or pruned) trials in the study, over all workers.

    Optuna's ``MaxTrialsCallback`` stops a worker once N trials of the given states exist, but
    every worker still running a trial then adds one more. Here a worker asks for a trial only
    while holding the study's lock (:func:`fastmlp.search.study.storage_lock`, released as the trial
    starts), and only when the trials finished and running leave a place: so the study ends with
    exactly N. A queued trial (a retry) is taken first, within that count: two workers may not both
    take one when one place is left. When no place is left but some trials still run, the worker
    waits for them: one of them may have lost its worker, and then its retry needs running
    (Optuna's heartbeat check finds it, and the place it frees).
    """

    def __init__(self, study, url: str, max_trials: int, log, prefix: str = ""):
        self.study, self.url, self.max_trials, self.log, self.prefix = study, url, max_trials, log, prefix
        self.said_waiting = False

    def claim(self, held: contextlib.ExitStack, gate: InterruptGate, deadline: float | None) -> str:
        """"run" (the lock is held in ``held`` until the trial starts), "wait" (after waiting) or "full"."""
        held.enter_context(storage_lock(self.url, self.study.study_name))
        c = counts(self.study.get_trials(deepcopy=False))
        finished = c["complete"] + c["pruned"]
        if finished >= self.max_trials:
            return "full"
        if finished + c["running"] < self.max_trials:  # a queued retry, or a new trial
            return "run"
        held.close()
        if not self.said_waiting:
            self.log(f"{self.prefix}waiting: {c['running']} trial(s) still running elsewhere would make "
                     f"{self.max_trials}; their retries run here if their workers are lost")
            self.said_waiting = True
        interval, _ = heartbeat_settings()
        until = time.time() + interval
        while time.time() < until and not gate.requested and (deadline is None or time.time() < deadline):
            time.sleep(0.2)
        fail_stale_trials(self.study, self.url)  # the heartbeat check Optuna does before each trial
        return "wait"


# ----------------------------------------------------------------------------- worker processes

def _worker_process(settings_dict: dict, worker: int, n_trials: int | None, max_trials: int | None,
                    deadline: float | None, threads: int, parent: int, results, dataset=None) -> None:
    """Entry point of a ``--jobs`` worker process; sends ("done" | "interrupted" | "error", text) to ``results``."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # a terminal's Ctrl-C reaches the parent only, which passes exactly one on
    outcome = ("done", "")
    try:
        _unblock_sigint()  # one that came while the interpreter started is raised here
        run_worker(SearchSettings(**settings_dict), worker=worker, n_trials=n_trials, max_trials=max_trials,
                   deadline=deadline,
                   threads=threads, prefix=f"w{worker} ", parent=parent, dataset=dataset,
                   log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        outcome = ("interrupted", "")
    except UserError as exc:
        outcome = ("error", f"worker {worker}: {exc}")
    finally:
        results.put((worker, *outcome))


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held pending (not lost) in this thread, and in the processes started meanwhile, which
    inherit the mask: a Ctrl-C while a worker's interpreter starts would print a traceback of its
    start-up (or a fatal error) instead of stopping it cleanly; the worker unblocks it once it can
    handle it (:func:`_unblock_sigint`), and this thread when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _unblock_sigint() -> None:
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _split_trials(n_trials: int | None, jobs: int) -> list[int | None]:
    if n_trials is None:
        return [None] * jobs
    return [n_trials // jobs + (1 if i < n_trials % jobs else 0) for i in range(jobs)]


def _stop_workers(procs, wait: float = 60.0) -> None:
    """Pass Ctrl-C on to each worker (each has its own process group) and wait for them to mark their
    trials; a second Ctrl-C, or ``wait`` seconds, and they are terminated."""
    for p in procs:
        if p.is_alive():
            try:
                os.kill(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    until = time.time() + wait
    try:
        for p in procs:
            p.join(timeout=max(0.0, until - time.time()))
    except KeyboardInterrupt:
        pass
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=10)


@dataclass
class WorkersOutcome:
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)      # user errors, one line each
    crashed: list[str] = field(default_factory=list)     # workers that ended without a word


def run_workers(settings: SearchSettings, jobs: int, threads: int, n_trials: int | None, max_trials: int | None,
                deadline: float | None, dataset=None, log: Callable[[str], None] = print) -> WorkersOutcome:
    """Spawn ``jobs`` worker processes on the study and wait for them.

    A worker that dies without a word (killed) has its trial marked and queued again at once
    (:func:`fastmlp.search.study.recover_lost_trials`), for the other workers or the next search.
    """
    import multiprocessing as mp
    from multiprocessing.connection import wait
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = []
    said: dict[int, tuple[str, str]] = {}
    try:
        with child_thread_env(threads), _sigint_blocked():  # inherited by the spawned interpreters
            for i, n in enumerate(_split_trials(n_trials, jobs)):
                if n == 0:
                    continue
                p = ctx.Process(target=_worker_process, name=f"fastmlp-search-{i}",
                                args=(asdict(settings), i, n, max_trials, deadline, threads, os.getpid(), results,
                                      dataset))
                p.start()
                procs.append(p)
        running = list(procs)
        while running:
            for sentinel in wait([p.sentinel for p in running]):
                p = next(p for p in running if p.sentinel == sentinel)
                p.join()
                running.remove(p)
                if p.exitcode != 0:
                    lost = recover_lost_trials(load_study(open_storage(settings.storage), settings.study_name),
                                               settings.storage)
                    if lost:
                        log(f"search: {p.name} ended by {_how(p)}; trial(s) {', '.join(map(str, lost))} "
                            f"marked failed and queued again")
    except KeyboardInterrupt:
        _stop_workers(procs)
        raise
    while len(said) < len(procs):
        try:
            worker, kind, text = results.get(timeout=1 if len(said) else 5)
        except Exception:  # queue.Empty: the rest died without a word
            break
        said[worker] = (kind, text)
    outcome = WorkersOutcome()
    for p in procs:
        kind, text = said.get(int(p.name.rsplit("-", 1)[1]), (None, ""))
        if kind == "interrupted":
            outcome.interrupted = True
        elif kind == "error":
            outcome.errors.append(text)
        elif kind is None or p.exitcode != 0:
            outcome.crashed.append(f"worker {p.name.rsplit('-', 1)[1]} ended by {_how(p)}")
    return outcome


def _how(p) -> str:
    return f"signal {-p.exitcode}" if p.exitcode and p.exitcode < 0 else f"exit status {p.exitcode}"


# ----------------------------------------------------------------------------- the search

@dataclass
class SearchResult:
    """How a search ended: the study's summary, and the workers that failed (none when all went well)."""

    summary: str
    crashed: list[str] = field(default_factory=list)


def check_data(settings: SearchSettings, space: Space, dataset) -> int:
    """The number of training images a trial trains on; ConfigError when the data cannot serve the space."""
    n_fit = len(dataset.train_images) - settings.val_size
    if n_fit < 1:
        raise ConfigError(f"--val-size {settings.val_size} leaves no training images")
    if settings.subset is not None and settings.subset > n_fit:
        raise ConfigError(f"--subset {settings.subset} is larger than the training set ({n_fit} images)")
    n_train = n_fit if settings.subset is None else settings.subset
    if space.largest_batch() > n_train:
        raise ConfigError(f"batch_size up to {space.largest_batch()} is larger than the {n_train} training images")
    return n_train


def create_study(storage, settings: SearchSettings):
    """The study, created (or loaded, when it is fastmlp's), with this run's settings stored in it;
    StorageError for a study of that name made by another program, which is left untouched."""
    optuna = quiet_optuna()
    # under the study's lock: a search started at the same moment with another --subset, --val-size or
    # dataset finds these settings stored, and is refused, instead of storing its own over them
    with storage_lock(settings.storage, settings.study_name):
        if settings.study_name in study_names(storage):
            study = load_study(storage, settings.study_name, half_made=True)
            check_fixed_settings(study.user_attrs.get(SETTINGS_ATTR) or {}, settings.stored(), settings.study_name,
                                 resolved=True)
        else:
            study = optuna.create_study(storage=storage, study_name=settings.study_name, direction="maximize")
        study.set_user_attr(SETTINGS_ATTR, settings.stored())
    study.set_metric_names([OBJECTIVE_NAME])  # the dashboard's name for the objective
    return study


def run_search(settings: SearchSettings, *, jobs: int = 1, threads: int | None = None, trials: int | None = None,
               max_trials: int | None = None, timeout: float | None = None, dataset=None,
               log: Callable[[str], None] = print) -> SearchResult:
    """Create or resume the study and run ``jobs`` workers on it until ``trials`` are done (by this call),
    the study holds ``max_trials`` finished trials (from every machine), or ``timeout`` seconds.

    ``dataset`` (a :class:`~fastmlp.data.datasets.Dataset`) is used as given, else loaded from the
    settings. KeyboardInterrupt propagates once the running trials are marked and queued again.
    """
    from ..data.datasets import load_dataset
    t0 = time.time()
    space = settings.space_obj()
    storage = open_storage(settings.storage)
    existing = settings.study_name in study_names(storage)
    if existing:
        load_study(storage, settings.study_name, half_made=True)  # another program's: refused before the data loads
    given = dataset  # an in-memory dataset goes to the worker processes too; else each loads its own
    if dataset is None:
        dataset = load_dataset(settings.dataset, settings.data_dir, verify=settings.verify, download=True)
    n_train = check_data(settings, space, dataset)
    study = create_study(storage, settings)
    lost = recover_lost_trials(study, settings.storage)
    n_before = len(study.get_trials(deepcopy=False))
    threads_each = threads or max(1, available_cores() // jobs)
    deadline = t0 + timeout if timeout is not None else None
    rows = f"first {n_train}" if settings.subset is not None else f"{n_train}"
    log(f"search: study {settings.study_name!r} in {display_url(settings.storage)}: "
        f"{'resuming with ' + str(n_before) + ' trials' if existing else 'new study'}; {jobs} worker"
        f"{'s' if jobs > 1 else ''} x {threads_each} thread{'s' if threads_each > 1 else ''}; "
        f"{'budget ' + format_duration(timeout) if deadline else 'no time limit'}"
        f"{'; ' + str(trials) + ' trials' if trials else ''}"
        f"{'; the study stops at ' + str(max_trials) + ' finished trials' if max_trials else ''}; "
        f"pruner {settings.pruner}; seed {settings.seed}")
    if lost:
        log(f"search: trial(s) {', '.join(map(str, lost))} had lost their worker on this machine (its process "
            f"ended); marked failed and queued again")
    log(f"objective: validation accuracy on {settings.val_size} held-out images; training on {rows} "
        f"{dataset.name} images")
    log(f"space: {space.describe()}")

    crashed: list[str] = []
    previous = _sigterm_as_interrupt()
    try:
        if jobs == 1:
            if threads:
                os.environ.update(thread_env(threads))
            run_worker(settings, n_trials=trials, max_trials=max_trials, deadline=deadline, dataset=dataset,
                       threads=threads, log=log)
        else:
            del dataset
            outcome = run_workers(settings, jobs, threads_each, trials, max_trials, deadline, dataset=given, log=log)
            if outcome.errors:
                raise WorkerError(outcome.errors[0])
            crashed = outcome.crashed
            if outcome.interrupted:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        log(f"\nsearch: interrupted; the running trials were marked and queued again\n"
            f"{_final_summary(settings, t0)}\nresume with the same command")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    text = _final_summary(settings, t0)
    log(text)
    return SearchResult(text, crashed)


class WorkerError(UserError):
    """A worker process stopped on a user error (its one line)."""


def _final_summary(settings: SearchSettings, t0: float) -> str:
    study = load_study(open_storage(settings.storage, heartbeat=False, read_only=True), settings.study_name)
    first, _, rest = summary(study).partition("\n")
    return f"{first}; this run took {format_duration(time.time() - t0)}" + (f"\n{rest}" if rest else "")


def _sigterm_as_interrupt():
    """In the main thread, make SIGTERM end the search like Ctrl-C; returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, on_term)

