"""The search space: what each hyperparameter of a search may be, and when it is drawn; read from TOML, JSON and flags.

A space maps each searched hyperparameter to one :class:`Param`:

* a number (or a word): fixed (``beta1 = 0.9``, ``augment = "elastic"``);
* a list: a categorical choice (``batch_size = [32, 64, 128, 256]``, ``schedule = ["cosine", "onecycle"]``);
* a string ``"LO:HI"``: a range on the parameter's usual scale (``lr = "1e-4:3e-3"`` is
  log-uniform), ``"A,B,C"``: a choice, or one number: fixed;
* a table ``{low, high, scale}`` with ``scale`` one of ``linear``, ``log`` or ``log1m``
  (log-uniform in ``1 - x``, the natural scale of beta2), or ``{choices = [...]}`` or
  ``{value = x}``; any of the three may add ``when``.

Keys: the homework's ``batch_size``, ``layers`` (number of hidden layers), ``width`` (each hidden
layer's width, drawn per layer), ``lr`` (eta), ``beta1``, ``beta2``, ``eps``; every option of the
training recipe (``schedule``, ``lr_decay``, ``warmup``, ``lr_floor``, ``alpha``, ``weight_decay``,
``max_norm``, ``dropout_input``, ``dropout``, ``label_smoothing``, ``ema``, ``augment``, the warp's
``aug_rotate``, ``aug_scale``, ``aug_shear``, ``aug_shift``, ``elastic_alpha``, ``elastic_sigma``);
and the budget: ``epochs`` (the most a trial runs) and ``min_epochs`` (what every trial runs
before it may be pruned). An option the space leaves out keeps :class:`~fastmlp.config.TrainConfig`'s
default (off), except ``lr_decay``, which is then 1 (constant eta).

Conditions: an option that does nothing unless another one has some value is drawn only then,
and otherwise keeps its default (:data:`CONDITIONS`: the warp's strengths only when ``augment``
is not none, the elastic ones only when it is elastic, ``warmup`` and ``lr_floor`` only for the
cosine and onecycle schedules, ``lr_decay`` only for the decay schedule). A table's ``when``
states its own: ``dropout = { low = 0.1, high = 0.5, when = { augment = ["affine", "elastic"] } }``
(every named parameter must have one of its values; ``when = {}``: always drawn).

Two spaces are built in (:data:`SPACES`): ``plain`` (:data:`DEFAULT_SPACE`, the homework's
hyperparameters and eta's decay) and ``recipe`` (:data:`RECIPE_SPACE`, the whole recipe around
``--preset best``). ``--space NAME`` picks one, ``--space FILE`` applies a TOML or JSON file over
the default (a file's ``base = "recipe"`` starts from the recipe space instead), and flags
(``--lr 1e-4:3e-3``) apply last.

Every value's type, range and default scale come from :data:`fastmlp.config.RULES`, the one
table of hyperparameter rules; a value out of range is the same one-line
:class:`~fastmlp.errors.ConfigError` as for ``fastmlp train``. This module does not import
Optuna: :meth:`Space.suggest` draws from any object with Optuna's ``suggest_*`` methods.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RULES, Rule, TrainConfig, read_table, toml_value
from ..errors import ConfigError

#: The hyperparameters a search may draw, in the order it draws them (every condition's parameter
#: before the ones it rules); each is a rule of RULES.
PARAMS: dict[str, Rule] = {name: RULES[name] for name in (
    "batch_size", "layers", "width", "lr", "beta1", "beta2", "eps", "schedule", "lr_decay", "warmup", "lr_floor",
    "alpha", "weight_decay", "max_norm", "dropout_input", "dropout", "label_smoothing", "ema", "augment",
    "aug_rotate", "aug_scale", "aug_shear", "aug_shift", "elastic_alpha", "elastic_sigma", "flip", "crop", "erase")}
#: The plain search's hyperparameters: the homework's, and eta's decay per epoch.
PLAIN = ("batch_size", "layers", "width", "lr", "beta1", "beta2", "eps", "lr_decay")
#: The options of the training recipe beyond those.
RECIPE = tuple(name for name in PARAMS if name not in PLAIN)
#: The budget of every trial: the most epochs it runs, and the epochs before it may be pruned.
BUDGET: dict[str, Rule] = {"epochs": RULES["epochs"],
                           "min_epochs": dataclasses.replace(RULES["epochs"], name="min_epochs")}
BUDGET_KEYS = tuple(BUDGET)
ALIASES = {"eta": "lr", "epsilon": "eps", "hidden_layers": "layers", "batch": "batch_size",
           "max_epochs": "epochs", "num_epochs": "epochs"}
SCALES = ("linear", "log", "log1m")
REQUIRED = ("batch_size", "layers", "width", "lr", "beta1", "beta2", "eps")
#: The homework's hyperparameters, in the homework's order (``layers`` stands for the hidden sizes).
HOMEWORK = ("batch_size", "layers", "lr", "beta1", "beta2", "eps", "epochs")

Condition = tuple  # ((parameter, (value, ...)), ...): every parameter named has one of its values
_WARPED = ("affine", "elastic")
_PER_STEP = ("cosine", "onecycle")
#: When an option does something: it is drawn only then (else it keeps its default).
CONDITIONS: dict[str, Condition] = {
    "lr_decay": (("schedule", ("decay",)),),
    "warmup": (("schedule", _PER_STEP),),
    "lr_floor": (("schedule", _PER_STEP),),
    **{name: (("augment", _WARPED),) for name in ("aug_rotate", "aug_scale", "aug_shear", "aug_shift")},
    "elastic_alpha": (("augment", ("elastic",)),),
    "elastic_sigma": (("augment", ("elastic",)),),
}

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

# Around --preset best (README, "How --preset best was chosen"): two wide hidden layers, Adam's
# betas and epsilon at their defaults (they mattered least), the regularisers and the warp searched.
RECIPE_SPACE: dict[str, Any] = {
    "batch_size": [64, 128, 256],
    "layers": 2,
    "width": [768, 1024, 1536],
    "lr": "1e-3:4e-3",
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "schedule": ["cosine", "onecycle"],
    "lr_decay": 1,      # the decay schedule's; cosine and onecycle set eta per step
    "warmup": "1:8",
    "weight_decay": "1e-5:1e-3",
    "dropout_input": "0:0.15",
    "dropout": "0:0.3",
    "label_smoothing": "0:0.1",
    "ema": "0.99:0.9995",
    "augment": ["affine", "elastic"],
    "aug_rotate": "6:15",
    "aug_scale": "0.05:0.15",
    "aug_shear": "0.05:0.25",
    "aug_shift": "1:3",
    "elastic_alpha": "8:34",
    "elastic_sigma": "3:6",
    "epochs": 20,
    "min_epochs": 4,
}

#: The built-in spaces, by the name ``--space`` takes.
SPACES: dict[str, dict[str, Any]] = {"plain": DEFAULT_SPACE, "recipe": RECIPE_SPACE}
_DEFAULTS = TrainConfig().to_dict()


def canonical_name(key) -> str:
    """A space key with dashes as underscores and aliases (``eta``, ``epsilon``...) resolved."""
    name = str(key).replace("-", "_")
    return ALIASES.get(name, name)


@dataclass(frozen=True)
class Param:
    """What one hyperparameter may be: ``fixed`` (value), ``choice`` (choices) or ``range``; drawn
    only when its condition ``when`` holds."""

    name: str
    kind: str
    value: Any = None
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    scale: str = "linear"
    integer: bool = False
    when: Condition = ()

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

    def possible(self) -> tuple:
        """The values a fixed or categorical parameter can take."""
        return (self.value,) if self.kind == "fixed" else self.choices


def _fmt(v) -> str:
    """Short and exact enough: 0.9, 0.9999, 3e-03, 1e-08."""
    if isinstance(v, float) and v != 0 and not 1e-2 <= abs(v) < 1e4:
        mantissa, exponent = f"{v:.3e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def values_text(values) -> str:
    """``affine or elastic``."""
    return " or ".join(_fmt(v) for v in values)


def when_text(when: Condition) -> str:
    """``augment is affine or elastic and schedule is cosine``."""
    return " and ".join(f"{parent} is {values_text(values)}" for parent, values in when)


# ----------------------------------------------------------------------------- values as tables show them

def fmt_sci(v: float) -> str:
    """``1.23e-03`` style, three significant digits."""
    return f"{v:.2e}"


def fmt_beta(v: float) -> str:
    """Two significant digits of ``1 - v`` (at least three decimals): 0.923, 0.99985, 0.999999."""
    if v >= 1 or v <= 0:
        return f"{v:g}"
    digits = max(3, 1 - math.floor(math.log10(1 - v)))
    return f"{v:.{digits}f}"


def fmt_value(name: str, v) -> str:
    """A hyperparameter's value as the tables show it, by its rule: integers whole, log-scaled
    values as ``1.23e-03``, values below 1 by the digits of ``1 - v`` (0.999, 0.99985)."""
    if v is None:
        return "–"
    rule = RULES[name]
    if not isinstance(v, (int, float)):
        return str(v)
    if rule.type is int:
        return str(v)
    if rule.scale == "log":
        return fmt_sci(v)
    return fmt_beta(v) if rule.high == 1 else f"{v:.3g}"


# ----------------------------------------------------------------------------- parsing entries

def _check_value(rule: Rule, v, where: str):
    """``v`` (a number, a numeric string, or one of a word rule's choices) as ``rule`` takes it, or
    ConfigError naming both."""
    if rule.choices:
        return rule.check(v.strip() if isinstance(v, str) else v, where)
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise ConfigError(f"{where}: {rule.name}: not a number: {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: {rule.name}: expected a number, a list or \"LO:HI\"; got {v!r}")
    return rule.check(v, where)


def parse_when(name: str, raw, where: str = "space") -> Condition:
    """A ``when`` table (``{augment = "elastic"}``, ``{schedule = ["cosine", "onecycle"]}``) as a condition."""
    if name in REQUIRED:
        raise ConfigError(f"{where}: {name}: is drawn in every trial; it cannot have a 'when'")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {name}: when must be a table of parameter = value(s), e.g. "
                          f"{{ augment = \"elastic\" }}; got {raw!r}")
    when = []
    for key, values in raw.items():
        parent = canonical_name(key)
        if parent not in PARAMS or parent in ("layers", "width"):
            raise ConfigError(f"{where}: {name}: when names {key!r}, which is not a hyperparameter a condition "
                              f"can test (e.g. augment, schedule)")
        if parent == name:
            raise ConfigError(f"{where}: {name}: when cannot test {name} itself")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"{where}: {name}: when {parent}: the list of values is empty")
        when.append((parent, tuple(dict.fromkeys(_check_value(PARAMS[parent], v, f"{where}: {name}: when")
                                                 for v in values))))
    return tuple(when)


def parse_param(name: str, raw, where: str = "space") -> Param:
    """One space entry (number, word, list, ``"LO:HI"``/``"A,B"`` string or table) as a :class:`Param`."""
    when = CONDITIONS.get(name, ())
    if isinstance(raw, dict) and "when" in raw:
        raw = dict(raw)
        when = parse_when(name, raw.pop("when"), where)
        if not raw:
            raise ConfigError(f"{where}: {name}: 'when' needs a value, choices, or low/high beside it")
    return dataclasses.replace(_parse_values(name, raw, where), when=when)


def _parse_values(name: str, raw, where: str) -> Param:
    rule = PARAMS[name]
    default_scale, integer = rule.scale, rule.type is int
    if isinstance(raw, dict):
        keys = set(raw)
        unknown = keys - {"value", "choices", "low", "high", "scale", "log"}
        if unknown:
            raise ConfigError(f"{where}: {name}: unknown key {sorted(unknown)[0]!r} "
                              f"(expected value, choices, or low/high/scale, and when)")
        if "value" in raw:
            if keys != {"value"}:
                raise ConfigError(f"{where}: {name}: 'value' cannot be combined with other keys")
            if isinstance(raw["value"], (list, dict)):
                raise ConfigError(f"{where}: {name}: value must be a number")
            return _parse_values(name, raw["value"], where)
        if "choices" in raw:
            if keys != {"choices"}:
                raise ConfigError(f"{where}: {name}: 'choices' cannot be combined with other keys")
            if not isinstance(raw["choices"], list):
                raise ConfigError(f"{where}: {name}: choices must be a list")
            return _parse_values(name, raw["choices"], where)
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
            return _parse_values(name, [p for p in text.split(",") if p.strip()], where)
    return Param(name, "fixed", value=_check_value(rule, raw, where), integer=integer)


def _make_range(name: str, low, high, scale: str, where: str) -> Param:
    rule = PARAMS[name]
    integer = rule.type is int
    if rule.choices:
        raise ConfigError(f"{where}: {name}: is {rule.range_text()}, not a range of numbers")
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


# ----------------------------------------------------------------------------- the space

@dataclass(frozen=True)
class Space:
    """The hyperparameters a study draws from, and its epoch budget."""

    params: dict[str, Param]
    epochs: int = 20
    min_epochs: int = 1

    @classmethod
    def default(cls) -> Space:
        return cls.from_mapping(DEFAULT_SPACE, where="default space")

    @classmethod
    def named(cls, name: str) -> Space:
        """The built-in space ``name`` (``plain`` or ``recipe``)."""
        if name not in SPACES:
            raise ConfigError(f"no built-in space named {name!r} (built in: {', '.join(SPACES)})")
        return cls.from_mapping(SPACES[name], where=f"the {name} space")

    @classmethod
    def from_mapping(cls, mapping: dict, base: Space | None = None, where: str = "space") -> Space:
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
        space = cls({n: params[n] for n in PARAMS if n in params}, budget.get("epochs", 20),
                    budget.get("min_epochs", 1))
        if space.min_epochs > space.epochs:
            raise ConfigError(f"{where}: min_epochs {space.min_epochs} is above epochs {space.epochs}")
        space.check_conditions(where)
        return space

    def check_conditions(self, where: str) -> None:
        """ConfigError for a condition stated in the space that can never hold, or that tests a range,
        or conditions that wait on each other."""
        for name, p in self.params.items():
            if p.when == CONDITIONS.get(name, ()):
                continue  # the option's own: inert when its parameter is fixed to another value
            for parent, values in p.when:
                q = self.params.get(parent)
                if q is not None and q.kind == "range":
                    raise ConfigError(f"{where}: {name}: when tests {parent}, which is a range; a condition "
                                      f"needs a fixed value or a list of choices")
                can = q.possible() if q is not None else (_DEFAULTS[parent],)
                if not set(values) & set(can):
                    raise ConfigError(f"{where}: {name}: when {when_text(((parent, values),))} never holds: "
                                      f"{parent} is {values_text(can)}")
        self.order(where)

    def order(self, where: str = "space") -> list[str]:
        """The parameters in the order they are drawn: :data:`PARAMS`' order, each after those its
        condition tests."""
        left, done = list(self.params), []
        while left:
            ready = next((n for n in left if all(parent in done or parent not in self.params
                                                 for parent, _ in self.params[n].when)), None)
            if ready is None:
                raise ConfigError(f"{where}: the conditions of {', '.join(left)} wait on each other")
            done.append(ready)
            left.remove(ready)
        return done

    def shows_when(self, name: str) -> bool:
        """Whether ``name``'s condition is worth writing: it is not the option's own, or the
        parameter it tests is in the space."""
        p = self.params[name]
        return p.when != CONDITIONS.get(name, ()) or any(parent in self.params for parent, _ in p.when)

    def to_dict(self) -> dict:
        d = {}
        for name, p in self.params.items():
            v = p.to_json()
            if self.shows_when(name):
                v = {**(v if isinstance(v, dict) else {"choices": v} if isinstance(v, list) else {"value": v}),
                     "when": {parent: list(values) for parent, values in p.when}}
            d[name] = v
        d["epochs"], d["min_epochs"] = self.epochs, self.min_epochs
        return d

    def to_toml(self) -> str:
        lines = ["# fastmlp search space (fastmlp search --space FILE). An entry is VALUE, [A, B, ...], \"LO:HI\"",
                 "# or { low, high, scale }; when = { P = V } draws it only in trials where P is V (else it",
                 "# keeps its default). Options left out keep fastmlp train's defaults."]
        for name, v in self.to_dict().items():
            if name not in BUDGET:
                lines.append(f"{name} = {toml_value(v)}")
        lines.append(f"epochs = {self.epochs}        # the most epochs a trial runs (the pruner's budget)")
        lines.append(f"min_epochs = {self.min_epochs}    # epochs every trial runs before it may be pruned")
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        parts = [f"{name} {p.describe()}" + (f" when {when_text(p.when)}" if self.shows_when(name) and p.when else "")
                 for name, p in self.params.items()]
        parts.append(f"epochs: at most {self.epochs}, at least {self.min_epochs} before a trial may be pruned")
        return "; ".join(parts)

    def active(self, name: str, drawn: dict) -> bool:
        """Whether ``name`` is drawn, given the values ``drawn`` so far (else TrainConfig's defaults)."""
        return all(drawn.get(parent, _DEFAULTS.get(parent)) in values for parent, values in self.params[name].when)

    def suggest(self, trial) -> dict:
        """The :class:`~fastmlp.training.train.TrainConfig` fields of one trial, drawn from the space."""
        drawn: dict[str, Any] = {}
        for name in self.order():
            if not self.active(name, drawn):
                continue
            p = self.params[name]
            if name == "width":
                drawn["hidden_sizes"] = tuple(int(p.suggest(trial, f"width_{i + 1}")) for i in range(drawn["layers"]))
            else:
                drawn[name] = PARAMS[name].type(p.suggest(trial))
        fields = {k: v for k, v in drawn.items() if k != "layers"}
        fields["epochs"] = self.epochs
        # explicit, so that a trial never depends on TrainConfig's default decay
        fields.setdefault("lr_decay", 1.0)
        return fields

    def largest_batch(self) -> int:
        p = self.params["batch_size"]
        return int(p.value if p.kind == "fixed" else max(p.choices) if p.kind == "choice" else p.high)

    def searched(self) -> list[str]:
        """The parameters that vary from trial to trial (ranges and choices)."""
        return [name for name, p in self.params.items() if p.kind != "fixed"]


def labelled(config: dict, space: Space | None = None) -> str:
    """``Batch Size 64, Hidden Sizes [512], η 1.20e-03, β1 0.900, ...``: the homework's hyperparameters by
    their labels in :data:`RULES`, then every other option of ``config`` that the space searched or
    that is not off."""
    searched = set(space.searched()) if space is not None else set()
    parts = [f"{RULES[n].md} {fmt_value(n, config.get(n))}" if n != "layers" else
             f"Hidden Sizes {list(config['hidden_sizes'])}" for n in HOMEWORK]
    for name in PARAMS:
        if name in HOMEWORK or name == "width" or name not in config:
            continue
        on = config[name] != _DEFAULTS.get(name) and not (name == "lr_decay" and config[name] == 1.0)
        if on or (name in searched and (space is None or space.active(name, config))):
            parts.append(f"{RULES[name].md} {fmt_value(name, config[name])}")
    return ", ".join(parts)


def flag_help(name: str) -> str:
    """The help of ``fastmlp search --NAME``: what it is, how to write it, its default, when it is drawn."""
    rule, default = PARAMS[name], Space.default().params.get(name)
    shown = default.describe() if default else f"{_DEFAULTS.get(name, 1.0)}, not searched"
    when = f"; drawn only when {when_text(CONDITIONS[name])}" if name in CONDITIONS else ""
    return f"{rule.help}: VALUE, A,B,C{'' if rule.choices else ' or LO:HI'} (default {shown}){when}"


def read_space_file(path: str | os.PathLike, base: Space) -> Space:
    """A TOML (``.toml``) or JSON file of space entries applied over ``base`` (or over the built-in
    space its ``base`` key names)."""
    path = Path(path)
    mapping = read_table(path, "space file")
    if "base" in mapping:
        mapping = dict(mapping)
        name = mapping.pop("base")
        if name not in SPACES:
            raise ConfigError(f"{path}: base must be one of {', '.join(SPACES)}; got {name!r}")
        base = Space.named(name)
    return Space.from_mapping(mapping, base, where=str(path))


def build_space(base: Space, file: str | os.PathLike | None = None, flags: dict | None = None) -> Space:
    """``base``, then a built-in space named ``file`` (``plain``, ``recipe``) or the entries of a space
    file, then ``flags`` (name -> raw text), in that order."""
    if file is None:
        space = base
    elif str(file) in SPACES:
        space = Space.named(str(file))
    else:
        space = read_space_file(file, base)
    flags = {name: value for name, value in (flags or {}).items() if value is not None}
    return Space.from_mapping(flags, space, where="flags") if flags else space
