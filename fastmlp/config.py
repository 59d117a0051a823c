"""The training configuration and the one table of hyperparameter rules.

:data:`RULES` states, once, what each hyperparameter is: its type, its allowed range, its
labels (plain text, Markdown and LaTeX), its command-line flag, the scale a search draws it on,
and its help text. :class:`TrainConfig` checks itself against it, the command line builds its
flags from it, the search space checks its ranges with it, and the report labels its tables
with it (scikit-learn's ``_parameter_constraints`` is the model).

Importing this module is cheap (no NumPy, no Numba), so a command can reject a bad value at once.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .files import open_regular_file


def as_float32(x: float) -> float:
    """``x`` rounded to the nearest float32 (what the kernels compute with)."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # NumPy's bool without importing NumPy


def _is_whole(value: Any) -> bool:
    """An integer (Python's or NumPy's), or a float with no fraction (``512.0``); never a bool."""
    if _is_bool(value):
        return False
    return isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())


@dataclass(frozen=True)
class Rule:
    """What one hyperparameter may be.

    ``low``/``high`` bound the value (None: unbounded), each end open or closed. ``float32``:
    the value must stay inside the range once rounded to float32, so the kernels see what the
    reference sees (``beta2 = 0.9999999999`` is 1.0 in float32, and ``eps = 1e-50`` is 0).
    ``scale`` is how a search draws it: ``linear``, ``log`` or ``log1m`` (log-uniform in 1 - x).
    ``choices``: for a ``str`` rule, the values it may take (``low``/``high`` are then None).
    ``limit``: the largest value the kernels can take at all, apart from the range a person
    chooses in (said only to a value beyond it).
    """

    name: str
    type: type
    low: float | None
    high: float | None
    low_open: bool = False
    high_open: bool = False
    label: str = ""          # plain text, e.g. "beta1"
    tex: str = ""            # LaTeX, e.g. r"$\beta_1$"
    md: str = ""             # Markdown, e.g. "β1"
    flag: str | None = None  # the command line's flag, None for search-only entries
    scale: str = "linear"
    float32: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    limit: float | None = None

    def range_text(self) -> str:
        """``in (0, 1]``, ``>= 1``, ``> 0``, ``one of a, b, c``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{_num(self.low)}, "
                    f"{_num(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return "any number"

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` as this rule's type, or :class:`ConfigError` naming the rule and the value."""
        prefix = f"{where}: " if where else ""
        if self.choices:
            if value not in self.choices:
                raise ConfigError(f"{prefix}{self.name} must be {self.range_text()}; got {value!r}")
            return value
        kind = "an integer" if self.type is int else "a number"
        if _is_bool(value) or not isinstance(value, numbers.Real):  # NumPy's scalars are numbers too
            raise ConfigError(f"{prefix}{self.name} must be {kind} {self.range_text()}; got {value!r}")
        if isinstance(value, numbers.Integral) and int(value).bit_length() > 1000:  # beyond any float (1e308)
            raise ConfigError(f"{prefix}{self.name} must be {kind} {self.range_text()}; got an integer of "
                              f"{int(value).bit_length()} bits")
        if not math.isfinite(value):
            raise ConfigError(f"{prefix}{self.name} must be finite; got {value}")
        if self.type is int:
            if value != int(value):
                raise ConfigError(f"{prefix}{self.name} must be an integer {self.range_text()}; got {value}")
            value = int(value)
        else:
            value = float(value)
        if self.limit is not None and value > self.limit:
            raise ConfigError(f"{prefix}{self.name} must be <= {_num(self.limit)}, the largest the kernels take; "
                              f"got {_num(value)}")
        seen = [value]
        if self.float32:
            seen.append(as_float32(value))
            if not math.isfinite(seen[-1]):
                raise ConfigError(f"{prefix}{self.name} must be {self.range_text()}; got {_num(value)} (it is "
                                  f"{_num(seen[-1])} in float32, which the kernels compute in)")
        for v in seen:
            bad = ((self.low is not None and (v < self.low or (self.low_open and v == self.low)))
                   or (self.high is not None and (v > self.high or (self.high_open and v == self.high))))
            if bad:
                rounded = "" if v is value else f" (it is {_num(v)} in float32, which the kernels compute in)"
                raise ConfigError(f"{prefix}{self.name} must be {self.range_text()}; got {_num(value)}{rounded}")
        return value


