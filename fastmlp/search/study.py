"""The study a search fills: its settings, its best trial, its retries, its sampler and pruner.

Storage
    Trials live in an Optuna RDB storage: an SQLite file by default, any SQLAlchemy URL
    otherwise (PostgreSQL to share one study between machines). :mod:`fastmlp.search.storage`
    reads the ``--storage`` value (a value without ``://`` is a file path, taken literally), hides
    its secrets wherever it is shown, and opens it for writing or read-only.

Settings
    :class:`SearchSettings` is everything a worker needs. The study keeps the part that defines
    the search (space, pruner, seed, subset, validation size, dataset) in its ``fastmlp_settings``
    attribute, so running the same command again resumes it the same way; flags given again must
    agree with it. A study without that attribute was made by another program: fastmlp neither
    reads it (``--status``, ``report``) nor adds trials to it.

Retries and lost workers
    A trial that did not end on its own (Ctrl-C, the time budget, a worker that stopped sending
    heartbeats) is marked FAIL and queued again by Optuna's
    ``RetryHeartbeatStaleTrialCallback`` (at most :data:`MAX_RETRIES` times): the new WAITING
    trial has the same hyperparameters, and :func:`origin_number` gives the number of the trial
    it retries, from which the training seed is derived, so the retry repeats the same run.
    Heartbeats (every HEARTBEAT_INTERVAL s; stale after GRACE_PERIOD s) find workers lost on
    any machine; :func:`recover_lost_trials` finds, at once, those of this machine whose
    process has ended (a search killed and started again).

Optuna is imported inside the functions that need it, so the command line can read this
module's constants without loading it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RULES, TrainConfig
from ..errors import ConfigError, StorageError
from .space import RECIPE, Space, fmt_value
from .storage import CONNECT_TIMEOUT as CONNECT_TIMEOUT
from .storage import display_url as display_url
from .storage import open_rdb, quiet_optuna, storage_lock, storage_url
from .storage import redact as redact
from .storage import storage_errors as storage_errors

DEFAULT_STORAGE = "sqlite:///runs/search.db"
PRUNERS = ("hyperband", "halving", "median", "none")
DEFAULT_PRUNER = "hyperband"
SETTINGS_ATTR = "fastmlp_settings"
MAX_RETRIES = 3             # how often one configuration is queued again after an interruption
REDUCTION_FACTOR = 3        # Hyperband / successive halving keep 1 trial in 3 at each rung


# ----------------------------------------------------------------------------- opening

HEARTBEAT_INTERVAL = 10     # seconds between a running trial's heartbeats
GRACE_PERIOD = 30           # a RUNNING trial without a heartbeat for this long is stale


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds: HEARTBEAT_INTERVAL and GRACE_PERIOD, or for tests
    ``FASTMLP_HEARTBEAT_INTERVAL=N`` seconds with a grace period of 3 N."""
    text = os.environ.get("FASTMLP_HEARTBEAT_INTERVAL")
    if not text:
        return HEARTBEAT_INTERVAL, GRACE_PERIOD
    interval = int(text) if text.isdigit() else 0
    if interval < 1:
        raise ConfigError(f"FASTMLP_HEARTBEAT_INTERVAL must be a whole number of seconds >= 1; got {text!r}")
    return interval, 3 * interval


def open_storage(url: str, *, heartbeat: bool = True, read_only: bool = False):
    """An Optuna RDBStorage for the ``--storage`` value ``url`` (:func:`fastmlp.search.storage.open_rdb`).

    With ``heartbeat``, lost workers' trials are failed and retried. ``read_only`` (the questions:
    ``--status``, ``report``, ``dashboard``): nothing is written or created, and the storage must
    already hold Optuna's tables. Every failure is one :class:`StorageError` line, secrets hidden.
    """
    kwargs: dict[str, Any] = {}
    if heartbeat and not read_only:
        interval, grace = heartbeat_settings()
        kwargs.update(heartbeat_interval=interval, grace_period=grace, heartbeat_stale_trial_callback=retry_trial)
    return open_rdb(url, read_only=read_only, **kwargs)


