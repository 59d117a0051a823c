"""Hyperparameter search on Optuna: a thin objective over :func:`fastmlp.train.train`.

A study searches the homework's hyperparameters (batch size, hidden sizes, eta, beta1, beta2,
epsilon) for the best **validation** accuracy; the number of epochs is the budget a pruner
cuts. Each epoch's validation accuracy is reported to the trial, and the pruner (Hyperband by
default; successive halving, median or none) stops poor configurations early. The test set is
never looked at here.

The space
    A mapping from hyperparameter to what it may be. Each entry is one of

    * a number: fixed (``beta1 = 0.9``);
    * a list: a categorical choice (``batch_size = [32, 64, 128, 256]``);
    * a string ``"LO:HI"``: a range on the parameter's usual scale (``lr = "1e-4:3e-3"`` is
      log-uniform), ``"A,B,C"``: a choice, or one number: fixed;
    * a table ``{low, high, scale}`` with ``scale`` one of ``linear``, ``log`` or ``log1m``
      (log-uniform in ``1 - x``, the natural scale of beta2), or ``{choices = [...]}`` or
      ``{value = x}``.

    Keys: ``batch_size``, ``layers`` (number of hidden layers), ``width`` (each hidden layer's
    width, drawn per layer), ``lr`` (eta), ``beta1``, ``beta2``, ``eps``, ``lr_decay`` (eta is
    multiplied by it after every epoch; ``lr_decay = 1`` keeps eta constant), and the budget: ``epochs`` (the most a trial runs) and
    ``min_epochs`` (what every trial runs before it may be pruned). :data:`DEFAULT_SPACE` is
    the default; a TOML or JSON file (``--space``) and flags (``--lr 1e-4:3e-3``) change it,
    in that order. ``fastmlp search --print-space`` shows the result as TOML.

Storage and resuming
    Trials live in an Optuna RDB storage, an SQLite file by default. Running the same command
    again continues the study: the settings it was started with are kept in the study, new
    trials are numbered after the old ones, and the sampler is reseeded from the number of
    trials already there, so it does not propose the same points again. A trial that did not
    finish on its own (Ctrl-C, the ``--timeout`` budget, a worker that crashed or was killed
    and stopped sending heartbeats) is marked FAIL with the reason and queued again with the
    same hyperparameters and training seed, so the next run picks it up first. Any Optuna RDB
    URL works: several machines can run ``fastmlp search --storage postgresql://...`` on one
    study at the same time.

Workers
    ``--jobs N`` runs N worker processes on this machine, all on the same study; each gets
    ``cores // N`` BLAS and Numba threads.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STORAGE = "sqlite:///runs/search.db"
PRUNERS = ("hyperband", "halving", "median", "none")
DEFAULT_PRUNER = "hyperband"
SETTINGS_ATTR = "fastmlp_settings"
HEARTBEAT_INTERVAL = 10     # seconds between a running trial's heartbeats
GRACE_PERIOD = 60           # a RUNNING trial without a heartbeat for this long is stale
MAX_RETRIES = 3             # how often one configuration is queued again after an interruption
REDUCTION_FACTOR = 3        # Hyperband / successive halving keep 1 trial in 3 at each rung

# name: (value type, scale of a "LO:HI" range)
PARAMS: dict[str, tuple[str, str]] = {
    "batch_size": ("int", "log"),
    "layers": ("int", "linear"),
    "width": ("int", "log"),
    "lr": ("float", "log"),
    "beta1": ("float", "linear"),
    "beta2": ("float", "log1m"),
    "eps": ("float", "log"),
    "lr_decay": ("float", "linear"),
}
BUDGET_KEYS = ("epochs", "min_epochs")
ALIASES = {"eta": "lr", "epsilon": "eps", "hidden_layers": "layers", "batch": "batch_size",
           "max_epochs": "epochs", "num_epochs": "epochs"}
SCALES = ("linear", "log", "log1m")

DEFAULT_SPACE: dict[str, Any] = {
    "batch_size": [32, 64, 128, 256],
    "layers": "1:3",
    "width": [128, 256, 512, 1024],
    "lr": "1e-4:3e-3",
    "beta1": "0.8:0.99",
    "beta2": "0.99:0.9999",
    "eps": "1e-9:1e-6",
    "lr_decay": "0.7:1",
    "epochs": 20,
    "min_epochs": 2,
}


def _config_error(message: str) -> Exception:
    from .config import ConfigError
    return ConfigError(message)


def _cli_error(message: str) -> Exception:
    from .cli import CliError
    return CliError(message)


# ----------------------------------------------------------------------------- the space

@dataclass(frozen=True)
class Param:
    """What one hyperparameter may be: ``fixed`` (value), ``choice`` (choices) or ``range``."""

    name: str
    kind: str
    value: Any = None
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    scale: str = "linear"
    integer: bool = False

    def suggest(self, trial, name: str | None = None):
        """Draw this parameter for an Optuna trial (``name`` e.g. ``width_2``)."""
        name = name or self.name
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.scale == "log")
        if self.scale == "log1m":
            return 1.0 - trial.suggest_float(f"one_minus_{name}", 1.0 - self.high, 1.0 - self.low, log=True)
        return trial.suggest_float(name, self.low, self.high, log=self.scale == "log")

    def to_json(self):
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return list(self.choices)
        return {"low": self.low, "high": self.high, "scale": self.scale}

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{_fmt(self.value)} (fixed)"
        if self.kind == "choice":
            return "{" + ", ".join(_fmt(c) for c in self.choices) + "}"
        scale = {"linear": "", "log": ", log scale", "log1m": ", log scale in 1 - x"}[self.scale]
        return f"{_fmt(self.low)} to {_fmt(self.high)}{scale}"


def _fmt(v) -> str:
    """Short and exact enough: 0.9, 0.9999, 3e-03, 1e-08."""
    if isinstance(v, float) and v != 0 and not 1e-2 <= abs(v) < 1e4:
        mantissa, exponent = f"{v:.3e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _check_value(name: str, v, where: str):
    """``v`` as the type ``name`` takes, or ConfigError naming both."""
    typ = PARAMS[name][0]
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise _config_error(f"{where}: {name}: not a number: {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _config_error(f"{where}: {name}: expected a number, a list or \"LO:HI\"; got {v!r}")
    if not math.isfinite(v):
        raise _config_error(f"{where}: {name}: must be finite; got {v}")
    if typ == "int":
        if v != int(v) or v < 1:
            raise _config_error(f"{where}: {name}: must be a positive integer; got {v}")
        return int(v)
    v = float(v)
    if name in ("lr", "eps") and v <= 0:
        raise _config_error(f"{where}: {name}: must be > 0; got {v:g}")
    if name in ("beta1", "beta2") and not 0 <= v < 1:
        raise _config_error(f"{where}: {name}: must be in [0, 1); got {v:g}")
    if name == "lr_decay" and not 0 < v <= 1:
        raise _config_error(f"{where}: {name}: must be in (0, 1]; got {v:g}")
    return v


def parse_param(name: str, raw, where: str = "space") -> Param:
    """One space entry (number, list, ``"LO:HI"``/``"A,B"`` string or table) as a :class:`Param`."""
    typ, default_scale = PARAMS[name]
    integer = typ == "int"
    if isinstance(raw, dict):
        keys = set(raw)
        unknown = keys - {"value", "choices", "low", "high", "scale", "log"}
        if unknown:
            raise _config_error(f"{where}: {name}: unknown key {sorted(unknown)[0]!r} "
                                f"(expected value, choices, or low/high/scale)")
        if "value" in raw:
            if keys != {"value"}:
                raise _config_error(f"{where}: {name}: 'value' cannot be combined with other keys")
            if isinstance(raw["value"], (list, dict)):
                raise _config_error(f"{where}: {name}: value must be a number")
            return parse_param(name, raw["value"], where)
        if "choices" in raw:
            if keys != {"choices"}:
                raise _config_error(f"{where}: {name}: 'choices' cannot be combined with other keys")
            if not isinstance(raw["choices"], list):
                raise _config_error(f"{where}: {name}: choices must be a list")
            return parse_param(name, raw["choices"], where)
        if not {"low", "high"} <= keys:
            raise _config_error(f"{where}: {name}: a range needs both low and high")
        scale = raw.get("scale", default_scale)
        if "log" in raw:
            if "scale" in raw:
                raise _config_error(f"{where}: {name}: give scale or log, not both")
            if not isinstance(raw["log"], bool):
                raise _config_error(f"{where}: {name}: log must be true or false")
            scale = "log" if raw["log"] else "linear"
        return _make_range(name, raw["low"], raw["high"], scale, where)
    if isinstance(raw, list):
        if not raw:
            raise _config_error(f"{where}: {name}: the list of choices is empty")
        values = []
        for item in raw:
            v = _check_value(name, item, where)
            if v not in values:
                values.append(v)
        if len(values) == 1:
            return Param(name, "fixed", value=values[0], integer=integer)
        return Param(name, "choice", choices=tuple(values), integer=integer)
    if isinstance(raw, str):
        text = raw.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 2:
                raise _config_error(f"{where}: {name}: expected LO:HI; got {raw!r}")
            return _make_range(name, parts[0], parts[1], default_scale, where)
        if "," in text:
            return parse_param(name, [p for p in text.split(",") if p.strip()], where)
    return Param(name, "fixed", value=_check_value(name, raw, where), integer=integer)


def _make_range(name: str, low, high, scale: str, where: str) -> Param:
    integer = PARAMS[name][0] == "int"
    if scale not in SCALES:
        raise _config_error(f"{where}: {name}: scale must be one of {', '.join(SCALES)}; got {scale!r}")
    low, high = _check_value(name, low, where), _check_value(name, high, where)
    if low > high:
        raise _config_error(f"{where}: {name}: low {_fmt(low)} is above high {_fmt(high)}")
    if low == high:
        return Param(name, "fixed", value=low, integer=integer)
    if integer and scale == "log1m":
        raise _config_error(f"{where}: {name}: scale log1m is for values below 1, not integers")
    if scale == "log" and low <= 0:
        raise _config_error(f"{where}: {name}: a log scale needs low > 0; got {_fmt(low)}")
    if scale == "log1m" and high >= 1:
        raise _config_error(f"{where}: {name}: scale log1m needs high < 1; got {_fmt(high)}")
    return Param(name, "range", low=low, high=high, scale=scale, integer=integer)


@dataclass(frozen=True)
class Space:
    """The hyperparameters a study draws from, and its epoch budget."""

    params: dict[str, Param]
    epochs: int = 20
    min_epochs: int = 1

    @classmethod
    def default(cls) -> "Space":
        return cls.from_mapping(DEFAULT_SPACE, where="default space")

    @classmethod
    def from_mapping(cls, mapping: dict, base: "Space | None" = None, where: str = "space") -> "Space":
        """``base`` (or nothing) with the entries of ``mapping`` replacing its own."""
        if not isinstance(mapping, dict):
            raise _config_error(f"{where}: expected a table of hyperparameters; got {type(mapping).__name__}")
        params = dict(base.params) if base is not None else {}
        budget = {"epochs": base.epochs, "min_epochs": base.min_epochs} if base is not None else {}
        known = list(PARAMS)
        for key, raw in mapping.items():
            name = ALIASES.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
            if name in BUDGET_KEYS:
                if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                    raise _config_error(f"{where}: {name}: must be a positive integer; got {raw!r}")
                try:
                    value = float(raw)
                except ValueError:
                    raise _config_error(f"{where}: {name}: must be a positive integer; got {raw!r}") from None
                if not math.isfinite(value) or value != int(value) or value < 1:
                    raise _config_error(f"{where}: {name}: must be a positive integer; got {raw!r}")
                budget[name] = int(value)
            elif name in known:
                params[name] = parse_param(name, raw, where)
            else:
                raise _config_error(f"{where}: unknown hyperparameter {key!r} "
                                    f"(known: {', '.join(known + list(BUDGET_KEYS))})")
        for name in ("batch_size", "layers", "width", "lr", "beta1", "beta2", "eps"):
            if name not in params:
                raise _config_error(f"{where}: {name} is missing")
        given = {ALIASES.get(str(k).replace("-", "_"), str(k).replace("-", "_")) for k in mapping}
        if "min_epochs" not in given and budget.get("min_epochs", 1) > budget.get("epochs", 20):
            budget["min_epochs"] = budget["epochs"]  # an inherited minimum yields to a smaller budget
        space = cls(params, budget.get("epochs", 20), budget.get("min_epochs", 1))
        if space.min_epochs > space.epochs:
            raise _config_error(f"{where}: min_epochs {space.min_epochs} is above epochs {space.epochs}")
        return space

    def to_dict(self) -> dict:
        d = {name: p.to_json() for name, p in self.params.items()}
        d["epochs"], d["min_epochs"] = self.epochs, self.min_epochs
        return d

    def to_toml(self) -> str:
        lines = ["# fastmlp search space (fastmlp search --space FILE)"]
        for name, p in self.params.items():
            v = p.to_json()
            if isinstance(v, dict):
                text = f'{{ low = {_toml_num(v["low"])}, high = {_toml_num(v["high"])}, scale = "{v["scale"]}" }}'
            elif isinstance(v, list):
                text = "[" + ", ".join(_toml_num(x) for x in v) + "]"
            else:
                text = _toml_num(v)
            lines.append(f"{name} = {text}")
        lines.append(f"epochs = {self.epochs}        # the most epochs a trial runs (the pruner's budget)")
        lines.append(f"min_epochs = {self.min_epochs}    # epochs every trial runs before it may be pruned")
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        parts = [f"{name} {p.describe()}" for name, p in self.params.items()]
        parts.append(f"epochs: at most {self.epochs}, at least {self.min_epochs} before a trial may be pruned")
        return "; ".join(parts)

    def suggest(self, trial) -> dict:
        """The :class:`~fastmlp.train.TrainConfig` fields of one trial, drawn from the space."""
        p = self.params
        batch_size = p["batch_size"].suggest(trial)
        layers = p["layers"].suggest(trial)
        hidden = tuple(p["width"].suggest(trial, f"width_{i + 1}") for i in range(layers))
        fields = {"batch_size": int(batch_size), "hidden_sizes": hidden, "lr": float(p["lr"].suggest(trial)),
                  "beta1": float(p["beta1"].suggest(trial)), "beta2": float(p["beta2"].suggest(trial)),
                  "eps": float(p["eps"].suggest(trial)), "epochs": self.epochs}
        # explicit, so that a trial never depends on TrainConfig's default schedule
        fields["lr_decay"] = float(p["lr_decay"].suggest(trial)) if "lr_decay" in p else 1.0
        return fields

    def largest_batch(self) -> int:
        p = self.params["batch_size"]
        return int(p.value if p.kind == "fixed" else max(p.choices) if p.kind == "choice" else p.high)


def _toml_num(v) -> str:
    if isinstance(v, float):
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    return str(v)


def read_space_file(path: str | os.PathLike, base: Space) -> Space:
    """A TOML (``.toml``) or JSON file of space entries applied over ``base``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _config_error(f"{path}: no such space file") from None
    except OSError as exc:
        raise _config_error(f"{path}: cannot read the space file ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _config_error(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib
        try:
            mapping = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _config_error(f"{path}: not valid TOML ({str(exc).splitlines()[0]})") from None
    return Space.from_mapping(mapping, base, where=str(path))


# ----------------------------------------------------------------------------- storage

def storage_url(text: str) -> str:
    """An RDB URL; a bare file path means an SQLite file."""
    return text if "://" in text else f"sqlite:///{text}"


def sqlite_path(url: str) -> Path | None:
    """The file of an ``sqlite:///`` URL (None for other databases or in-memory SQLite)."""
    if url.startswith("sqlite:///") and url[len("sqlite:///"):] not in ("", ":memory:"):
        return Path(url[len("sqlite:///"):].split("?")[0])
    return None


def _requeue(study, number: int, params: dict, distributions: dict, user_attrs: dict, reason: str) -> bool:
    """Queue the configuration of trial ``number`` again as a WAITING trial; False past MAX_RETRIES."""
    import optuna
    origin = int(user_attrs.get("origin", number))
    history = [*user_attrs.get("retry_history", []), number]
    if len(history) > MAX_RETRIES:
        return False
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params=params, distributions=distributions,
        user_attrs={"retry_of": number, "origin": origin, "retry_history": history, "retry_reason": reason},
        system_attrs={"failed_trial": origin, "retry_history": history}))
    return True


