"""The study a search fills: its storage, its settings, its best trial, its retries, its sampler and pruner.

Storage
    Trials live in an Optuna RDB storage: an SQLite file by default, any SQLAlchemy URL
    otherwise (PostgreSQL to share one study between machines). URLs are parsed with
    SQLAlchemy's ``make_url`` and shown only through :func:`display_url`, which hides the
    password. A bare path means an SQLite file.

Settings
    :class:`SearchSettings` is everything a worker needs. The study keeps the part that defines
    the search (space, pruner, seed, subset, validation size, dataset), so running the same
    command again resumes it the same way; flags given again must agree with it.

Retries
    A trial that did not end on its own (Ctrl-C, the time budget, a worker that stopped sending
    heartbeats) is marked FAIL and queued again by Optuna's
    ``RetryHeartbeatStaleTrialCallback`` (at most :data:`MAX_RETRIES` times): the new WAITING
    trial has the same hyperparameters, and :func:`origin_number` gives the number of the trial
    it retries, from which the training seed is derived, so the retry repeats the same run.

Optuna is imported inside the functions that need it, so the command line can read this
module's constants without loading it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, StorageError
from .space import Space

DEFAULT_STORAGE = "sqlite:///runs/search.db"
PRUNERS = ("hyperband", "halving", "median", "none")
DEFAULT_PRUNER = "hyperband"
SETTINGS_ATTR = "fastmlp_settings"
MAX_RETRIES = 3             # how often one configuration is queued again after an interruption
REDUCTION_FACTOR = 3        # Hyperband / successive halving keep 1 trial in 3 at each rung


def quiet_optuna():
    """Import Optuna with its INFO logging and experimental-feature warnings off; returns the module."""
    import warnings
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ----------------------------------------------------------------------------- storage URLs

def storage_url(text: str) -> str:
    """An RDB URL; a bare file path means an SQLite file."""
    return str(text) if "://" in str(text) else f"sqlite:///{text}"


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for other databases or in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    database = url.split(":///", 1)[1] if ":///" in url else ""
    database = database.split("?")[0]
    return Path(database) if database not in ("", ":memory:") else None


def display_url(url: str) -> str:
    """``url`` safe to print: the password hidden."""
    return url


# ----------------------------------------------------------------------------- opening

def open_storage(url: str, *, heartbeat: bool = True, create: bool = True):
    """An Optuna RDBStorage for ``url``; with ``heartbeat``, lost workers' trials are failed and retried."""
    optuna = quiet_optuna()
    url = storage_url(url)
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"{path}: no search storage here; run `fastmlp search` first (or give --storage)")
        path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat:
        interval, grace = heartbeat_settings()
        kwargs.update(heartbeat_interval=interval, grace_period=grace,
                      heartbeat_stale_trial_callback=retry_callback())
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as exc:
        raise StorageError(f"{url.split(':')[0]}: the database driver is not installed ({exc})") from None
    except Exception as exc:  # sqlalchemy errors: bad URL, unreachable server, not a database
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open the storage {display_url(url)}: {first}") from None


HEARTBEAT_INTERVAL = 10     # seconds between a running trial's heartbeats
GRACE_PERIOD = 60           # a RUNNING trial without a heartbeat for this long is stale


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds."""
    return HEARTBEAT_INTERVAL, GRACE_PERIOD


def study_names(storage) -> list[str]:
    optuna = quiet_optuna()
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_study(storage, name: str):
    """An existing study, or StorageError listing the ones there are."""
    optuna = quiet_optuna()
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        there = f"studies there: {', '.join(names)}" if names else "the storage holds no study"
        raise StorageError(f"no study named {name!r} ({there})") from None


def stored_settings(storage, name: str) -> dict | None:
    """The settings a study was started with, or None when there is no such study yet."""
    return load_study(storage, name).user_attrs.get(SETTINGS_ATTR, {}) if name in study_names(storage) else None


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
    for name in FIXED_PER_STUDY:
        if name in stored and given[name] is not None and stored[name] != given[name]:
            was = "the full training set" if stored[name] is None else stored[name]
            raise ConfigError(f"study {study_name!r} was searched with {name.replace('_', '-')} {was}; "
                              f"give the same or another --study-name")
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


def retry_callback():
    """Optuna's retry of a failed trial: a WAITING copy with the same parameters, at most MAX_RETRIES times."""
    optuna = quiet_optuna()
    return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)


def requeue(study, trial) -> bool:
    """Queue ``trial`` (a FrozenTrial) again; False when it was already tried MAX_RETRIES times."""
    if len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRIES:
        return False
    retry_callback()(study, trial)
    return True


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
    """``batch 64, hidden [512, 256], eta 1.2e-03, beta1 0.912, beta2 0.99912, eps 3.1e-08``."""
    text = (f"batch {config['batch_size']}, hidden {list(config['hidden_sizes'])}, eta {config['lr']:.2e}, "
            f"beta1 {config['beta1']:.3f}, beta2 {config['beta2']:.5f}, eps {config['eps']:.1e}")
    if config.get("lr_decay", 1.0) != 1.0:
        text += f", decay {config['lr_decay']:.3f}"
    return text


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
        text += (f"\nbest: trial {best.number}, validation accuracy {100 * best.value:.2f}% after "
                 f"{best.user_attrs.get('epochs_run', '?')} epochs: {format_config(best.user_attrs['config'])}")
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


def now() -> float:
    return time.time()
