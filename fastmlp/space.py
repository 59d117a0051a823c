"""The search space: what each hyperparameter of a search may be, read from TOML, JSON and flags.

A space maps each searched hyperparameter to one :class:`Param`:

* a number: fixed (``beta1 = 0.9``);
* a list: a categorical choice (``batch_size = [32, 64, 128, 256]``);
* a string ``"LO:HI"``: a range on the parameter's usual scale (``lr = "1e-4:3e-3"`` is
  log-uniform), ``"A,B,C"``: a choice, or one number: fixed;
* a table ``{low, high, scale}`` with ``scale`` one of ``linear``, ``log`` or ``log1m``
  (log-uniform in ``1 - x``, the natural scale of beta2), or ``{choices = [...]}`` or
  ``{value = x}``.

Keys: ``batch_size``, ``layers`` (number of hidden layers), ``width`` (each hidden layer's
width, drawn per layer), ``lr`` (eta), ``beta1``, ``beta2``, ``eps``, ``lr_decay`` (eta is
multiplied by it after every epoch; 1 keeps eta constant), and the budget: ``epochs`` (the most
a trial runs) and ``min_epochs`` (what every trial runs before it may be pruned).
:data:`DEFAULT_SPACE` is the default; a TOML or JSON file (``--space``) and flags
(``--lr 1e-4:3e-3``) change it, in that order.

Every value's type, range and default scale come from :data:`fastmlp.config.RULES`, the one
table of hyperparameter rules; a value out of range is the same one-line
:class:`~fastmlp.errors.ConfigError` as for ``fastmlp train``. This module does not import
Optuna: :meth:`Space.suggest` draws from any object with Optuna's ``suggest_*`` methods.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RULES, Rule
from .errors import ConfigError

#: The hyperparameters a search draws, in the order it draws them; each is a rule of RULES.
PARAMS: dict[str, Rule] = {name: RULES[name] for name in
                           ("batch_size", "layers", "width", "lr", "beta1", "beta2", "eps", "lr_decay")}
#: The budget of every trial: the most epochs it runs, and the epochs before it may be pruned.
BUDGET: dict[str, Rule] = {"epochs": RULES["epochs"],
                           "min_epochs": dataclasses.replace(RULES["epochs"], name="min_epochs")}
BUDGET_KEYS = tuple(BUDGET)
ALIASES = {"eta": "lr", "epsilon": "eps", "hidden_layers": "layers", "batch": "batch_size",
           "max_epochs": "epochs", "num_epochs": "epochs"}
SCALES = ("linear", "log", "log1m")
REQUIRED = ("batch_size", "layers", "width", "lr", "beta1", "beta2", "eps")

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


def canonical_name(key) -> str:
    """A space key with dashes as underscores and aliases (``eta``, ``epsilon``...) resolved."""
    name = str(key).replace("-", "_")
    return ALIASES.get(name, name)


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


def _check_value(rule: Rule, v, where: str):
    """``v`` (a number or a numeric string) as ``rule`` takes it, or ConfigError naming both."""
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise ConfigError(f"{where}: {rule.name}: not a number: {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: {rule.name}: expected a number, a list or \"LO:HI\"; got {v!r}")
    return rule.check(v, where)


def parse_param(name: str, raw, where: str = "space") -> Param:
    """One space entry (number, list, ``"LO:HI"``/``"A,B"`` string or table) as a :class:`Param`."""
    rule = PARAMS[name]
    default_scale, integer = rule.scale, rule.type is int
    if isinstance(raw, dict):
        keys = set(raw)
        unknown = keys - {"value", "choices", "low", "high", "scale", "log"}
        if unknown:
            raise ConfigError(f"{where}: {name}: unknown key {sorted(unknown)[0]!r} "
                                f"(expected value, choices, or low/high/scale)")
        if "value" in raw:
            if keys != {"value"}:
                raise ConfigError(f"{where}: {name}: 'value' cannot be combined with other keys")
            if isinstance(raw["value"], (list, dict)):
                raise ConfigError(f"{where}: {name}: value must be a number")
            return parse_param(name, raw["value"], where)
        if "choices" in raw:
            if keys != {"choices"}:
                raise ConfigError(f"{where}: {name}: 'choices' cannot be combined with other keys")
            if not isinstance(raw["choices"], list):
                raise ConfigError(f"{where}: {name}: choices must be a list")
            return parse_param(name, raw["choices"], where)
        if not {"low", "high"} <= keys:
            raise ConfigError(f"{where}: {name}: a range needs both low and high")
        scale = raw.get("scale", default_scale)
        if "log" in raw:
            if "scale" in raw:
                raise ConfigError(f"{where}: {name}: give scale or log, not both")
            if not isinstance(raw["log"], bool):
                raise ConfigError(f"{where}: {name}: log must be true or false")
            scale = "log" if raw["log"] else "linear"
        return _make_range(name, raw["low"], raw["high"], scale, where)
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{where}: {name}: the list of choices is empty")
        values = []
        for item in raw:
            v = _check_value(rule, item, where)
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
                raise ConfigError(f"{where}: {name}: expected LO:HI; got {raw!r}")
            return _make_range(name, parts[0], parts[1], default_scale, where)
        if "," in text:
            return parse_param(name, [p for p in text.split(",") if p.strip()], where)
    return Param(name, "fixed", value=_check_value(rule, raw, where), integer=integer)


def _make_range(name: str, low, high, scale: str, where: str) -> Param:
    rule = PARAMS[name]
    integer = rule.type is int
    if scale not in SCALES:
        raise ConfigError(f"{where}: {name}: scale must be one of {', '.join(SCALES)}; got {scale!r}")
    low, high = _check_value(rule, low, where), _check_value(rule, high, where)
    if low > high:
        raise ConfigError(f"{where}: {name}: low {_fmt(low)} is above high {_fmt(high)}")
    if low == high:
        return Param(name, "fixed", value=low, integer=integer)
    if integer and scale == "log1m":
        raise ConfigError(f"{where}: {name}: scale log1m is for values below 1, not integers")
    if scale == "log" and low <= 0:
        raise ConfigError(f"{where}: {name}: a log scale needs low > 0; got {_fmt(low)}")
    if scale == "log1m" and high >= 1:
        raise ConfigError(f"{where}: {name}: scale log1m needs high < 1; got {_fmt(high)}")
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
            raise ConfigError(f"{where}: expected a table of hyperparameters; got {type(mapping).__name__}")
        params = dict(base.params) if base is not None else {}
        budget = {"epochs": base.epochs, "min_epochs": base.min_epochs} if base is not None else {}
        known = list(PARAMS)
        for key, raw in mapping.items():
            name = canonical_name(key)
            if name in BUDGET:
                if isinstance(raw, (list, dict)):
                    raise ConfigError(f"{where}: {name}: must be one whole number; got {raw!r}")
                budget[name] = _check_value(BUDGET[name], raw, where)
            elif name in known:
                params[name] = parse_param(name, raw, where)
            else:
                raise ConfigError(f"{where}: unknown hyperparameter {key!r} "
                                  f"(known: {', '.join(known + list(BUDGET_KEYS))})")
        for name in REQUIRED:
            if name not in params:
                raise ConfigError(f"{where}: {name} is missing")
        given = {canonical_name(k) for k in mapping}
        if "min_epochs" not in given and budget.get("min_epochs", 1) > budget.get("epochs", 20):
            budget["min_epochs"] = budget["epochs"]  # an inherited minimum yields to a smaller budget
        space = cls(params, budget.get("epochs", 20), budget.get("min_epochs", 1))
        if space.min_epochs > space.epochs:
            raise ConfigError(f"{where}: min_epochs {space.min_epochs} is above epochs {space.epochs}")
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
        raise ConfigError(f"{path}: no such space file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the space file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the space file is not UTF-8 text (byte {exc.start})") from None
    if path.suffix.lower() == ".json":
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib
        try:
            mapping = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({str(exc).splitlines()[0]})") from None
    return Space.from_mapping(mapping, base, where=str(path))


def build_space(base: Space, file: str | os.PathLike | None = None, flags: dict | None = None) -> Space:
    """``base``, then the entries of a space ``file``, then ``flags`` (name -> raw text), in that order."""
    space = base if file is None else read_space_file(file, base)
    flags = {name: value for name, value in (flags or {}).items() if value is not None}
    return Space.from_mapping(flags, space, where="flags") if flags else space