def _on_stale_trial(study, trial) -> None:
    """Heartbeat callback: a RUNNING trial whose worker stopped responding was just marked FAIL."""
    _requeue(study, trial.number, trial.params, trial.distributions, trial.user_attrs,
             "its worker stopped sending heartbeats (crashed or killed)")


def open_storage(url: str, *, heartbeat: bool = True, create: bool = True):
    """An Optuna RDBStorage for ``url`` (SQLite gets a 60 s lock timeout); heartbeats re-queue lost trials."""
    import warnings
    import optuna
    url = storage_url(url)
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.exists():
            raise _cli_error(f"{path}: no search storage here; run `fastmlp search` first (or give --storage)")
        path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat:
        kwargs.update(heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD)
        # optuna >= 4.9 names it heartbeat_stale_trial_callback; older releases failed_trial_callback
        import inspect
        cb_name = ("heartbeat_stale_trial_callback"
                   if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
                   else "failed_trial_callback")
        kwargs[cb_name] = _on_stale_trial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except ImportError as exc:
            raise _cli_error(f"{url.split(':')[0]}: the database driver is not installed ({exc})") from None
        except Exception as exc:  # sqlalchemy errors: bad URL, unreachable server, not a database
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _cli_error(f"cannot open the storage {url}: {first}") from None