def study_names(storage) -> list[str]:
    optuna = quiet_optuna()
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_study(storage, name: str, *, half_made: bool = False):
    """An existing study of fastmlp's; StorageError listing the studies there are when there is none
    of that name, or naming it when another program made it (see :func:`check_ours`). ``half_made``:
    a study :func:`is_half_made` is taken too (by a search, which finishes making it)."""
    optuna = quiet_optuna()
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        there = f"studies there: {', '.join(names)}" if names else "the storage holds no study"
        raise StorageError(f"no study named {name!r} ({there})") from None
    if not (half_made and is_half_made(study)):
        check_ours(study)
    return study


def is_half_made(study) -> bool:
    """Whether ``study`` is one that ``fastmlp search`` began to create and was killed before it
    stored its settings: maximizing one objective, without any attribute or trial (so nothing of
    anyone's is in it)."""
    optuna = quiet_optuna()
    return (not study.user_attrs and study.directions == [optuna.study.StudyDirection.MAXIMIZE]
            and not study.get_trials(deepcopy=False))


def check_ours(study) -> None:
    """StorageError unless ``study`` was made by ``fastmlp search``: one objective, maximized, and its
    settings in the ``fastmlp_settings`` attribute. fastmlp neither reads nor adds to another's study."""
    optuna = quiet_optuna()
    settings = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(settings, dict) or study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
        why = (f"it has no {SETTINGS_ATTR} attribute" if settings is None else
               f"its {SETTINGS_ATTR} attribute is not a table of settings" if not isinstance(settings, dict) else
               "it does not maximize one objective")
        raise StorageError(f"study {study.study_name!r} was not made by fastmlp search ({why}); fastmlp reads and "
                           f"adds to its own studies only: give another --study-name")


def stored_settings(storage, name: str) -> dict | None:
    """The settings a study was started with, or None when there is no such study yet, or only a
    half-made one (StorageError when the study is another program's)."""
    if name not in study_names(storage):
        return None
    return load_study(storage, name, half_made=True).user_attrs.get(SETTINGS_ATTR)  # None: half made


def pick_study(storage, name: str | None) -> str:
    """``name``, else the storage's only study, else ``mnist``."""
    if name is not None:
        return name
    names = study_names(storage)
    if len(names) == 1:
        return names[0]
    if "mnist" in names or not names:
        return "mnist"
    raise StorageError(f"the storage holds several studies ({', '.join(names)}); choose one with --study-name")


# ----------------------------------------------------------------------------- settings

@dataclass
class SearchSettings:
    """Everything a worker needs; the study keeps :meth:`stored` so that a resumed search goes on the same way."""

    storage: str = DEFAULT_STORAGE
    study_name: str = "mnist"
    space: dict = field(default_factory=lambda: Space.default().to_dict())
    pruner: str = DEFAULT_PRUNER
    seed: int = 0
    subset: int | None = None
    val_size: int = 5000
    dataset: str = "mnist"
    data_dir: str | None = None
    verify: bool = True

    def space_obj(self) -> Space:
        return Space.from_mapping(self.space, where="stored space")

    def stored(self) -> dict:
        """What the study keeps (where the data lives and the storage URL are per machine)."""
        return {k: getattr(self, k) for k in ("space", "pruner", "seed", "subset", "val_size", "dataset")}


FIXED_PER_STUDY = ("subset", "val_size", "dataset")


def check_fixed_settings(stored: dict, given: dict, study_name: str, *, resolved: bool = False) -> None:
    """ConfigError when ``given`` changes a setting that is fixed per study. None in ``given`` is "not
    given", unless ``resolved`` (settings as a search runs them: a subset of None is the full set)."""
    for name in FIXED_PER_STUDY:
        if name in stored and (resolved or given.get(name) is not None) and stored[name] != given[name]:
            was = "the full training set" if stored[name] is None else stored[name]
            raise ConfigError(f"study {study_name!r} was searched with {name.replace('_', '-')} {was}; "
                              f"give the same or another --study-name")


