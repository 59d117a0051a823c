"""The ``fastmlp`` command: train, evaluate, gradcheck, data, search, report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import UsageError, UserError

T_LAUNCH = time.perf_counter()

CliError = UsageError  # the name search.py and report.py still raise



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
    """Limit BLAS threads for the run (kernels are single-threaded between GEMMs)."""
    if n is None:
        return None
    if n < 1:
        raise CliError(f"--threads must be >= 1; got {n}")
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=n)


def _load(args):
    from .data import load_dataset
    return load_dataset(args.dataset, args.data_dir, verify=not args.no_verify, download=True)


def cmd_train(args) -> int:
    from .data import BackgroundLoad, get_spec
    config = train_config_from_args(args)
    config.validate()
    get_spec(config.dataset)
    limiter = _threads(args.threads)
    data = BackgroundLoad(args.dataset, args.data_dir, verify=not args.no_verify, download=True)
    from .train import TrainingDiverged, train, Progress  # imports Numba while the data load
    out = Path(args.out)
    print(f"fastmlp: hidden {list(config.hidden_sizes)}, batch {config.batch_size}, "
          f"lr {config.lr:g} ({_schedule_text(config)}), betas ({config.beta1:g}, {config.beta2:g}), "
          f"eps {config.eps:g}, {config.epochs} epochs, seed {config.seed}{_recipe_text(config)}", flush=True)

    def log(line: str) -> None:
        stamp = f"  [{time.perf_counter() - T_LAUNCH:6.1f}s since launch]" if line.startswith("epoch") else ""
        print(line + stamp, flush=True)

    try:
        result = train(config, data, verify=not args.no_verify, out_dir=out, progress=Progress(), log=log)
    except TrainingDiverged as exc:
        print(f"fastmlp: error: {exc}; history so far in {out / 'history.json'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nfastmlp: interrupted; history and model so far in {out}", file=sys.stderr)
        return 130
    finally:
        if limiter is not None:
            limiter.unregister()
    last = result.history.epochs[-1]
    print(f"test accuracy {100 * last['test_acc']:.2f}%{' (averaged weights)' if config.ema > 0 else ''}; wrote {out / 'history.json'}, {out / 'model.npz'}, "
          f"{out / 'curves.png'}")
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
        raise CliError(f"{args.model}: model sizes {model.sizes} do not fit {dataset.name} "
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


def cmd_search(args) -> int:
    from .search import run_search_cli
    return run_search_cli(args)


def cmd_report(args) -> int:
    from .report import run_report_cli
    return run_report_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fastmlp", description="Train MLPs on MNIST-like data, fast, on the CPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("train", help="train a model; writes history.json, model.npz, curves.png")
    _add_train_args(p)
    _add_data_args(p)
    p.add_argument("--out", default="runs/default", help="output folder (default runs/default)")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all cores)")
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
    _add_report_parser(sub)
    return parser


# ----------------------------------------------------------------------------- search and report

def _add_search_parser(sub) -> None:
    from .search import add_search_parser
    add_search_parser(sub)


def _add_report_parser(sub) -> None:
    from .report import add_report_parser
    add_report_parser(sub)


# ----------------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nfastmlp: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