def study_names(storage) -> list[str]:
    import optuna
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_study(storage, name: str):
    """An existing study, or CliError listing the ones there are."""
    import optuna
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        there = f"studies there: {', '.join(names)}" if names else "the storage holds no study"
        raise _cli_error(f"no study named {name!r} ({there})") from None


# ----------------------------------------------------------------------------- settings

@dataclass
class SearchSettings:
    """Everything a worker needs; kept in the study so that a resumed search goes on the same way."""

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


def trial_seed(seed: int, number: int) -> int:
    """The training seed of trial ``number`` (or of the trial it retries)."""
    import numpy as np
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0] & 0x7FFFFFFF)


def make_pruner(name: str, space: Space):
    import optuna
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
    raise _config_error(f"unknown pruner {name!r} (choose from {', '.join(PRUNERS)})")


def make_sampler(seed: int, worker: int, n_existing: int):
    """TPE, seeded from the search seed, this machine, the worker and the trials the study already holds.

    So a resumed search does not propose its first points again, and workers (on one machine or
    several sharing a study) do not propose the same ones.
    """
    import warnings
    import zlib
    import numpy as np
    import optuna
    host = zlib.crc32(socket.gethostname().encode())
    sampler_seed = int(np.random.SeedSequence([int(seed), host, int(worker), int(n_existing)]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True, group=True, constant_liar=True)


# ----------------------------------------------------------------------------- the objective

class _TrialCut(Exception):
    """The time budget ran out during a trial (it is marked FAIL and queued again)."""


class InterruptGate:
    """Ctrl-C (SIGINT) and SIGTERM that never tear a storage write in half.

    While a trial's kernels run (``armed``) a signal raises KeyboardInterrupt at once; anywhere
    else (Optuna asking for or recording a trial, the epoch callback's report) it is only
    noted, and :meth:`check` raises it at the next safe point. A second signal raises at once.
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

    def install(self) -> dict | None:
        """Handle SIGINT and SIGTERM (main thread only); returns the previous handlers."""
        import threading
        if threading.current_thread() is not threading.main_thread():
            return None
        return {sig: signal.signal(sig, self.handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def restore(previous: dict | None) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)


def _origin(trial) -> int:
    return int(trial.user_attrs.get("origin", trial.number))


class Objective:
    """Train one configuration; report each epoch's validation accuracy; return the last one."""

    def __init__(self, settings: SearchSettings, space: Space, dataset, deadline: float | None = None,
                 gate: InterruptGate | None = None):
        import numpy as np
        self.settings, self.space, self.dataset, self.deadline = settings, space, dataset, deadline
        self.gate = gate or InterruptGate()
        self.train_rows = None if settings.subset is None else np.arange(settings.subset, dtype=np.int64)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, trial) -> float:
        import optuna
        from . import train as trainmod
        gate = self.gate
        stop: dict[str, Any] = {"why": None, "epoch": 0, "rec": None, "training": False}
        t0 = time.perf_counter()

        def on_epoch(rec: dict) -> None:
            gate.armed = False
            stop["epoch"], stop["rec"] = rec["epoch"], rec
            trial.report(float(rec["val_acc"]), rec["epoch"])
            if rec["epoch"] == config.epochs:
                return  # trained to the end: complete, whatever comes now
            gate.check()
            if trial.should_prune():
                stop["why"] = "pruned"
                raise trainmod.TrainingStopped(f"pruned after epoch {rec['epoch']}")
            if self.deadline is not None and time.time() >= self.deadline:
                stop["why"] = "budget"
                raise trainmod.TrainingStopped(f"time budget ran out after epoch {rec['epoch']}")
            gate.armed = True

        def finish(reason: str | None = None) -> None:
            trial.set_user_attr("epochs_run", stop["epoch"])
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            rec = stop["rec"]
            if rec is not None:
                for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
                    trial.set_user_attr(key, rec[key])
                trial.set_user_attr("samples_per_s", rec["samples_per_s"])
            if reason is not None:
                trial.set_user_attr("stop_reason", reason)

        def requeue(why: str) -> str:
            queued = _requeue(trial.study, trial.number, trial.params, trial.distributions, trial.user_attrs, why)
            return "queued again" if queued else f"not queued again (tried {MAX_RETRIES} times)"

        try:
            gate.check()
            fields = self.space.suggest(trial)
            config = trainmod.TrainConfig(**fields, seed=trial_seed(self.settings.seed, _origin(trial)),
                                          val_size=self.settings.val_size, dataset=self.settings.dataset)
            trial.set_user_attr("config", config.to_dict())
            trial.set_user_attr("worker", self.worker)
            gate.check()
            gate.armed = stop["training"] = True
            try:
                trainmod.train(config, self.dataset, on_epoch=on_epoch, train_rows=self.train_rows,
                               evaluate_test=False)
            finally:
                gate.armed = False
        except trainmod.TrainingDiverged as exc:
            reason = f"diverged: loss became {exc.loss} at epoch {exc.epoch}, step {exc.step}"
            finish(reason)
            raise optuna.TrialPruned(reason) from None
        except KeyboardInterrupt:
            gate.requested = True
            how = f"during epoch {stop['epoch'] + 1}" if stop["training"] else "before training"
            finish(f"interrupted {how}; " + requeue("the previous run was interrupted"))
            raise
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            finish(f"error: {type(exc).__name__}: {first}")
            raise
        if stop["why"] == "pruned":
            finish(f"pruned after epoch {stop['epoch']}")
            raise optuna.TrialPruned(f"pruned after epoch {stop['epoch']}")
        if stop["why"] == "budget":
            finish(f"time budget ran out after epoch {stop['epoch']}; "
                   + requeue("the time budget ran out during it"))
            trial.study.stop()
            raise _TrialCut(f"time budget ran out after epoch {stop['epoch']}")
        finish()
        return float(stop["rec"]["val_acc"])