def physical_memory() -> int:
    """This machine's memory in bytes (0 when unknown)."""
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _bytes(n: int) -> str:
    if n >= 1024 ** 6:  # a float could not hold it
        return "over 1024 PiB"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


_RULES = [
    Rule("batch_size", int, 1, None, label="batch size", tex="Batch Size", md="Batch Size", flag="--batch-size",
         scale="log", help="mini-batch size"),
    Rule("layers", int, 1, None, label="hidden layers", tex="Hidden layers", md="Hidden layers", scale="linear",
         help="number of hidden layers (search only)"),
    Rule("width", int, 1, None, label="hidden width", tex="Hidden width", md="Hidden width", scale="log",
         help="width of one hidden layer (--hidden gives all of them)"),
    Rule("lr", float, 0, None, low_open=True, label="eta", tex=r"$\eta$", md="η", flag="--lr", scale="log",
         float32=True, help="Adam step size eta"),
    Rule("beta1", float, 0, 1, high_open=True, label="beta1", tex=r"$\beta_1$", md="β1", flag="--beta1",
         float32=True, help="Adam beta1"),
    Rule("beta2", float, 0, 1, high_open=True, label="beta2", tex=r"$\beta_2$", md="β2", flag="--beta2",
         scale="log1m", float32=True, help="Adam beta2"),
    Rule("eps", float, 0, None, low_open=True, label="epsilon", tex=r"$\epsilon$", md="ε", flag="--eps",
         scale="log", float32=True, help="Adam epsilon"),
    Rule("lr_decay", float, 0, 1, low_open=True, label="eta decay", tex=r"$\eta$ decay", md="η decay",
         flag="--lr-decay", float32=True, help="multiply eta by this after every epoch; 1 keeps it constant"),
    Rule("alpha", float, 0, None, label="L2 penalty", tex=r"$\alpha$", md="α", flag="--alpha", float32=True,
         help="L2 penalty on the weights, for parity with scikit-learn's alpha (for Adam training use "
              "--weight-decay): a batch of m rows adds alpha/(2m) sum ||W||^2 to its loss; 0 turns it off"),
    Rule("schedule", str, None, None, label="eta schedule", tex=r"$\eta$ schedule", md="η schedule",
         flag="--schedule", choices=("decay", "cosine", "onecycle"),
         help="eta per epoch times --lr-decay (decay), or per step: linear warm-up then a half cosine "
              "(cosine), or a cosine rise from eta/25 then a half cosine (onecycle), down to eta * --lr-floor"),
    Rule("warmup", float, 0, None, label="warm-up epochs", tex="warm-up epochs", md="warm-up epochs",
         flag="--warmup", help="epochs of warm-up of the cosine and onecycle schedules (may be fractional)"),
    Rule("lr_floor", float, 0, 1, label="eta floor", tex=r"$\eta$ floor", md="η floor", flag="--lr-floor",
         help="where the cosine and onecycle schedules end, as a fraction of eta"),
    Rule("weight_decay", float, 0, None, label="weight decay", tex="weight decay", md="weight decay",
         flag="--weight-decay", scale="log", help="decoupled weight decay of the weights, not the biases (AdamW): "
                                                   "the decay to use for Adam training (--alpha is scikit-learn's "
                                                   "L2 penalty, for parity with it)"),
    Rule("max_norm", float, 0, None, label="max-norm", tex="max-norm", md="max-norm", flag="--max-norm",
         help="largest L2 norm of a hidden unit's incoming weights; 0 for none"),
    Rule("dropout_input", float, 0, 1, high_open=True, label="input dropout", tex="input dropout",
         md="input dropout", flag="--dropout-input", float32=True, help="dropout probability of the input pixels"),
    Rule("dropout", float, 0, 1, high_open=True, label="dropout", tex="hidden dropout", md="hidden dropout",
         flag="--dropout", float32=True, help="dropout probability of every hidden layer's units"),
    Rule("label_smoothing", float, 0, 1, high_open=True, label="label smoothing", tex="label smoothing",
         md="label smoothing", flag="--label-smoothing", float32=True, help="weight of the uniform target in the loss"),
    Rule("ema", float, 0, 1, high_open=True, label="weight averaging", tex="EMA decay", md="EMA decay",
         flag="--ema", scale="log1m", float32=True, help="decay of an exponential moving average of the parameters, used "
                                            "to evaluate and save; 0 for none"),
    Rule("augment", str, None, None, label="augmentation", tex="augmentation", md="augmentation",
         flag="--augment", choices=("none", "affine", "elastic"),
         help="random warp of every training image: none, affine, or elastic (affine then elastic)"),
    Rule("aug_rotate", float, 0, 180, label="rotation", tex="rotation (deg)", md="rotation (°)",
         flag="--aug-rotate", help="largest rotation, degrees"),
    Rule("aug_scale", float, 0, 1, high_open=True, label="scaling", tex="scaling", md="scaling",
         flag="--aug-scale", float32=True, help="largest relative change of size"),
    Rule("aug_shear", float, 0, None, label="shear", tex="shear", md="shear", flag="--aug-shear",
         help="largest horizontal shear factor"),
    # A shift by a 28x28 image's whole side leaves nothing of it (here and in crop).
    Rule("aug_shift", float, 0, 27, label="shift", tex="shift (px)", md="shift (px)", flag="--aug-shift",
         help="largest shift along each axis, pixels"),
    Rule("elastic_alpha", float, 0, None, label="elastic alpha", tex=r"elastic $\alpha$", md="elastic α",
         flag="--elastic-alpha", help="scale of the elastic displacement field (Simard et al. 2003)"),
    # Wider than a 28x28 image, the Gaussian smooths the field into a uniform shift (and its taps grow with sigma).
    Rule("elastic_sigma", float, 1, 28, label="elastic sigma", tex=r"elastic $\sigma$", md="elastic σ",
         flag="--elastic-sigma", help="width of the Gaussian smoothing the elastic field, pixels"),
    Rule("flip", float, 0, 1, label="flip", tex="flip", md="flip", flag="--flip",
         help="chance of flipping a training image left to right (clothes, not digits)"),
    Rule("crop", int, 0, 27, label="crop", tex="crop (px)", md="crop (px)", flag="--crop",
         help="largest shift of a training image by whole pixels, zeros shifted in (a crop with padding)"),
    Rule("erase", float, 0, 1, label="random erasing", tex="random erasing", md="random erasing", flag="--erase",
         help="chance of zeroing a random rectangle of 2-40%% of a training image (random erasing)"),
    Rule("epochs", int, 1, None, label="epochs", tex="num epochs", md="num epochs", flag="--epochs",
         help="passes over the training set"),
    Rule("patience", int, 0, None, label="patience", tex="patience", md="patience", flag="--patience",
         help="stop once the validation accuracy has not risen above its best by more than --min-delta for this "
              "many epochs; 0 turns early stopping off"),
    Rule("min_delta", float, 0, None, label="min. improvement", tex="min.\\ improvement", md="min. improvement",
         flag="--min-delta", help="the least rise of the validation accuracy, as a fraction (0.001 is 0.1 "
                                  "point), that counts as an improvement for --patience"),
    Rule("seed", int, 0, None, label="seed", tex="seed", md="seed", flag="--seed", help="random seed",
         limit=2**63 - 1),  # the kernels take it as a 64-bit signed integer
    Rule("val_size", int, 0, None, label="validation size", tex="validation images", md="validation images",
         flag="--val-size", help="training images held out for validation"),
]

