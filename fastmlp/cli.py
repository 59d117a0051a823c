"""The ``fastmlp`` command: train, evaluate, gradcheck, data, search, dashboard, report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .version import __version__
from .errors import UsageError, UserError

T_LAUNCH = time.perf_counter()

class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line like every other user error (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"fastmlp: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- train, evaluate, gradcheck, data


def _positive_int_list(text: str) -> tuple[int, ...]:
    """``"512,256"`` -> (512, 256); one line naming the problem otherwise."""
    parts = text.split(",")
    try:
        sizes = tuple(int(s) for s in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 512,256; got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive integers; got {text!r}")
    return sizes


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """``--preset``, ``--hidden`` and one flag per rule of :data:`fastmlp.config.RULES` that has one.

    Every flag defaults to None (not given): the preset's value, else TrainConfig's, applies.
    """
    from .config import PRESETS, RULES, TrainConfig
    d = TrainConfig()
    p.add_argument("--preset", choices=list(PRESETS), default="fast",
                   help="starting configuration: fast (the defaults: >= 98%% in seconds) or best (the most "
                        "accurate recipe, minutes); the flags below override its values (default fast)")
    p.add_argument("--hidden", type=_positive_int_list, default=None, metavar="H1,H2,...",
                   help=f"hidden layer sizes (default {','.join(map(str, d.hidden_sizes))})")
    for rule in RULES.values():
        if rule.flag is None:
            continue
        default = getattr(d, rule.name)
        shown = f"{default:g}" if rule.type in (int, float) else default
        p.add_argument(rule.flag, dest=rule.name, type=rule.type, default=None,
                       choices=rule.choices or None, metavar=None if rule.choices else "N" if rule.type is int else "X",
                       help=f"{rule.help}{'' if rule.choices else ', ' + rule.range_text()} (default {shown})")


def train_config_from_args(args):
    """The :class:`TrainConfig` of ``args``: the preset, then every flag given explicitly."""
    from .config import RULES, TrainConfig
    given = {name: getattr(args, name) for name, rule in RULES.items()
             if rule.flag is not None and getattr(args, name) is not None}
    if args.hidden is not None:
        given["hidden_sizes"] = args.hidden
    return TrainConfig.preset(args.preset, dataset=args.dataset, **given)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist (default mnist)")
    p.add_argument("--data-dir", default=None, help="folder holding <dataset>/ (default $FASTMLP_DATA_DIR, ./data)")
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification (custom data)")


def _threads(n: int | None):
    """Fix the run's thread count (None: the trainer chooses; see fastmlp.threads)."""
    if n is None:
        return None
    if n < 1:
        raise UsageError(f"--threads must be >= 1; got {n}")
    from .threads import limit_threads
    return limit_threads(n)


def _load(args):
    from .data import load_dataset
    return load_dataset(args.dataset, args.data_dir, verify=not args.no_verify, download=True)


def _resumed_config(args):
    """The configuration of the run in ``args.resume``; flags may only raise --epochs (or repeat the run's values)."""
    from .config import RULES, TrainConfig
    from .runs import CHECKPOINT, load_checkpoint
    _, meta = load_checkpoint(Path(args.resume) / CHECKPOINT)
    try:
        config = TrainConfig.from_dict(meta.get("config") or {})
    except (TypeError, ValueError):
        raise UsageError(f"{args.resume}: the checkpoint's configuration is not readable") from None
    given = {name: getattr(args, name) for name, rule in RULES.items()
             if rule.flag is not None and getattr(args, name) is not None}
    if args.hidden is not None:
        given["hidden_sizes"] = tuple(args.hidden)
    if args.preset != "fast":
        raise UsageError("--preset cannot be given with --resume: the run keeps its own settings")
    for name, value in given.items():
        if name != "epochs" and value != getattr(config, name, None):
            raise UsageError(f"--resume continues {args.resume} with its own settings; {name} cannot change "
                             f"(it was {getattr(config, name, None)!r})")
    if args.epochs is not None:
        config.epochs = args.epochs
    return config