# ----------------------------------------------------------------------------- progress

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


def trial_val_acc(trial) -> float | None:
    """The trial's objective when complete, else the last validation accuracy it reported."""
    if trial.value is not None:
        return float(trial.value)
    if trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return None


class ProgressPrinter:
    """One line per finished trial, with the study's totals, the best so far and the time left."""

    def __init__(self, deadline: float | None, prefix: str = "", stream=None, t0: float | None = None):
        self.deadline, self.prefix, self.stream = deadline, prefix, stream or sys.stdout
        self.t0 = time.time() if t0 is None else t0

    def __call__(self, study, trial) -> None:
        import optuna
        S = optuna.trial.TrialState
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in (S.COMPLETE, S.PRUNED, S.FAIL) for t in trials)
        complete = [t for t in trials if t.state == S.COMPLETE]
        best = max(complete, key=lambda t: t.value) if complete else None
        acc = trial_val_acc(trial)
        config = trial.user_attrs.get("config")
        parts = [f"{self.prefix}trial {trial.number:>4} {trial.state.name.lower():<8}",
                 f"val {100 * acc:6.2f}%" if acc is not None else "val    -   ",
                 f"{trial.user_attrs.get('epochs_run', 0):>3} ep",
                 f"{trial.user_attrs.get('seconds', 0.0):6.1f}s"]
        if config:
            parts.append(format_config(config))
        reason = trial.user_attrs.get("stop_reason")
        if reason and trial.state != S.COMPLETE:
            parts.append(f"({reason})")
        summary = [f"{done} done"]
        summary.append(f"best {100 * best.value:.2f}% (#{best.number})" if best else "best -")
        if self.deadline is not None:
            summary.append(f"{format_duration(self.deadline - time.time())} left")
        else:
            summary.append(f"{format_duration(time.time() - self.t0)} elapsed")
        print("  ".join(parts) + "  | " + ", ".join(summary), file=self.stream, flush=True)


