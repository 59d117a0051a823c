"""The ``fastmlp`` command: train, evaluate, gradcheck, data, search, dashboard, report."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from pathlib import Path

from .cli_train import add_data_args, add_data_dir_args, add_train_parser, path_arg
from .errors import UsageError, UserError
from .extras import require
from .version import __version__

T_LAUNCH = time.perf_counter()

class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line like every other user error (exit status 2), each pointing
    to the help of the command it is about."""

    #: the subcommands' parsers, by name (on the top-level parser)
    commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str):
        self.exit(2, f"fastmlp: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown argument is reported by the subcommand's parser (its help)."""
        known, extra = self.parse_known_args(args, namespace)
        if extra:
            self.commands.get(getattr(known, "command", None), self).error(
                f"unrecognized arguments: {' '.join(extra)}")
        return known


def refusing(message: str) -> type[argparse.Action]:
    """An argparse action that refuses its flag with ``message`` (a pointer to the right flag)."""

    class Refuse(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(message)
    return Refuse


# ----------------------------------------------------------------------------- train, evaluate, gradcheck, data


def _threads(n: int | None):
    """Fix the run's thread count (None: the trainer chooses; see fastmlp.training.threads)."""
    if n is None:
        return None
    _thread_count(n)
    from .training.threads import limit_threads
    return limit_threads(n)


def _thread_count(n: int | None) -> None:
    from .training.threads import MAX_THREADS
    if n is not None and not 1 <= n <= MAX_THREADS:
        raise UsageError(f"--threads must be in 1..{MAX_THREADS}; got {n}")


def _load(args):
    from .data.datasets import load_dataset
    return load_dataset(args.dataset, args.data_dir, verify=not args.no_verify, download=True)


def cmd_train(args) -> int:
    from .cli_train import end_lines, interrupted_line, settle, start_lines
    from .data.datasets import BackgroundLoad, get_spec
    config, out, origin, note = settle(args)
    if args.print_config:
        print("".join(f"# {line}\n" for line in [note] if line) + config.to_toml(), end="")
        return 0
    spec = get_spec(config.dataset)
    config.check_memory(spec.rows * spec.cols, spec.num_classes)
    limiter = _threads(args.threads)
    data = BackgroundLoad(config.dataset, args.data_dir, verify=not args.no_verify, download=True)
    from .training.train import Progress, RunInterrupted, TrainingDiverged, train  # imports Numba while the data load
    for line in start_lines(config, origin, None if args.no_verify else spec.train_images.count) + [note] * bool(note):
        print(line, flush=True)

    def log(line: str) -> None:
        stamp = f"  [{time.perf_counter() - T_LAUNCH:6.1f}s since launch]" if line.startswith("epoch") else ""
        print(line + stamp, flush=True)

    try:
        result = train(config, data, verify=not args.no_verify, out_dir=out, resume=args.resume is not None,
                       progress=Progress(), log=log)
    except TrainingDiverged as exc:
        print(f"fastmlp: error: {exc}; history so far in {out / 'history.json'}", file=sys.stderr)
        return 1
    except RunInterrupted as exc:
        print("\n" + interrupted_line(exc, out), file=sys.stderr)
        return 130
    finally:
        if limiter is not None:
            limiter.unregister()
    for line in end_lines(result.history, config, out):
        print(line)
    return 0


def cmd_evaluate(args) -> int:
    from .data.datasets import validation_split
    from .training.model import MLP, PIXEL_SCALE, network_inputs, output_labels
    model, meta = MLP.load(args.model)
    labels = output_labels(meta, args.model)
    if labels is not None and [str(c) for c in labels] != [str(k) for k in range(len(labels))]:
        raise UsageError(f"{args.model}: the model's classes are {labels}, not a dataset's 0..{len(labels) - 1}")
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
    chosen = f" ({meta['chosen']})" if meta.get("chosen") else ""
    epoch = f", epoch {meta['epoch']}" if meta.get("epoch") is not None else ""
    print(f"{args.model}: sizes {model.sizes}{epoch}{chosen}")
    scale = meta.get("input_scale", PIXEL_SCALE)  # an estimator's file may take the pixels as they are (1)
    for name, images, labels, idx in rows:
        if idx is not None and len(idx) == 0:
            continue
        loss, acc = model.evaluate(network_inputs(images, scale), labels, idx)
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
    from .data.datasets import DATASETS, download_dataset, find_dataset_dir, get_spec, load_dataset
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
    parser.commands = sub.choices
    parser.set_defaults(func=lambda args: _print_help(parser))

    add_train_parser(sub).set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="loss and accuracy of a saved model")
    p.add_argument("model", metavar="FILE", type=path_arg, help="a model.npz written by fastmlp train")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="dataset (default: the one the model was trained on)")
    add_data_dir_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("gradcheck", help="finite-difference check of the reference gradients")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("data", help="download or inspect datasets")
    p.add_argument("action", choices=["download", "info"], help="download: fetch and verify; info: what is "
                                                                "found where")
    p.add_argument("names", nargs="*", metavar="DATASET",
                   help="optional: the datasets (default mnist for download, every known one for info)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="base folder (default $FASTMLP_DATA_DIR, then ./data)")
    p.add_argument("--force", action="store_true", help="download even when the files are present")
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification (custom data)")
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
    from .search.dashboard import DEFAULT_PORT
    from .search.space import BUDGET_KEYS, DEFAULT_SPACE, PARAMS, SPACES, flag_help
    from .search.study import DEFAULT_PRUNER, DEFAULT_STORAGE, PRUNERS
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
    p.add_argument("--timeout", type=float, default=None, metavar="X",
                   help="stop after X seconds; a trial still running is stopped after its current epoch "
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
    p.add_argument("--hidden", nargs="?", help=argparse.SUPPRESS, action=refusing(
        "a search has no --hidden: it draws the hidden sizes from --layers SPEC (how many) and --width SPEC "
        "(each layer's width)"))
    g.add_argument("--seed", type=int, default=None, metavar="N", help="seed of the sampler and of every trial (default 0)")
    g.add_argument("--subset", type=int, default=None, metavar="N",
                   help="train each trial on the first N training images only (for quick checks)")
    g.add_argument("--val-size", type=int, default=None, metavar="N",
                   help="training images held out for validation (default 5000)")
    g.add_argument("--dashboard", nargs="?", type=int, const=DEFAULT_PORT, default=None, metavar="N",
                   help=f"serve fastmlp dashboard on 127.0.0.1, port N, while the search runs (default {DEFAULT_PORT})")
    add_data_args(p)
    p.set_defaults(func=cmd_search, space_keys=(*PARAMS, *BUDGET_KEYS))


def _add_dashboard_parser(sub) -> None:
    from .search.dashboard import DEFAULT_HOST, DEFAULT_PORT
    from .search.study import DEFAULT_STORAGE
    p = sub.add_parser("dashboard", help="watch a search in the browser (optuna-dashboard)", description=(
        "Serve optuna-dashboard on a search's storage until Ctrl-C (pip install 'fastmlp[dashboard]')."))
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL", help=f"default {DEFAULT_STORAGE}")
    p.add_argument("--host", default=DEFAULT_HOST, metavar="ADDRESS",
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="N", help=f"default {DEFAULT_PORT}; 0: a free one")
    p.set_defaults(func=cmd_dashboard)


def _add_report_parser(sub) -> None:
    from .search.study import DEFAULT_STORAGE
    p = sub.add_parser("report", help="report of a search: report.md, report.tex (and .pdf), plots",
                       description="Write the report of a search: every trial and plots of the search, the best "
                                   "hyperparameters, and the best configuration trained again with its test "
                                   "accuracy, as Markdown and LaTeX (and PDF when pdflatex is installed).")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"the search's Optuna storage (default {DEFAULT_STORAGE})")
    p.add_argument("--study-name", default=None, metavar="NAME",
                   help="the study (default: the only one in the storage, else mnist)")
    p.add_argument("--out", default="report", metavar="DIR", type=path_arg, help="output folder (default report)")
    p.add_argument("--title", default=None, metavar="TEXT",
                   help="the report's title (default: Hyperparameter search for a multi-layer perceptron on "
                        "DATASET)")
    p.add_argument("--author", default="", metavar="NAME", help="the author under the title (default: none)")
    p.add_argument("--no-retrain", action="store_true",
                   help="do not train the best configuration again (no test accuracy)")
    p.add_argument("--no-pdf", action="store_true", help="do not run pdflatex even when it is installed")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for the retraining (default: as fastmlp train)")
    add_data_dir_args(p)
    p.set_defaults(func=cmd_report)


def _print_help(parser: argparse.ArgumentParser) -> int:
    """Bare ``fastmlp``: the full help on stdout, and success."""
    parser.print_help()
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _search_settings(args):
    """The search settings the flags ask for, over the study's stored ones (ConfigError on a bad value)."""
    from .search.space import Space, build_space
    from .search.study import open_storage, resolve_settings, stored_settings
    flags = {name: getattr(args, f"space_{name}") for name in args.space_keys}
    build_space(Space.default(), args.space, flags)  # a bad file or flag is reported before any storage is touched
    stored = stored_settings(open_storage(args.storage), args.study_name)
    return resolve_settings(stored, storage=args.storage, study_name=args.study_name, space_file=args.space,
                            space_flags=flags, pruner=args.pruner, seed=args.seed, subset=args.subset,
                            val_size=args.val_size, dataset=args.dataset, data_dir=args.data_dir,
                            verify=not args.no_verify)


def cmd_search(args) -> int:
    """``fastmlp search``: create or resume the study, run the workers, print a summary."""
    _at_least_one(args, "jobs", "trials", "max_trials")
    _thread_count(args.threads)
    if args.timeout is not None and not 0 < args.timeout < 1e9:  # inf: no --timeout means no limit
        raise UsageError(f"--timeout must be a number of seconds in (0, 1e9); got {args.timeout:g}")
    if args.study_name is None:
        args.study_name = args.dataset or "mnist"
    if args.print_space:
        from .search.space import Space, build_space
        flags = {name: getattr(args, f"space_{name}") for name in args.space_keys}
        print(build_space(Space.default(), args.space, flags).to_toml(), end="")
        return 0
    require("optuna", "search", "fastmlp search")
    if args.seed is not None:
        from .config import RULES
        RULES["seed"].check(args.seed)
    from .search.study import storage_errors
    if args.status:
        from .search.study import load_study, open_storage, summary
        with storage_errors(args.storage):
            print(summary(load_study(open_storage(args.storage, heartbeat=False, read_only=True), args.study_name)))
        return 0
    with storage_errors(args.storage):
        settings = _search_settings(args)
    from .search.dashboard import start
    dashboard = None if args.dashboard is None else start(args.storage, port=args.dashboard, log=_say)
    from .search.workers import run_search
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
    require("optuna", "dashboard", "fastmlp dashboard")
    from .search.dashboard import serve
    return serve(args.storage, args.host, args.port, log=_say)


def cmd_report(args) -> int:
    """``fastmlp report``: read the study, write the report, say where it is."""
    _thread_count(args.threads)
    require("optuna", "search", "fastmlp report")
    from .report.builder import build_report
    from .search.study import storage_errors
    from .training.threads import limit_threads
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


def cmd_predict(args) -> int:
    """``fastmlp predict``: the classes of image files; exit 1 when some could not be read, 2 when none could."""
    require("PIL", "images", "fastmlp predict")
    import json

    import numpy as np

    from .data.images import SIDE, expand_image_args, load_digit
    from .errors import ModelError
    from .training.model import MLP, PIXEL_SCALE, output_labels
    model, meta = MLP.load(args.model)
    labels = output_labels(meta, args.model) or list(range(model.sizes[-1]))  # an estimator's classes_
    pixels_times = np.float32(255 * meta.get("input_scale", PIXEL_SCALE))  # the images come in [0, 1]
    if model.sizes[0] != SIDE * SIDE:
        raise ModelError(f"{args.model}: the model takes {model.sizes[0]} inputs, but images become "
                         f"{SIDE}x{SIDE} = {SIDE * SIDE} pixels; it was not trained on MNIST-sized images")
    n_classes = model.sizes[-1]
    if args.top > n_classes:
        raise UsageError(f"--top {args.top} is more than the model's {n_classes} classes")
    paths, errors = expand_image_args(args.images)
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
        batch = np.stack(inputs).reshape(len(inputs), -1)
        probs = model.probabilities(batch if pixels_times == 1 else batch * pixels_times)
        for r, p in zip(ok, probs):
            top = np.argsort(-p, kind="stable")[:args.top]
            ranked = [{"class": labels[c], "probability": round(float(p[c]), 6)} for c in top]
            r.update(ranked[0], top=ranked)
    if args.json:
        print(json.dumps(results, indent=2, default=str))  # a label JSON has no type for (a date) as text
    else:
        for r in ok:
            print(f"{r['image']}: " + ", ".join(f"{t['class']} ({100 * t['probability']:.1f}%)" for t in r["top"]))
    if not errors:
        return 0
    return 1 if ok else 2  # some images read: the run did work (1); none: a bad input (2)


def cmd_export(args) -> int:
    import numpy as np

    from .interop.onnx import OPSET, save_onnx
    from .training.model import MLP, PIXEL_SCALE, is_regressor
    model, meta = MLP.load(args.model)
    if os.path.exists(args.onnx) and os.path.samefile(args.model, args.onnx):
        raise UsageError(f"{args.onnx}: is the model file itself; give another file name for the ONNX model")
    classes = not is_regressor(meta)  # a regressor's outputs are no classes: no softmax
    save_onnx(model, args.onnx, meta, probabilities=classes)
    scale = meta.get("input_scale", PIXEL_SCALE)
    inputs = "scaled to [0, 1]" if np.float32(scale) == np.float32(PIXEL_SCALE) else f"(the data times {scale:g})"
    print(f"wrote {args.onnx}: ONNX opset {OPSET}, input x float32 [N, {model.sizes[0]}] {inputs}, "
          f"outputs logits{' and probabilities' if classes else ''} float32 [N, {model.sizes[-1]}]")
    return 0


def _add_predict_export_parsers(sub) -> None:
    p = sub.add_parser("predict", help="read digits from image files (PNG, JPEG, BMP, ...)")
    p.add_argument("model", metavar="FILE", type=path_arg, help="a model.npz written by fastmlp train")
    p.add_argument("images", nargs="+", metavar="IMAGE", type=path_arg, help="image files, folders of images, or glob patterns")
    p.add_argument("--top", type=_positive_int, default=1, metavar="N",
                   help="print the N most probable classes (default 1)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a model for other inference engines (ONNX)")
    p.add_argument("model", metavar="FILE", type=path_arg, help="a model.npz written by fastmlp train")
    p.add_argument("--onnx", required=True, metavar="FILE", type=path_arg, help="write an ONNX model to FILE (e.g. model.onnx)")
    p.set_defaults(func=cmd_export)


# ----------------------------------------------------------------------------- the command


def _check_environment() -> None:
    """Settings read from the environment by libraries, checked before they are imported."""
    value = os.environ.get("NUMBA_NUM_THREADS")
    if value is not None and not (re.fullmatch(r"\s*[0-9]+\s*", value) and int(value) >= 1):  # not "²"
        raise UsageError(f"NUMBA_NUM_THREADS must be a positive integer; got {value!r}")


def _printable_streams() -> None:
    """Let stdout and stderr print any text: where they would raise on a character their encoding lacks (a
    non-ASCII folder name under ``PYTHONIOENCODING=ascii``, a file name that is not UTF-8), it comes out
    backslash-escaped. A gentler choice of the locale's (surrogateescape: a file name's bytes as they are) stays."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(AttributeError, ValueError):  # a stream that is not a TextIOWrapper
                stream.reconfigure(errors="backslashreplace")


def _reader_gone() -> int:
    """The reader of the output went away (``fastmlp train | head -1``): stop quietly, as SIGPIPE would."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(devnull, stream.fileno())
    return 141


def main(argv: list[str] | None = None) -> int:
    if "numpy" not in sys.modules:  # a command of its own (not main() called by a program that has NumPy)
        from .training.threads import single_threaded_blas
        single_threaded_blas()
    _printable_streams()
    try:
        args = build_parser().parse_args(argv)
        try:
            _check_environment()
            status = args.func(args)
        except KeyboardInterrupt:
            print("\nfastmlp: interrupted", file=sys.stderr)
            status = 130
        except UserError as exc:
            print(f"fastmlp: error: {exc}", file=sys.stderr)
            status = 2
        sys.stdout.flush()  # here, not at exit, where a reader gone could no longer be handled
        return status
    except BrokenPipeError:
        return _reader_gone()


if __name__ == "__main__":
    sys.exit(main())
