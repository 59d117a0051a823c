"""``fastmlp train``'s parser and settings: the flags of :data:`~fastmlp.config.RULES`, ``--preset``,
``--config`` files, ``--print-config`` and ``--resume``, and the lines a run prints.

The configuration of a run is, in order: the preset (``fast`` unless ``--preset`` says
otherwise), then the ``--config`` file, then every flag given explicitly. :mod:`fastmlp.cli`
runs the command and owns its exit codes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UsageError


def path_arg(text: str) -> str:
    """A path argument, refused when empty (an unset shell variable would otherwise name the
    current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (is a shell variable unset?)")
    return text


def positive_int_list(text: str) -> tuple[int, ...]:
    """``"512,256"`` -> (512, 256); one line naming the problem otherwise."""
    parts = text.split(",")
    try:
        sizes = tuple(int(s) for s in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 512,256; got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive integers; got {text!r}")
    return sizes


def add_data_args(p: argparse.ArgumentParser, dataset_default: str | None = "mnist") -> None:
    """``--dataset``, ``--data-dir`` and ``--no-verify``."""
    p.add_argument("--dataset", default=dataset_default, metavar="NAME",
                   help="mnist or fashion-mnist (default mnist)")
    add_data_dir_args(p)


def add_data_dir_args(p: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--no-verify``: where the datasets are, and whether to check them."""
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding <dataset>/ (default $FASTMLP_DATA_DIR, ./data)")
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification (custom data)")


#: Where ``fastmlp train`` writes a run without ``--out``.
DEFAULT_OUT = "runs/default"


def add_train_parser(sub) -> argparse.ArgumentParser:
    """The ``train`` subcommand: ``--preset``, ``--hidden``, one flag per rule of RULES that has one, the
    run's options. Every hyperparameter flag defaults to None (not given): the file's, the preset's or
    TrainConfig's value applies."""
    from .config import PRESETS, RULES, TrainConfig
    d = TrainConfig()
    p = sub.add_parser("train", help="train a model; writes history.json, metrics.csv, model.npz, curves.png",
                       description="Train an MLP. The settings are the preset's, then the --config file's, then "
                                   "the flags'. model.npz keeps the epoch of the best validation accuracy.")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="starting configuration: fast (the defaults: >= 98%% in seconds) or best (the most "
                        "accurate recipe, minutes; no validation hold-out); the file and the flags below override "
                        "its values (default fast)")
    p.add_argument("--config", default=None, type=path_arg, metavar="FILE",
                   help="a TOML or JSON file of settings (as --print-config writes them, or a run's history.json); "
                        "flags given explicitly override it")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as TOML (loadable by --config) and exit")
    p.add_argument("--hidden", type=positive_int_list, default=None, metavar="H1,H2,...",
                   help=f"hidden layer sizes (default {','.join(map(str, d.hidden_sizes))})")
    for rule in RULES.values():
        if rule.flag is None:
            continue
        default = getattr(d, rule.name)
        shown = f"{default:g}" if rule.type in (int, float) else default
        p.add_argument(rule.flag, dest=rule.name, type=rule.type, default=None,
                       choices=rule.choices or None, metavar=None if rule.choices else "N" if rule.type is int else "X",
                       help=f"{rule.help}{'' if rule.choices else ', ' + rule.range_text()} (default {shown})"
                       .replace("%", "%%"))
    add_data_args(p, dataset_default=None)
    p.add_argument("--out", default=None, type=path_arg, metavar="DIR",
                   help=f"output folder (default {DEFAULT_OUT}); a run replaces the files of the run before it there, "
                        f"never a folder's other files")
    p.add_argument("--resume", default=None, type=path_arg, metavar="DIR",
                   help="continue the run in DIR from its last completed epoch, with its own settings; --epochs, "
                        "--patience and --min-delta may change (to continue a run that ended, they must allow more; "
                        "--epochs of a cosine or onecycle run may not: its rates span the whole run)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads, 1 to 1024 (default: all cores or one, whichever trains faster as the run goes; "
                        "the results are the same either way)")
    return p


def given_flags(args) -> dict:
    """The configuration fields given explicitly on the command line."""
    from .config import RULES
    given = {name: getattr(args, name) for name, rule in RULES.items()
             if rule.flag is not None and getattr(args, name) is not None}
    if args.hidden is not None:
        given["hidden_sizes"] = tuple(args.hidden)
    if args.dataset is not None:
        given["dataset"] = args.dataset
    return given


def train_config_from_args(args):
    """The :class:`TrainConfig` of ``args``: the preset, then the ``--config`` file, then every flag given."""
    return resolve(args)[0]


def resolve(args):
    """``(config, origin, note)``: the :class:`TrainConfig` of a new run, what set its ``val_size`` (a flag,
    the file or the preset), for the messages about the validation hold-out, and the preset's line
    about a dataset without a recipe of its own ("" otherwise)."""
    from .config import TrainConfig, preset_settings, read_config_file, with_scaled_warmup
    preset = args.preset or "fast"
    from_file = read_config_file(args.config) if args.config is not None else {}
    given = given_flags(args)
    settings, note = preset_settings(preset, given.get("dataset", from_file.get("dataset", "mnist")))
    origin = ("--val-size 0" if "val_size" in given else f"{args.config} (val_size 0)" if "val_size" in from_file
              else f"--preset {preset}" if "val_size" in settings else "val_size 0")
    scaled = with_scaled_warmup(settings, {**from_file, **given})
    if scaled is not settings:
        note = "; ".join(filter(None, [note, f"--preset {preset}'s warm-up keeps its share of the epochs: "
                                              f"{scaled['warmup']:g} of {given.get('epochs', from_file.get('epochs'))} "
                                              f"({settings['warmup']:g} of its {settings['epochs']})"]))
    return TrainConfig(**{**scaled, **from_file, **given}), origin, note


def resumed_config(args):
    """The configuration of the run in ``args.resume``; flags may change only its stopping settings
    (:data:`~fastmlp.config.STOPPING`), or repeat its values."""
    from .config import STOPPING
    from .training.history import nothing_left
    from .training.runs import busy_writer, read_checkpoint
    for flag, value in (("--preset", args.preset), ("--config", args.config)):
        if value is not None:
            raise UsageError(f"{flag} cannot be given with --resume: the run keeps its own settings")
    if args.out is not None and not _same_folder(args.out, args.resume):
        raise UsageError(f"--resume {args.resume} continues the run in its own folder; --out {args.out} cannot "
                         f"move it (give --resume alone)")
    writer = busy_writer(args.resume)
    if writer is not None:  # its checkpoint may not exist yet, or be about to change
        raise UsageError(f"{args.resume}: another fastmlp run is writing this folder ({writer}); wait for it to end")
    checkpoint = read_checkpoint(args.resume)
    config = checkpoint.config
    for name, value in given_flags(args).items():
        if name not in STOPPING and value != getattr(config, name, None):
            raise UsageError(f"--resume continues {args.resume} with its own settings; {name} cannot change "
                             f"(it was {getattr(config, name, None)!r}; --epochs, --patience and --min-delta may)")
        setattr(config, name, value)
    refusal = nothing_left(args.resume, config, checkpoint.records)
    if refusal is not None:
        raise UsageError(refusal)
    return config


def settle(args):
    """``(config, out, origin, note)`` of the run ``args`` ask for (:func:`resolve`), checked: one line for
    any bad value."""
    if args.resume is not None:
        config, out, origin, note = resumed_config(args), Path(args.resume), "the run", ""
    else:
        (config, origin, note), out = resolve(args), Path(args.out if args.out is not None else DEFAULT_OUT)
    if config.patience and config.val_size == 0:
        raise UsageError(f"--patience needs a validation hold-out, and {origin} leaves none; give --val-size N "
                         f"(e.g. 5000)")
    if config.schedule != "decay" and config.warmup >= config.epochs:  # (a search may draw such trials)
        raise UsageError(f"--warmup {config.warmup:g} epochs is not shorter than --epochs {config.epochs}: the "
                         f"{config.schedule} schedule would never leave its warm-up")
    config.validate()
    return config, out, origin, note


def _same_folder(a: str, b: str) -> bool:
    """Whether two names give one folder (the same file when both exist, else the same absolute path)."""
    try:
        return Path(a).samefile(b)
    except OSError:
        return Path(a).absolute() == Path(b).absolute()


# ----------------------------------------------------------------------------- what a run prints

def start_lines(config, origin: str, train_images: int | None) -> list[str]:
    """The lines printed when a run starts: its settings, and what it keeps without a hold-out
    (``train_images``: how many it trains on, None when unknown before the data are read)."""
    lines = [f"fastmlp: hidden {list(config.hidden_sizes)}, batch {config.batch_size}, "
             f"lr {config.lr:g} ({_schedule_text(config)}), betas ({config.beta1:g}, {config.beta2:g}), "
             f"eps {config.eps:g}, {config.epochs} epochs, seed {config.seed}{_recipe_text(config)}"]
    if config.val_size == 0:
        images = "its training images" if train_images is None else f"{train_images:,} images"
        lines.append(f"{origin} trains on all {images}: no validation hold-out, the last epoch is kept")
    return lines


def end_lines(history, config, out: Path) -> list[str]:
    """The lines printed when a run ends: the kept model's test accuracy (measured once), the files."""
    kept = "best-validation model" if history.dataset.get("val_rows") else "last epoch's model"
    if history.test_acc is not None:
        test = (f"test accuracy of the {kept} (epoch {history.best_epoch}): {100 * history.test_acc:.2f}%"
                f"{' (averaged weights)' if config.ema > 0 else ''}")
    else:
        test = "no test set"
    files = ["history.json", "metrics.csv", f"model.npz (epoch {history.best_epoch})"]
    if (out / "last.npz").exists():
        files.append(f"last.npz (epoch {history.epochs[-1]['epoch']})")
    return [test, f"wrote {out}/: {', '.join([*files, 'curves.png'])}"]


def interrupted_line(interrupted, out: Path) -> str:
    """What a run stopped by Ctrl-C (a :class:`~fastmlp.training.train.RunInterrupted`) left in ``out``."""
    if interrupted.saved:
        return (f"fastmlp: interrupted; the run's files after epoch {interrupted.saved} are in {out}; continue with "
                f"fastmlp train --resume {out}")
    if not interrupted.begun:
        return f"fastmlp: interrupted before training started; nothing in {out} was changed"
    return (f"fastmlp: interrupted before the first epoch ended; {out} holds only history.json (no checkpoint "
            f"to resume from)")


def _schedule_text(c) -> str:
    if c.schedule == "decay":
        return f"x{c.lr_decay:g}/epoch"
    return f"{c.schedule}, warm-up {c.warmup:g} epochs, floor {c.lr_floor:g}"


def _recipe_text(c) -> str:
    """The options beyond the homework that are on, e.g. ``; augment elastic, dropout 0.1/0.3``."""
    parts = []
    if c.augment != "none":
        parts.append(f"augment {c.augment} (rotate {c.aug_rotate:g}, scale {c.aug_scale:g}, shear {c.aug_shear:g}, "
                     f"shift {c.aug_shift:g}" + (f", alpha {c.elastic_alpha:g}, sigma {c.elastic_sigma:g})"
                                                 if c.augment == "elastic" else ")"))
    for name, value in (("flip", c.flip), ("crop", c.crop), ("erase", c.erase)):
        if value:
            parts.append(f"{name} {value:g}")
    if c.dropout_input or c.dropout:
        parts.append(f"dropout {c.dropout_input:g}/{c.dropout:g}")
    for name, value in (("weight decay", c.weight_decay), ("max-norm", c.max_norm),
                        ("label smoothing", c.label_smoothing), ("ema", c.ema)):
        if value:
            parts.append(f"{name} {value:g}")
    if c.patience:
        parts.append(f"patience {c.patience}" + (f" (min-delta {c.min_delta:g})" if c.min_delta else ""))
    return "; " + ", ".join(parts) if parts else ""