# ----------------------------------------------------------------------------- workers

def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _thread_env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {"NUMBA_NUM_THREADS": n, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def run_worker(settings: SearchSettings, *, worker: int = 0, n_trials: int | None = None,
               deadline: float | None = None, dataset=None, threads: int | None = None,
               prefix: str = "", parent: int | None = None) -> None:
    """Run trials of the study until ``n_trials`` are done, the deadline passes or Ctrl-C.

    A worker process (``parent`` given) also stops after its trial when its parent has died.

    KeyboardInterrupt propagates, after the running trial has been marked and queued again.
    """
    import warnings
    import optuna
    from threadpoolctl import threadpool_limits
    from .data import load_dataset

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    space = settings.space_obj()
    if dataset is None:
        dataset = load_dataset(settings.dataset, settings.data_dir, verify=settings.verify, download=True)
    storage = open_storage(settings.storage)
    study = load_study(storage, settings.study_name)
    n_existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(settings.seed, worker, n_existing)
    study.pruner = make_pruner(settings.pruner, space)
    timeout = None
    if deadline is not None:
        timeout = deadline - time.time()
        if timeout <= 0:
            return
    gate = InterruptGate()
    objective = Objective(settings, space, dataset, deadline, gate)
    progress = ProgressPrinter(deadline, prefix)

    def after_trial(study, trial) -> None:
        progress(study, trial)
        if gate.requested or (parent is not None and os.getppid() != parent):
            study.stop()

    limiter = threadpool_limits(limits=threads) if threads else None
    previous = gate.install()
    try:
        study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(_TrialCut,),
                       callbacks=[after_trial], gc_after_trial=False)
        gate.check()
    finally:
        InterruptGate.restore(previous)
        if limiter is not None:
            limiter.unregister()