def resolve_settings(stored: dict | None, *, storage: str, study_name: str, space: Space | None = None,
                     space_file=None, space_flags: dict | None = None, pruner: str | None = None,
                     seed: int | None = None, subset: int | None = None, val_size: int | None = None,
                     dataset: str = "mnist", data_dir=None, verify: bool = True) -> SearchSettings:
    """The settings of this run: the study's ``stored`` ones (or the defaults), then the file, then flags.

    None means "not given". Subset, validation size and dataset cannot change within a study.
    """
    from .space import build_space
    stored = stored or {}
    if space is None:
        base = (Space.from_mapping(stored["space"], where="the study's stored space")
                if "space" in stored else Space.default())
        space = build_space(base, space_file, space_flags)
    given = {"pruner": pruner, "seed": seed, "subset": subset, "val_size": val_size, "dataset": dataset}
    check_fixed_settings(stored, given, study_name)
    defaults = {"pruner": DEFAULT_PRUNER, "seed": 0, "subset": None, "val_size": 5000, "dataset": "mnist"}
    values = {k: given[k] if given[k] is not None else stored.get(k, defaults[k]) for k in defaults}
    if values["pruner"] not in PRUNERS:
        raise ConfigError(f"unknown pruner {values['pruner']!r} (choose from {', '.join(PRUNERS)})")
    if values["subset"] is not None and values["subset"] < 1:
        raise ConfigError(f"--subset must be >= 1; got {values['subset']}")
    if values["val_size"] < 1:
        raise ConfigError(f"--val-size must be >= 1 (the objective is validation accuracy); got {values['val_size']}")
    return SearchSettings(storage=storage_url(storage), study_name=study_name, space=space.to_dict(),
                          data_dir=data_dir, verify=verify, **values)


# ----------------------------------------------------------------------------- trials

def trial_seed(seed: int, number: int) -> int:
    """The training seed of trial ``number`` (or of the trial it retries)."""
    import numpy as np
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0] & 0x7FFFFFFF)


def frozen(trial):
    """The stored state of a running ``optuna.Trial`` (its system attributes among it) as a FrozenTrial."""
    return trial.storage.get_trial(trial._trial_id)


def origin_number(trial) -> int:
    """The number of the first trial of this configuration (itself unless it is a retry); a FrozenTrial."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def retried_number(trial) -> int | None:
    """The number of the trial this one runs again, or None."""
    history = trial.system_attrs.get("retry_history") or []
    return int(history[-1]) if history else None


PER_RUN_ATTRS = ("worker", "process")  # user attributes that name the process running a trial


def retry_trial(study, trial) -> None:
    """Queue a failed (or failing) trial again: Optuna's ``RetryHeartbeatStaleTrialCallback``, at most
    MAX_RETRIES times, after dropping the attributes that named the process that ran it."""
    import copy
    optuna = quiet_optuna()
    # Two paths notice a lost worker (the heartbeat and, on this machine, the ended process): the
    # second must not queue the same configuration again, or --max-trials is overshot.
    if any(retried_number(t) == trial.number for t in study.get_trials(deepcopy=False)):
        return
    trial = copy.deepcopy(trial)
    for key in PER_RUN_ATTRS:
        trial.user_attrs.pop(key, None)
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)


def requeue(study, trial) -> bool:
    """Queue ``trial`` (a FrozenTrial) again; False when it was already tried MAX_RETRIES times."""
    if len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRIES:
        return False
    retry_trial(study, trial)
    return True


# ----------------------------------------------------------------------------- lost workers on this machine

def process_token(pid: int | None = None) -> str | None:
    """``boot/pid-namespace/pid/start-time``: names a process of this machine for as long as it lives
    (None where /proc does not tell)."""
    pid = os.getpid() if pid is None else pid
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{boot}/{namespace}/{pid}/{start}"


def _is_gone(token: str) -> bool:
    """True when ``token`` names a process of this machine (same boot, same pid namespace) that has ended."""
    boot_ns, _, rest = token.rpartition("/")[0].rpartition("/")
    mine = process_token()
    if mine is None or not mine.startswith(boot_ns + "/"):
        return False  # another machine, or another container: the heartbeat's business
    pid = int(rest) if rest.isdigit() else None
    return pid is not None and process_token(pid) != token


def recover_lost_trials(study, url: str) -> list[int]:
    """Mark FAIL, and queue again, the RUNNING trials whose worker process on this machine has ended.

    A lost worker on another machine is found by Optuna's heartbeat once its grace period has
    passed; on this machine there is no need to wait: its process is gone or not. Returns the
    numbers of the trials marked. Runs under the study's lock (:func:`storage_lock` on ``url``),
    like :func:`fail_stale_trials`.
    """
    optuna = quiet_optuna()
    lost = []
    with storage_lock(url, study.study_name):
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            token = t.user_attrs.get("process")
            if not token or not _is_gone(token):
                continue
            # the retry first: killed between the two, the trial is still RUNNING, found lost again, and
            # retry_trial sees its retry queued (marked FAIL first, it would be lost for good)
            retry_trial(study, t)
            try:
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # another process marked it first
            lost.append(t.number)
    return lost


def fail_stale_trials(study, url: str) -> None:
    """Optuna's heartbeat check (mark FAIL the trials whose worker stopped beating, and queue them
    again), under the study's lock.

    Marking a trial failed and queueing its retry are two transactions; between them the study
    looks one trial short, and a worker counting places for ``--max-trials`` under the lock
    would start a new trial as well as the retry. Holding the lock across both closes that gap.
    """
    optuna = quiet_optuna()
    with storage_lock(url, study.study_name):
        optuna.storages.fail_stale_trials(study)


def trial_val_acc(trial) -> float | None:
    """The trial's objective when complete, else the last validation accuracy it reported."""
    if trial.value is not None:
        return float(trial.value)
    if trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return None