#: name -> :class:`Rule`, in the order tables show them.
RULES: dict[str, Rule] = {r.name: r for r in _RULES}


def check_adam_hyperparameters(lr: float, beta1: float, beta2: float, eps: float) -> None:
    """Raise :class:`ConfigError` naming the first bad value."""
    for name, value in (("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps)):
        RULES[name].check(value)


@dataclass
class TrainConfig:
    """The homework's hyperparameters, plus the seed and the validation hold-out size."""

    # The defaults are `make train`'s: past 98% test accuracy on MNIST within three epochs.
    hidden_sizes: tuple[int, ...] = (1024,)
    batch_size: int = 64
    lr: float = 1.5e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    epochs: int = 8
    lr_decay: float = 0.7   # eta is multiplied by this after every epoch; 1 keeps it constant
    alpha: float = 0.0      # L2 penalty on the weights, as scikit-learn's MLPClassifier(alpha=...)
    seed: int = 0
    val_size: int = 5000
    dataset: str = "mnist"
    # The training recipe beyond the homework: every option off by default (the plain recipe).
    schedule: str = "decay"      # decay: lr * lr_decay ** (epoch - 1); cosine, onecycle: per step
    warmup: float = 0.0          # epochs
    lr_floor: float = 0.0
    weight_decay: float = 0.0
    max_norm: float = 0.0
    dropout_input: float = 0.0
    dropout: float = 0.0
    label_smoothing: float = 0.0
    ema: float = 0.0
    augment: str = "none"
    aug_rotate: float = 12.0
    aug_scale: float = 0.1
    aug_shear: float = 0.15
    aug_shift: float = 2.5
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0
    flip: float = 0.0
    crop: int = 0
    erase: float = 0.0
    # Early stopping on the validation accuracy: off by default.
    patience: int = 0            # epochs without an improvement before the run stops; 0: never
    min_delta: float = 0.0       # the least rise of the validation accuracy that counts

    def __post_init__(self):
        sizes = self.hidden_sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__") or not all(map(_is_whole, sizes)):
            raise ConfigError(f"hidden_sizes must be a list of positive integers; got {sizes!r}")
        self.hidden_sizes = tuple(int(h) for h in sizes)

    def validate(self, n_train: int | None = None) -> TrainConfig:
        """Check every field against :data:`RULES`; raise :class:`ConfigError` naming the first bad value."""
        if len(self.hidden_sizes) == 0:
            raise ConfigError("hidden_sizes must be one or more positive integers; got []")
        if not all(0 < h < 2 ** 31 for h in self.hidden_sizes):
            shown = [h if abs(h) < 10 ** 12 else f"an integer of {h.bit_length()} bits" for h in self.hidden_sizes]
            raise ConfigError(f"hidden_sizes must be positive integers below 2**31; got {shown}")
        for name, rule in RULES.items():
            if hasattr(self, name):
                setattr(self, name, rule.check(getattr(self, name)))
        if self.patience and self.val_size == 0:
            raise ConfigError(f"patience {self.patience} needs a validation hold-out, but val_size is 0")
        if n_train is not None:
            if self.val_size >= n_train:
                raise ConfigError(f"val_size {self.val_size} leaves no training images out of {n_train}")
            if self.batch_size > n_train - self.val_size:
                raise ConfigError(f"batch_size {self.batch_size} is larger than the training set "
                                  f"({n_train - self.val_size} images)")
        return self

    def layer_sizes(self, n_features: int, n_classes: int) -> list[int]:
        return [int(n_features), *self.hidden_sizes, int(n_classes)]

    def memory_needed(self, n_features: int, n_classes: int) -> int:
        """Bytes of float32 buffers a run allocates: parameters, gradients, Adam's m and v, activations."""
        sizes = self.layer_sizes(n_features, n_classes)
        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        activations = (self.batch_size + 256) * (sizes[0] + 3 * sum(sizes[1:]))  # training + evaluation
        return 4 * (4 * n_params + activations)

    def check_memory(self, n_features: int, n_classes: int, available: int | None = None) -> None:
        """:class:`ConfigError` when the run's buffers would not fit in this machine's memory."""
        available = physical_memory() if available is None else available
        need = self.memory_needed(n_features, n_classes)
        if available and need > available:
            raise ConfigError(f"hidden sizes {list(self.hidden_sizes)} with batch size {self.batch_size} need "
                              f"{_bytes(need)} for parameters, gradients, Adam's moments and activations; this "
                              f"machine has {_bytes(available)} of memory")
    @property
    def regularized(self) -> bool:
        """True when training batches are augmented or dropped out (their accuracy is not clean)."""
        return self.augmented or self.dropout_input > 0 or self.dropout > 0

    @property
    def augmented(self) -> bool:
        """True when training images are warped, flipped, cropped or erased."""
        return self.augment != "none" or self.flip > 0 or self.crop > 0 or self.erase > 0

    @classmethod
    def preset(cls, name: str, **overrides) -> TrainConfig:
        """The configuration of :data:`PRESETS` ``name`` for ``overrides["dataset"]`` (MNIST by
        default; :func:`preset_settings`), with ``overrides`` on top."""
        settings, _ = preset_settings(name, overrides.get("dataset", "mnist"))
        return cls(**{**with_scaled_warmup(settings, overrides), **overrides})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    def to_toml(self) -> str:
        """Every field as TOML, which :func:`read_config_file` reads back into this configuration."""
        lines = ["# fastmlp train --config FILE: a training configuration (fastmlp train --print-config)"]
        lines += [f"{name} = {toml_value(value)}" for name, value in self.to_dict().items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


#: The settings of when a run stops: a resumed run may change them (and only them).
STOPPING = ("epochs", "patience", "min_delta")


# ----------------------------------------------------------------------------- configuration files

def toml_value(v) -> str:
    """``v`` (a number, string, list or table of them) as a TOML value."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    return str(v)


class _NotRegular(Exception):
    """A file :func:`read_table` refuses: a pipe, a device, a folder."""


def read_table(path: str | os.PathLike, what: str) -> dict:
    """The table of a TOML file, or the object of a JSON one (``.json``), read as UTF-8 text.

    ``what`` names the kind of file in the messages: every problem (no such file, not a regular
    file, not UTF-8, not valid TOML or JSON, not a table) is one :class:`ConfigError` line naming
    the file. A named pipe or a device is refused at once, not waited on or read without end.
    """
    path = Path(path)
    try:
        with open_regular_file(path, _NotRegular) as fh:
            text = fh.read().decode("utf-8")
    except _NotRegular:
        raise ConfigError(f"{path}: the {what} is not a regular file") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None
    try:
        mapping = _parse_table(path, text)
    except RecursionError:  # "[[[[...]]]]" hundreds deep: the parsers recurse
        raise ConfigError(f"{path}: values nested too deeply for a {what}") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path}: the {what} must be a table of keys and values; got {type(mapping).__name__}")
    return mapping


def _parse_table(path: Path, text: str):
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({str(exc).splitlines()[0]})") from None


def read_config_file(path: str | os.PathLike) -> dict:
    """The :class:`TrainConfig` fields a TOML or JSON file sets, each checked against :data:`RULES`.

    The file is a table of fields (as ``--print-config`` writes it), or a run's ``history.json``
    (its ``config`` object is read), or that object alone. An unknown key, a value of the wrong
    type or out of range is one :class:`ConfigError` line naming the file and the key.
    """
    mapping = read_table(path, "configuration file")
    fields = list(TrainConfig.__dataclass_fields__)
    if isinstance(mapping.get("config"), dict):  # a whole history.json: its other keys are its records
        # (a history's "epochs" is a list of records, its "dataset" an object: not settings)
        beside = sorted(k for k, v in mapping.items()
                        if k in fields and (k == "hidden_sizes" or not isinstance(v, (list, dict))))
        if beside:
            raise ConfigError(f"{path}: holds a [config] table and settings beside it ({', '.join(beside)}); "
                              f"give the settings in one place")
        mapping = mapping["config"]
    values = {}
    for key, value in mapping.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean {near[0]!r}?" if near else "fastmlp train --print-config lists the keys"
            raise ConfigError(f"{path}: unknown key {key!r} ({hint})")
        values[key] = _checked_field(key, value, str(path))
    return values


def _checked_field(key: str, value: Any, where: str) -> Any:
    """One field of a configuration file as :class:`TrainConfig` holds it; ConfigError otherwise."""
    if key == "hidden_sizes":
        if (not isinstance(value, list) or not value
                or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in value)):
            raise ConfigError(f"{where}: hidden_sizes must be a list of positive integers like [512, 256]; "
                              f"got {value!r}")
        return tuple(value)
    if key == "dataset":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: dataset must be a dataset's name like \"mnist\"; got {value!r}")
        return value
    return RULES[key].check(value, where)


#: Named configurations for ``fastmlp train --preset NAME``; explicit flags override them.
#: ``fast``: the defaults (past 98% test accuracy on MNIST in seconds). ``best``: the recipe chosen
#: on each dataset's validation hold-out (docs/recipe.md), trained on all its training images; a
#: dataset without its own takes ``"*"``, the recipe without image-specific transforms.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {},
    "best": {
        "mnist": dict(hidden_sizes=(1024, 1024), batch_size=128, lr=2e-3, epochs=120, val_size=0,
                      schedule="onecycle", warmup=36.0, lr_floor=0.0, weight_decay=1e-4, label_smoothing=0.05,
                      ema=0.999, augment="elastic", elastic_alpha=16.0, elastic_sigma=4.0),
        "fashion-mnist": dict(hidden_sizes=(1024, 1024), batch_size=128, lr=2e-3, epochs=40, val_size=0,
                              schedule="onecycle", warmup=12.0, lr_floor=0.0, weight_decay=1e-4,
                              label_smoothing=0.05, ema=0.999, flip=0.5),
        "*": dict(hidden_sizes=(1024, 1024), batch_size=128, lr=2e-3, epochs=40, val_size=0, schedule="onecycle",
                  warmup=12.0, lr_floor=0.0, weight_decay=1e-4, label_smoothing=0.05, ema=0.999),
    },
}


def with_scaled_warmup(settings: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A preset's ``settings`` for the ``overrides`` given: when they change its epochs and not its
    warm-up, the warm-up keeps its share of the run (36 of 120 epochs: 6 of 20), as a schedule over
    the whole run needs; otherwise the settings as they are."""
    if ("epochs" not in overrides or "warmup" in overrides or not settings.get("warmup")
            or overrides.get("schedule", settings.get("schedule")) == "decay"):
        return settings
    share = settings["warmup"] / settings["epochs"]
    return {**settings, "warmup": round(share * overrides["epochs"], 6)}


def preset_settings(name: str, dataset: str = "mnist") -> tuple[dict[str, Any], str]:
    """``(settings, note)``: preset ``name``'s settings for ``dataset``, and a line saying which
    dataset's recipe they are when the dataset has none of its own (else "")."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
    preset = PRESETS[name]
    if "*" not in preset:  # one configuration for every dataset
        return dict(preset), ""
    if dataset in preset:
        return dict(preset[dataset]), ""
    return dict(preset["*"]), (f"--preset {name} has no recipe chosen for {dataset}: it trains the recipe "
                               f"without image-specific warps or transforms")