def cmd_train(args) -> int:
    from .data import BackgroundLoad, get_spec
    if args.resume is not None:
        config = _resumed_config(args)
        out = Path(args.resume)
    else:
        config = train_config_from_args(args)
        out = Path(args.out)
    config.validate()
    spec = get_spec(config.dataset)
    config.check_memory(spec.rows * spec.cols, spec.num_classes)
    from .runs import check_writable
    check_writable(out)  # at once, not after an epoch of training
    limiter = _threads(args.threads)
    data = BackgroundLoad(config.dataset, args.data_dir, verify=not args.no_verify, download=True)
    from .train import TrainingDiverged, train, Progress  # imports Numba while the data load
    print(f"fastmlp: hidden {list(config.hidden_sizes)}, batch {config.batch_size}, "
          f"lr {config.lr:g} ({_schedule_text(config)}), betas ({config.beta1:g}, {config.beta2:g}), "
          f"eps {config.eps:g}, {config.epochs} epochs, seed {config.seed}{_recipe_text(config)}", flush=True)

    def log(line: str) -> None:
        stamp = f"  [{time.perf_counter() - T_LAUNCH:6.1f}s since launch]" if line.startswith("epoch") else ""
        print(line + stamp, flush=True)

    try:
        result = train(config, data, verify=not args.no_verify, out_dir=out, resume=args.resume is not None,
                       progress=Progress(), log=log)
    except TrainingDiverged as exc:
        print(f"fastmlp: error: {exc}; history so far in {out / 'history.json'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nfastmlp: interrupted; history and model so far in {out}; continue with "
              f"fastmlp train --resume {out}", file=sys.stderr)
        return 130
    finally:
        if limiter is not None:
            limiter.unregister()
    last = result.history.epochs[-1] if result.history.epochs else {}
    test = (f"test accuracy {100 * last['test_acc']:.2f}%{' (averaged weights)' if config.ema > 0 else ''}"
            if last.get("test_acc") is not None else "no test set")
    print(f"{test}; wrote {out / 'history.json'}, {out / 'model.npz'}, {out / 'curves.png'}")
    return 0


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
    if c.dropout_input or c.dropout:
        parts.append(f"dropout {c.dropout_input:g}/{c.dropout:g}")
    for name, value in (("weight decay", c.weight_decay), ("max-norm", c.max_norm),
                        ("label smoothing", c.label_smoothing), ("ema", c.ema)):
        if value:
            parts.append(f"{name} {value:g}")
    if c.val_size == 0:
        parts.append("no validation hold-out")
    return "; " + ", ".join(parts) if parts else ""


def cmd_evaluate(args) -> int:
    from .data import validation_split
    from .model import MLP
    model, meta = MLP.load(args.model)
    if args.dataset is None:
        args.dataset = meta.get("config", {}).get("dataset", "mnist")
    dataset = _load(args)
    if dataset.num_features != model.sizes[0] or dataset.num_classes != model.sizes[-1]:
        raise UsageError(f"{args.model}: model sizes {model.sizes} do not fit {dataset.name} "
                       f"({dataset.num_features} features, {dataset.num_classes} classes)")
    val_size = int(meta.get("config", {}).get("val_size", 0))
    fit_idx, val_idx = validation_split(len(dataset.train_images), val_size)
    rows = [("train", dataset.train_images, dataset.train_labels, fit_idx),
            ("validation", dataset.train_images, dataset.train_labels, val_idx),
            ("test", dataset.test_images, dataset.test_labels, None)]
    print(f"{args.model}: sizes {model.sizes}, epoch {meta.get('epoch')}")
    for name, images, labels, idx in rows:
        if idx is not None and len(idx) == 0:
            continue
        loss, acc = model.evaluate(images, labels, idx)
        print(f"  {name:<10} loss {loss:.4f}  accuracy {100 * acc:6.2f}%")
    return 0


def cmd_gradcheck(args) -> int:
    from . import reference
    print("finite-difference gradient check of the reference network (float64, central differences):")
    results = reference.test_cases(verbose=True)
    failed = [r.name for r in results if not r.passed]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print(f"all {len(results)} gradients agree")
    return 0