def best_trial(trials):
    """The completed trial with the highest validation accuracy (the earliest on ties), or None."""
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def counts(trials) -> dict[str, int]:
    """Trials by state name, lower case: complete, pruned, fail, waiting, running."""
    out = {"complete": 0, "pruned": 0, "fail": 0, "waiting": 0, "running": 0}
    for t in trials:
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def format_config(config: dict) -> str:
    """``batch 64, hidden [512, 256], eta 1.2e-03, beta1 0.912, beta2 0.99912, eps 3.1e-08``, then each
    option of the recipe that is on (``, dropout 0.300, augmentation elastic, ...``)."""
    text = (f"batch {config['batch_size']}, hidden {list(config['hidden_sizes'])}, eta {config['lr']:.2e}, "
            f"beta1 {config['beta1']:.3f}, beta2 {config['beta2']:.5f}, eps {config['eps']:.1e}")
    if config.get("lr_decay", 1.0) != 1.0:
        text += f", decay {config['lr_decay']:.3f}"
    defaults = TrainConfig().to_dict()
    for name in RECIPE:
        if config.get(name, defaults[name]) != defaults[name]:
            text += f", {RULES[name].label} {fmt_value(name, config[name])}"
    return text


def _epochs_text(n) -> str:
    return "? epochs" if n is None else f"{n} epoch{'' if n == 1 else 's'}"


def summary(study) -> str:
    """The study's counts by state and its best trial, in two lines."""
    trials = study.get_trials(deepcopy=False)
    c = counts(trials)
    text = (f"study {study.study_name!r}: {len(trials)} trials ({c['complete']} complete, "
            f"{c['pruned']} pruned, {c['fail']} failed")
    if c["waiting"]:
        text += f", {c['waiting']} queued for the next run"
    if c["running"]:
        text += f", {c['running']} running"
    text += ")"
    best = best_trial(trials)
    if best is not None:
        config = best.user_attrs.get("config")
        text += (f"\nbest: trial {best.number}, validation accuracy {100 * best.value:.2f}% after "
                 f"{_epochs_text(best.user_attrs.get('epochs_run'))}"
                 + (f": {format_config(config)}" if isinstance(config, dict) else " (its configuration is not recorded)"))
    return text


# ----------------------------------------------------------------------------- sampler and pruner

def make_pruner(name: str, space: Space):
    optuna = quiet_optuna()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=space.min_epochs, max_resource=space.epochs,
                                              reduction_factor=REDUCTION_FACTOR)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=space.min_epochs,
                                                      reduction_factor=REDUCTION_FACTOR)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=space.min_epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r} (choose from {', '.join(PRUNERS)})")


def make_sampler(seed: int, worker: int, n_existing: int):
    """TPE, seeded from the search seed, this machine, the worker and the trials the study already holds.

    So a resumed search does not propose its first points again, and workers (on one machine or
    several sharing a study) do not propose the same ones.
    """
    import zlib

    import numpy as np
    optuna = quiet_optuna()
    host = zlib.crc32(socket.gethostname().encode())
    sampler_seed = int(np.random.SeedSequence([int(seed), host, int(worker), int(n_existing)]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True, group=True, constant_liar=True)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