def _worker_process(settings_dict: dict, worker: int, n_trials: int | None, deadline: float | None,
                    threads: int, parent: int | None = None) -> None:
    """Entry point of a ``--jobs`` worker process (spawned; Ctrl-C as in :class:`InterruptGate`)."""
    os.environ.update(_thread_env(threads))
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # a terminal's Ctrl-C reaches the parent only, which passes exactly one on
    from .data import DataError
    from .model import ModelError
    from .config import ConfigError
    try:
        run_worker(SearchSettings(**settings_dict), worker=worker, n_trials=n_trials, deadline=deadline,
                   threads=threads, prefix=f"w{worker} ", parent=parent)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        from .cli import CliError
        if isinstance(exc, (ConfigError, DataError, ModelError, CliError)):
            print(f"fastmlp: error: worker {worker}: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise


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


def run_workers(settings: SearchSettings, jobs: int, threads: int, n_trials: int | None,
                deadline: float | None) -> int:
    """Spawn ``jobs`` worker processes on the study and wait for them; their worst exit status."""
    import multiprocessing as mp
    from dataclasses import asdict
    ctx = mp.get_context("spawn")
    procs = []
    saved = {k: os.environ.get(k) for k in _thread_env(threads)}
    os.environ.update(_thread_env(threads))  # inherited by the spawned interpreters before numpy loads
    try:
        for i, n in enumerate(_split_trials(n_trials, jobs)):
            if n == 0:
                continue
            p = ctx.Process(target=_worker_process, args=(asdict(settings), i, n, deadline, threads, os.getpid()),
                            name=f"fastmlp-search-{i}")
            p.start()
            procs.append(p)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        _stop_workers(procs)
        raise
    codes = [p.exitcode for p in procs]
    if any(c == 130 for c in codes):
        raise KeyboardInterrupt
    return max([abs(c) for c in codes if c is not None] or [0])


# ----------------------------------------------------------------------------- the command

def add_search_parser(sub) -> None:
    from .cli import _add_data_args, cmd_search
    p = sub.add_parser(
        "search", help="hyperparameter search (Optuna) for the best validation accuracy",
        description="Search batch size, hidden sizes, eta, beta1, beta2 and epsilon for the best validation "
                    "accuracy, with epochs as the budget a pruner cuts. Trials are stored in an Optuna RDB "
                    "storage; running the same command again resumes the study.")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"Optuna RDB URL or SQLite file (default {DEFAULT_STORAGE}); e.g. "
                        "postgresql://user:pass@host/db to share one study between machines")
    p.add_argument("--study-name", default=None, metavar="NAME", help="study to create or resume (default: the dataset name)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this long; a trial still running is stopped after its current epoch "
                        "and queued again (default: no limit)")
    p.add_argument("--trials", type=int, default=None, metavar="N", help="run this many trials, then stop (default: no limit)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes on this machine (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="BLAS and Numba threads per worker (default: cores // jobs)")
    g = p.add_argument_group("the space (over the default, or the study's own when resuming)")
    g.add_argument("--space", default=None, metavar="FILE", help="a TOML or JSON file of space entries")
    default = Space.default()
    for name in PARAMS:
        flag = "--" + name.replace("_", "-")
        g.add_argument(flag, dest=f"space_{name}", default=None, metavar="SPEC",
                       help=f"{name}: VALUE, A,B,C or LO:HI (default {default.params[name].describe()})")
    g.add_argument("--epochs", dest="space_epochs", type=int, default=None, metavar="N",
                   help=f"the most epochs a trial runs (default {DEFAULT_SPACE['epochs']})")
    g.add_argument("--min-epochs", dest="space_min_epochs", type=int, default=None, metavar="N",
                   help=f"epochs before a trial may be pruned (default {DEFAULT_SPACE['min_epochs']})")
    g.add_argument("--print-space", action="store_true", help="print the effective space as TOML and exit")
    g = p.add_argument_group("the search")
    g.add_argument("--pruner", choices=PRUNERS, default=None, help=f"default {DEFAULT_PRUNER}")
    g.add_argument("--seed", type=int, default=None, help="seed of the sampler and of every trial (default 0)")
    g.add_argument("--subset", type=int, default=None, metavar="N",
                   help="train each trial on the first N training images only (for quick checks)")
    g.add_argument("--val-size", type=int, default=None, metavar="N",
                   help="training images held out for validation (default 5000)")
    _add_data_args(p)
    p.set_defaults(func=cmd_search)


def _space_from_args(args, base: Space) -> Space:
    space = base
    if args.space is not None:
        space = read_space_file(args.space, space)
    flags = {}
    for name in (*PARAMS, *BUDGET_KEYS):
        value = getattr(args, f"space_{name}", None)
        if value is not None:
            flags[name] = value
    if flags:
        space = Space.from_mapping(flags, space, where="flags")
    return space


def resolve_settings(args, stored: dict | None) -> SearchSettings:
    """The settings of this run: the study's stored ones (or the defaults), then the file, then flags."""
    stored = stored or {}
    base = (Space.from_mapping(stored["space"], where="the study's stored space")
            if "space" in stored else Space.default())
    space = _space_from_args(args, base)

    def pick(name, default):
        given = getattr(args, name, None)
        if given is not None and name in stored and stored[name] != given and name in ("subset", "val_size",
                                                                                         "dataset"):
            was = "the full training set" if stored[name] is None else stored[name]
            raise _cli_error(f"study {args.study_name!r} was searched with {name.replace('_', '-')} {was}; "
                             f"give the same or another --study-name")
        return given if given is not None else stored.get(name, default)

    settings = SearchSettings(storage=storage_url(args.storage), study_name=args.study_name, space=space.to_dict(),
                              pruner=pick("pruner", DEFAULT_PRUNER), seed=pick("seed", 0),
                              subset=pick("subset", None), val_size=pick("val_size", 5000),
                              dataset=args.dataset,
                              data_dir=args.data_dir, verify=not args.no_verify)
    if stored.get("dataset") not in (None, settings.dataset):
        raise _cli_error(f"study {args.study_name!r} was searched on {stored['dataset']}; "
                         f"give another --study-name for {settings.dataset}")
    if settings.subset is not None and settings.subset < 1:
        raise _config_error(f"--subset must be >= 1; got {settings.subset}")
    if settings.val_size < 1:
        raise _config_error(f"--val-size must be >= 1 (the objective is validation accuracy); "
                            f"got {settings.val_size}")
    return settings


def _summary(study, t0: float) -> str:
    import optuna
    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in (S.COMPLETE, S.PRUNED, S.FAIL, S.WAITING, S.RUNNING)}
    text = (f"study {study.study_name!r}: {len(trials)} trials ({counts[S.COMPLETE]} complete, "
            f"{counts[S.PRUNED]} pruned, {counts[S.FAIL]} failed")
    if counts[S.WAITING]:
        text += f", {counts[S.WAITING]} queued for the next run"
    if counts[S.RUNNING]:
        text += f", {counts[S.RUNNING]} running elsewhere"
    text += f"); this run took {format_duration(time.time() - t0)}"
    complete = [t for t in trials if t.state == S.COMPLETE]
    if complete:
        best = max(complete, key=lambda t: t.value)
        text += (f"\nbest: trial {best.number}, validation accuracy {100 * best.value:.2f}% after "
                 f"{best.user_attrs.get('epochs_run', '?')} epochs: {format_config(best.user_attrs['config'])}")
    return text


def _sigterm_as_interrupt():
    """In the main thread, make SIGTERM end the search like Ctrl-C; returns the previous handler."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, on_term)


def run_search_cli(args) -> int:
    """``fastmlp search``: create or resume the study, run the workers, print a summary."""
    import warnings
    import optuna
    from .data import load_dataset

    t0 = time.time()
    if args.jobs < 1:
        raise _cli_error(f"--jobs must be >= 1; got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise _cli_error(f"--threads must be >= 1; got {args.threads}")
    if args.timeout is not None and not args.timeout > 0:
        raise _cli_error(f"--timeout must be > 0 seconds; got {args.timeout:g}")
    if args.trials is not None and args.trials < 1:
        raise _cli_error(f"--trials must be >= 1; got {args.trials}")
    if args.study_name is None:
        args.study_name = args.dataset or "mnist"
    if args.print_space:
        print(_space_from_args(args, Space.default()).to_toml(), end="")
        return 0
    _space_from_args(args, Space.default())  # a bad file or flag is reported before any storage is touched

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = open_storage(args.storage)
    existing = args.study_name in study_names(storage)
    stored = load_study(storage, args.study_name).user_attrs.get(SETTINGS_ATTR) if existing else None
    settings = resolve_settings(args, stored)
    space = settings.space_obj()

    dataset = load_dataset(settings.dataset, settings.data_dir, verify=settings.verify, download=True)
    n_fit = len(dataset.train_images) - settings.val_size
    if n_fit < 1:
        raise _config_error(f"--val-size {settings.val_size} leaves no training images")
    n_train = n_fit if settings.subset is None else min(settings.subset, n_fit)
    if settings.subset is not None and settings.subset > n_fit:
        raise _config_error(f"--subset {settings.subset} is larger than the training set ({n_fit} images)")
    if space.largest_batch() > n_train:
        raise _config_error(f"batch_size up to {space.largest_batch()} is larger than the {n_train} training images")

    study = optuna.create_study(storage=storage, study_name=settings.study_name, direction="maximize",
                                load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise _cli_error(f"study {settings.study_name!r} minimizes its objective; it is not a fastmlp search")
    study.set_user_attr(SETTINGS_ATTR, settings.stored())
    n_before = len(study.get_trials(deepcopy=False))

    cores = available_cores()
    jobs = args.jobs
    threads = args.threads or max(1, cores // jobs)
    deadline = time.time() + args.timeout if args.timeout is not None else None
    rows = f"first {n_train}" if settings.subset is not None else f"{n_train}"
    print(f"search: study {settings.study_name!r} in {settings.storage}: "
          f"{'resuming with ' + str(n_before) + ' trials' if existing else 'new study'}; {jobs} worker"
          f"{'s' if jobs > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}; "
          f"{'budget ' + format_duration(args.timeout) if deadline else 'no time limit'}"
          f"{'; ' + str(args.trials) + ' trials' if args.trials else ''}; pruner {settings.pruner}; seed "
          f"{settings.seed}", flush=True)
    print(f"objective: validation accuracy on {settings.val_size} held-out images; training on {rows} "
          f"{dataset.name} images", flush=True)
    print(f"space: {space.describe()}", flush=True)

    code = 0
    previous = _sigterm_as_interrupt()
    try:
        if jobs == 1:
            os.environ.update(_thread_env(threads) if args.threads else {})
            run_worker(settings, n_trials=args.trials, deadline=deadline, dataset=dataset,
                       threads=args.threads)
        else:
            del dataset
            code = run_workers(settings, jobs, threads, args.trials, deadline)
    except KeyboardInterrupt:
        print(f"\nsearch: interrupted; the running trials were marked and queued again\n"
              f"{_summary(load_study(open_storage(args.storage, heartbeat=False), settings.study_name), t0)}\n"
              f"resume with the same command", flush=True)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(_summary(load_study(open_storage(args.storage, heartbeat=False), settings.study_name), t0), flush=True)
    if code:
        print(f"fastmlp: error: a search worker exited with status {code}", file=sys.stderr)
        return 1
    return 0