def cmd_data(args) -> int:
    from .data import DATASETS, download_dataset, find_dataset_dir, get_spec, load_dataset
    if args.action == "download":
        names = args.names or ["mnist"]
        for name in names:
            spec = get_spec(name)
            found = find_dataset_dir(spec, args.data_dir)
            if found is not None and not args.force:
                load_dataset(name, args.data_dir)  # verifies
                print(f"{name}: already present and verified in {found}")
                continue
            target = Path(args.data_dir) if args.data_dir else None
            folder = download_dataset(name, target)
            print(f"{name}: downloaded and verified into {folder}")
    else:  # info
        for name in args.names or sorted(DATASETS):
            spec = get_spec(name)
            folder = find_dataset_dir(spec, args.data_dir)
            if folder is None:
                print(f"{name}: not found (fastmlp data download {name})")
                continue
            ds = load_dataset(name, args.data_dir, verify=not args.no_verify)
            print(f"{name}: {folder}: {len(ds.train_images)} train, {len(ds.test_images)} test images, verified"
                  if not args.no_verify else f"{name}: {folder}: read without checksum verification")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fastmlp", description="Train MLPs on MNIST-like data, fast, on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("train", help="train a model; writes history.json, model.npz, curves.png")
    _add_train_args(p)
    _add_data_args(p)
    p.add_argument("--out", default="runs/default", help="output folder (default runs/default)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last completed epoch (with its own settings; "
                        "--epochs may raise the total)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads (default: all cores or one, whichever trains faster as the run goes; "
                        "the results are the same either way)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="loss and accuracy of a saved model")
    p.add_argument("model", help="a model.npz written by fastmlp train")
    p.add_argument("--dataset", default=None, help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-verify", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("gradcheck", help="finite-difference check of the reference gradients")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("data", help="download or inspect datasets")
    p.add_argument("action", choices=["download", "info"])
    p.add_argument("names", nargs="*", help="dataset names (default mnist for download, all for info)")
    p.add_argument("--data-dir", default=None, help="base folder (default $FASTMLP_DATA_DIR, then ./data)")
    p.add_argument("--force", action="store_true", help="download even when the files are present")
    p.add_argument("--no-verify", action="store_true")
    p.set_defaults(func=cmd_data)

    _add_search_parser(sub)
    _add_dashboard_parser(sub)
    _add_report_parser(sub)
    _add_predict_export_parsers(sub)
    return parser


# ----------------------------------------------------------------------------- search and report

def _at_least_one(args, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1; got {value}")


def _add_search_parser(sub) -> None:
    from .dashboard import DEFAULT_PORT
    from .space import BUDGET_KEYS, DEFAULT_SPACE, PARAMS, SPACES, flag_help
    from .study import DEFAULT_PRUNER, DEFAULT_STORAGE, PRUNERS
    p = sub.add_parser(
        "search", help="hyperparameter search (Optuna) for the best validation accuracy",
        description="Search batch size, hidden sizes, eta, beta1, beta2, epsilon, or the whole training recipe too "
                    "(--space recipe), for the best validation accuracy, with epochs as the budget a pruner cuts; an "
                    "option that does nothing unless another has some value is drawn only then (in a space file: "
                    "when = { P = V }). The same command again resumes the study; --dashboard shows it in a browser.")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"Optuna RDB URL or SQLite file (default {DEFAULT_STORAGE}); e.g. "
                        "postgresql://user@host/db to share one study between machines")
    p.add_argument("--study-name", default=None, metavar="NAME", help="study to create or resume (default: the dataset name)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this long; a trial still running is stopped after its current epoch "
                        "and queued again (default: no limit)")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="run this many trials from this command, then stop (default: no limit)")
    p.add_argument("--max-trials", type=int, default=None, metavar="N",
                   help="stop every worker, on every machine, once the study holds N finished (complete or "
                        "pruned) trials (default: no limit)")
    p.add_argument("--status", action="store_true",
                   help="print the study's trials by state and its best trial, and exit")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes on this machine (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads per worker (default: cores // jobs)")
    g = p.add_argument_group("the space (over the default, or the study's own when resuming)")
    g.add_argument("--space", default=None, metavar="NAME|FILE",
                   help=f"a built-in space ({', '.join(SPACES)}: the default) or a TOML or JSON file of space "
                        f"entries over the default (its base = \"recipe\" starts from the recipe space)")
    for name in PARAMS:
        g.add_argument("--" + name.replace("_", "-"), dest=f"space_{name}", default=None, metavar="SPEC",
                       help=flag_help(name).replace("%", "%%"))
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
    g.add_argument("--dashboard", nargs="?", type=int, const=DEFAULT_PORT, default=None, metavar="PORT",
                   help=f"serve fastmlp dashboard on 127.0.0.1:PORT while the search runs (default {DEFAULT_PORT})")
    _add_data_args(p)
    p.set_defaults(func=cmd_search, space_keys=(*PARAMS, *BUDGET_KEYS))


def _add_dashboard_parser(sub) -> None:
    from .dashboard import DEFAULT_HOST, DEFAULT_PORT
    from .study import DEFAULT_STORAGE
    p = sub.add_parser("dashboard", help="watch a search in the browser (optuna-dashboard)", description=(
        "Serve optuna-dashboard on a search's storage until Ctrl-C (pip install 'fastmlp[dashboard]')."))
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL", help=f"default {DEFAULT_STORAGE}")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P", help=f"default {DEFAULT_PORT}; 0: a free one")
    p.set_defaults(func=cmd_dashboard)


def _add_report_parser(sub) -> None:
    from .study import DEFAULT_STORAGE
    p = sub.add_parser("report", help="report of a search: report.md, report.tex (and .pdf), plots",
                       description="Write the report of a search: every trial and plots of the search, the best "
                                   "hyperparameters, and the best configuration trained again with its test "
                                   "accuracy, as Markdown and LaTeX (and PDF when pdflatex is installed).")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"the search's Optuna storage (default {DEFAULT_STORAGE})")
    p.add_argument("--study-name", default=None, metavar="NAME",
                   help="the study (default: the only one in the storage, else mnist)")
    p.add_argument("--out", default="report", help="output folder (default report)")
    p.add_argument("--title", default=None, metavar="TEXT",
                   help="the report's title (default: Hyperparameter search for a multi-layer perceptron on "
                        "DATASET)")
    p.add_argument("--author", default="", metavar="NAME", help="the author under the title (default: none)")
    p.add_argument("--no-retrain", action="store_true",
                   help="do not train the best configuration again (no test accuracy)")
    p.add_argument("--no-pdf", action="store_true", help="do not run pdflatex even when it is installed")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for the retraining (default: as fastmlp train)")
    p.add_argument("--data-dir", default=None, help="folder holding <dataset>/ (default $FASTMLP_DATA_DIR, ./data)")
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification (custom data)")
    p.set_defaults(func=cmd_report)


def _say(line: str) -> None:
    print(line, flush=True)


def _search_settings(args):
    """The search settings the flags ask for, over the study's stored ones (ConfigError on a bad value)."""
    from .space import Space, build_space
    from .study import open_storage, resolve_settings, stored_settings
    flags = {name: getattr(args, f"space_{name}") for name in args.space_keys}
    build_space(Space.default(), args.space, flags)  # a bad file or flag is reported before any storage is touched
    stored = stored_settings(open_storage(args.storage), args.study_name)
    return resolve_settings(stored, storage=args.storage, study_name=args.study_name, space_file=args.space,
                            space_flags=flags, pruner=args.pruner, seed=args.seed, subset=args.subset,
                            val_size=args.val_size, dataset=args.dataset, data_dir=args.data_dir,
                            verify=not args.no_verify)


def cmd_search(args) -> int:
    """``fastmlp search``: create or resume the study, run the workers, print a summary."""
    _at_least_one(args, "jobs", "threads", "trials", "max_trials")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds; got {args.timeout:g}")
    if args.study_name is None:
        args.study_name = args.dataset or "mnist"
    if args.print_space:
        from .space import Space, build_space
        flags = {name: getattr(args, f"space_{name}") for name in args.space_keys}
        print(build_space(Space.default(), args.space, flags).to_toml(), end="")
        return 0
    if args.seed is not None:
        from .config import RULES
        RULES["seed"].check(args.seed)
    from .study import storage_errors
    if args.status:
        from .study import load_study, open_storage, summary
        with storage_errors(args.storage):
            print(summary(load_study(open_storage(args.storage, heartbeat=False, create=False), args.study_name)))
        return 0
    with storage_errors(args.storage):
        settings = _search_settings(args)
    from .dashboard import start
    dashboard = None if args.dashboard is None else start(args.storage, port=args.dashboard, log=_say)
    from .search import run_search
    try:
        with storage_errors(args.storage):
            result = run_search(settings, jobs=args.jobs, threads=args.threads, trials=args.trials,
                                max_trials=args.max_trials, timeout=args.timeout, log=_say)
    except KeyboardInterrupt:
        return 130
    finally:
        if dashboard is not None:
            dashboard.close()
    for line in result.crashed:
        print(f"fastmlp: error: {line}", file=sys.stderr)
    return 1 if result.crashed else 0


def cmd_dashboard(args) -> int:
    """``fastmlp dashboard``: serve optuna-dashboard on the storage until Ctrl-C (or SIGTERM)."""
    from .dashboard import serve
    return serve(args.storage, args.host, args.port, log=_say)


def cmd_report(args) -> int:
    """``fastmlp report``: read the study, write the report, say where it is."""
    _at_least_one(args, "threads")
    from .report import build_report
    from .study import storage_errors
    from .threads import limit_threads
    with limit_threads(args.threads), storage_errors(args.storage):
        written = build_report(args.storage, args.study_name, args.out, retrain=not args.no_retrain,
                               pdf=not args.no_pdf, data_dir=args.data_dir, verify=not args.no_verify,
                               title=args.title, author=args.author, log=lambda line: print(line, flush=True))
    kinds = [written[k] for k in ("md", "tex", "pdf") if k in written]
    print(f"report: wrote {', '.join(str(p) for p in kinds)}"
          + ("" if "pdf" in written or args.no_pdf else " (no pdflatex here: no PDF)"), flush=True)
    return 0


# ----------------------------------------------------------------------------- predict and export

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1; got {value}")
    return value


def _expand_images(names: list[str]) -> tuple[list[Path], list[str]]:
    """Each argument as image paths: a folder gives its image files, a glob pattern its matches.

    Returns ``(paths, errors)``; an argument that gives nothing is one error line.
    """
    import glob
    from .imageprep import IMAGE_SUFFIXES, image_files
    paths, errors = [], []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = image_files(path)
            if not found:
                errors.append(f"{name}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            paths += found
        elif not path.exists() and any(c in name for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(name, recursive=True) if Path(p).is_file())
            if not found:
                errors.append(f"{name}: no file matches this pattern")
            paths += found
        else:
            paths.append(path)
    return paths, errors


def cmd_predict(args) -> int:
    import json
    import numpy as np
    from .errors import ModelError
    from .imageprep import SIDE, load_digit
    from .model import MLP
    model, _ = MLP.load(args.model)
    if model.sizes[0] != SIDE * SIDE:
        raise ModelError(f"{args.model}: the model takes {model.sizes[0]} inputs, but images become "
                         f"{SIDE}x{SIDE} = {SIDE * SIDE} pixels; it was not trained on MNIST-sized images")
    n_classes = model.sizes[-1]
    if args.top > n_classes:
        raise UsageError(f"--top {args.top} is more than the model's {n_classes} classes")
    paths, errors = _expand_images(args.images)
    for message in errors:
        print(f"fastmlp: error: {message}", file=sys.stderr)
    results, inputs = [], []
    for path in paths:
        try:
            inputs.append(load_digit(path))
            results.append({"image": str(path)})
        except UserError as exc:
            errors.append(str(exc))
            results.append({"image": str(path), "error": str(exc)})
            print(f"fastmlp: error: {exc}", file=sys.stderr)
    ok = [r for r in results if "error" not in r]
    if ok:
        probs = model.probabilities(np.stack(inputs).reshape(len(inputs), -1))
        for r, p in zip(ok, probs):
            top = np.argsort(-p, kind="stable")[:args.top]
            ranked = [{"class": int(c), "probability": round(float(p[c]), 6)} for c in top]
            r.update(ranked[0], top=ranked)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in ok:
            print(f"{r['image']}: " + ", ".join(f"{t['class']} ({100 * t['probability']:.1f}%)" for t in r["top"]))
    return 2 if errors else 0


def cmd_export(args) -> int:
    from .export import OPSET, save_onnx
    from .model import MLP
    model, meta = MLP.load(args.model)
    save_onnx(model, args.onnx, meta)
    print(f"wrote {args.onnx}: ONNX opset {OPSET}, input x float32 [N, {model.sizes[0]}] scaled to [0, 1], "
          f"outputs logits and probabilities float32 [N, {model.sizes[-1]}]")
    return 0


def _add_predict_export_parsers(sub) -> None:
    p = sub.add_parser("predict", help="read digits from image files (PNG, JPEG, BMP, ...)")
    p.add_argument("model", help="a model.npz written by fastmlp train")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders of images, or glob patterns")
    p.add_argument("--top", type=_positive_int, default=1, metavar="K",
                   help="print the K most probable classes (default 1)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a model for other inference engines (ONNX)")
    p.add_argument("model", help="a model.npz written by fastmlp train")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="write an ONNX model here")
    p.set_defaults(func=cmd_export)


# ----------------------------------------------------------------------------- the command


def _check_environment() -> None:
    """Settings read from the environment by libraries, checked before they are imported."""
    value = os.environ.get("NUMBA_NUM_THREADS")
    if value is not None and not (value.strip().isdigit() and int(value) >= 1):
        raise UsageError(f"NUMBA_NUM_THREADS must be a positive integer; got {value!r}")


def main(argv: list[str] | None = None) -> int:
    if "numpy" not in sys.modules:  # a command of its own (not main() called by a program that has NumPy)
        from .threads import single_threaded_blas
        single_threaded_blas()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_environment()
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`fastmlp evaluate ... | head -1`): stop quietly, as SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("\nfastmlp: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
