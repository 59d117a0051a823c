#!/usr/bin/env python
"""The one source of measured numbers: runs the peer benchmarks into fragments, and composes
``benchmarks/results.md`` and the README's headline from those fragments alone.

    .venv/bin/python benchmarks/results.py run            # every script at full length, then compose
    .venv/bin/python benchmarks/results.py run --quick    # the short forms: checks the plumbing
    .venv/bin/python benchmarks/results.py compose        # results.md and README.md from the fragments

``run`` starts the scripts one after the other (never two at once: they time the machine), each a
subprocess of this interpreter from the repository root, with ``--out`` and ``--json`` into
``benchmarks/results/``: a fragment is ``NAME.md`` (the script's own report) and ``NAME.json``
(its measurements, settings and run metadata: dates, command line, commit, machine, BLAS kernel
family, versions), for NAME in

* ``compare_peers``: training throughput beside PyTorch, JAX and scikit-learn (``peers/compare_peers.py``);
* ``inference``: prediction throughput beside PyTorch and JAX (``compare_peers.py --inference --no-throughput``);
* ``cold_start``: each entry point with an empty and a warm Numba cache (``peers/cold_start.py``);
* ``compare_sklearn``: the estimators beside scikit-learn's (``peers/compare_sklearn.py``).

``--only`` runs some of them; ``--configs``, ``--peers``, ``--rounds``, ``--threads``,
``--entries`` and ``--workloads`` are handed to the scripts that take them. A fragment whose
script fails is not composed from: the run stops there.

``compose`` owns what lies between the lines ``<!-- results:begin -->`` and ``<!-- results:end -->``
in ``benchmarks/results.md`` (a header, then every fragment's tables; the file is created with a
title and the markers when it does not exist) and in ``README.md`` (a small headline table and
one line pointing to results.md). Everything outside the markers is kept byte for byte. The same
fragments always give the same bytes: nothing is read from the clock or the machine. Every
problem (a malformed fragment, a missing marker) is one line naming the file, and then nothing
is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fastmlp.atomic import write_text

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
RESULTS_DIR = BENCHMARKS / "results"
RESULTS_MD = BENCHMARKS / "results.md"
README = ROOT / "README.md"

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TITLE = "# Measured numbers"
SCHEMA = 1  # common.JSON_SCHEMA: the layout of the fragments' JSON this module reads


class Error(Exception):
    """A problem compose or run reports as one line."""


@dataclass(frozen=True)
class Fragment:
    name: str          # the files' stem in the results folder
    title: str         # its section in results.md
    script: str        # under benchmarks/
    kind: str          # what the JSON's "script" says
    args: tuple        # the full run's arguments
    quick: tuple       # run --quick's
    narrowing: tuple   # run's options handed to it: (run's option, the script's)


PEER_NARROWING = (("configs", "--configs"), ("peers", "--peers"), ("rounds", "--rounds"), ("threads", "--threads"))
FRAGMENTS = (
    Fragment("compare_peers", "Training throughput beside PyTorch, JAX and scikit-learn", "peers/compare_peers.py",
             "compare_peers", (), ("--quick",), PEER_NARROWING),
    Fragment("inference", "Inference throughput beside PyTorch and JAX", "peers/compare_peers.py", "compare_peers",
             ("--inference", "--no-throughput"), ("--inference", "--no-throughput", "--quick"), PEER_NARROWING),
    Fragment("cold_start", "Start-up of each entry point, empty and warm Numba cache", "peers/cold_start.py",
             "cold_start", (), ("--only", "train,estimator"), (("entries", "--only"),)),
    Fragment("compare_sklearn", "The estimators beside scikit-learn's", "peers/compare_sklearn.py", "compare_sklearn",
             (), ("--rounds", "1", "--workloads", "mnist,first-contact"),
             (("rounds", "--rounds"), ("threads", "--threads"), ("workloads", "--workloads"))),
)


def shown(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it."""
    try:
        return Path(os.path.abspath(path)).relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


# ============================================================================= fragments

@dataclass
class Loaded:
    spec: Fragment
    json_path: Path
    md: str
    meta: dict
    settings: dict
    results: dict


def _get(data, path: str, kinds, json_path: Path):
    """``data[a][b]...`` for ``path`` 'a.b...', of one of ``kinds``; else the one-line error."""
    value = data
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise Error(f"{json_path}: malformed fragment: no {path}")
        value = value[key]
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        raise Error(f"{json_path}: malformed fragment: {path} is {type(value).__name__}")
    return value


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise Error(f"{path}: cannot be read ({err.__class__.__name__}: {err})".splitlines()[0]) from None


def load_fragment(spec: Fragment, folder: Path) -> Loaded | None:
    """The fragment ``spec`` in ``folder``, checked; None when neither of its files is there."""
    md_path, json_path = folder / f"{spec.name}.md", folder / f"{spec.name}.json"
    if not md_path.exists() and not json_path.exists():
        return None
    for path, other in ((md_path, json_path), (json_path, md_path)):
        if not path.exists():
            raise Error(f"{path}: missing (its pair {other.name} is there)")
    try:
        data = json.loads(_read_text(json_path))
    except json.JSONDecodeError as err:
        raise Error(f"{json_path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise Error(f"{json_path}: malformed fragment: not a JSON object")
    if data.get("schema") != SCHEMA:
        raise Error(f"{json_path}: malformed fragment: schema {data.get('schema')!r}, this compose reads {SCHEMA}")
    if data.get("script") != spec.kind:
        raise Error(f"{json_path}: malformed fragment: written by {data.get('script')!r}, not {spec.kind}")
    for path in ("meta.started", "meta.finished", "meta.command", "meta.machine.cpu", "meta.kernel_family",
                 "meta.versions.python", "meta.versions.numpy", "meta.versions.numba", "meta.versions.scipy"):
        _get(data, path, (str,), json_path)
    for path in ("meta.started", "meta.finished"):
        try:
            parse_time(_get(data, path, (str,), json_path))
        except ValueError:
            raise Error(f"{json_path}: malformed fragment: {path} is not a UTC time like 2026-01-31T12:00:00Z") from None
    _get(data, "meta.machine.cores_usable", (int,), json_path)
    _get(data, "meta.machine.cores_total", (int, type(None)), json_path)
    _get(data, "meta.machine.memory_bytes", (int, type(None)), json_path)
    _get(data, "meta.commit", (str, type(None)), json_path)
    _get(data, "meta.dirty", (bool, type(None)), json_path)
    _get(data, "settings", (dict,), json_path)
    _get(data, "results", (dict,), json_path)
    loaded = Loaded(spec, json_path, _read_text(md_path), data["meta"], data["settings"], data["results"])
    headline_rows(loaded)  # reads what the headline needs: a fragment that lacks it fails here, before any write
    return loaded


def load_fragments(folder: Path) -> list[Loaded]:
    if not folder.is_dir():
        raise Error(f"{folder}: no such folder of fragments (benchmarks/results.py run writes it)")
    names = {f.name for f in FRAGMENTS}
    for path in sorted(folder.iterdir()):
        if path.suffix in (".md", ".json") and not path.name.startswith(".") and path.stem not in names:
            raise Error(f"{path}: not a fragment's name (one of {', '.join(sorted(names))})")
    loaded = [f for f in (load_fragment(spec, folder) for spec in FRAGMENTS) if f is not None]
    if not loaded:
        raise Error(f"{folder}: no fragments (benchmarks/results.py run writes them)")
    return loaded


# ============================================================================= what the header says

def parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def span(frags: list[Loaded]) -> str:
    """From the first start to the last end: '2026-12-01 10:00 – 13:05 UTC'."""
    first = min(parse_time(f.meta["started"]) for f in frags)
    last = max(parse_time(f.meta["finished"]) for f in frags)
    end = last.strftime("%H:%M" if last.date() == first.date() else "%Y-%m-%d %H:%M")
    return f"{first:%Y-%m-%d %H:%M} – {end} UTC"


def days(frags: list[Loaded]) -> str:
    first = min(parse_time(f.meta["started"]) for f in frags).date()
    last = max(parse_time(f.meta["finished"]) for f in frags).date()
    return str(first) if first == last else f"{first} – {last}"


def commit_text(meta: dict) -> str:
    if meta["commit"] is None:
        return "unknown (not a git checkout)"
    return meta["commit"] + (" + local changes" if meta["dirty"] else "")


def machine_text(meta: dict) -> str:
    m = meta["machine"]
    cores = f"{m['cores_usable']} cores usable" + (f" (of {m['cores_total']})" if m["cores_total"] else "")
    memory = "" if m["memory_bytes"] is None else f", {m['memory_bytes'] / 2 ** 30:.1f} GiB memory"
    return f"{m['cpu']}, {cores}{memory}"


def versions_text(meta: dict) -> str:
    v = meta["versions"]
    return f"Python {v['python']}, NumPy {v['numpy']}, Numba {v['numba']}, SciPy {v['scipy']}"


# (label, value of a fragment's meta): one line of the header when every fragment agrees, else one per section.
FIELDS = (("commit", commit_text), ("machine", machine_text), ("BLAS kernel family", lambda m: m["kernel_family"]),
          ("versions", versions_text))


def shifted(md: str) -> str:
    """A fragment's report as a section's body: its title line dropped, its headings one level down."""
    lines = md.strip("\n").split("\n")
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out, fence = [], False
    for line in lines:
        if line.startswith("```"):
            fence = not fence
        out.append("#" + line if not fence and line.startswith("#") and line.lstrip("#").startswith(" ") else line)
    return "\n".join(out).strip("\n")


def results_block(frags: list[Loaded], folder: Path) -> str:
    """What results.md holds between its markers."""
    lines = [f"Generated by `benchmarks/results.py compose` from the fragments in `{shown(folder)}/`: rerun "
             "`benchmarks/results.py run` (or one script with `--out` and `--json` there, then `compose`) "
             "rather than editing this part.", "",
             f"- date: {span(frags)}"]
    differing = []
    for label, value in FIELDS:
        values = {value(f.meta) for f in frags}
        if len(values) == 1:
            lines.append(f"- {label}: {values.pop()}")
        else:
            differing.append((label, value))
            lines.append(f"- {label}: differs between sections (each gives its own)")
    lines.append("- commands, from the repository root, one after the other:")
    lines += [f"  - {f.spec.title}: `{f.meta['command']}`" for f in frags]
    for f in frags:
        # A paragraph, not a list: the fragment's report often opens with a list of its own.
        run = f"Run {span([f])}" + (" (`--quick`)" if f.settings.get("quick") is True else "")
        lines += ["", f"## {f.spec.title}", "", "; ".join([run, *(f"{label}: {value(f.meta)}" for label, value in differing)])
                  + ".", "", shifted(f.md)]
    # Blank lines at both ends keep the markers apart from the tables in every Markdown reader.
    return "\n" + "\n".join(lines) + "\n\n"


# ============================================================================= the README's headline

def _rate(x) -> str:
    return f"{x:,.0f}"


def _num(x, kinds=(int, float)) -> bool:
    return isinstance(x, kinds) and not isinstance(x, bool)


def headline_rows(f: Loaded) -> list[str]:
    """The README table's rows from one fragment (none from the inference fragment); a fragment
    without the fields they need is malformed."""
    r, path = f.results, f.json_path
    rows = []
    try:
        if f.spec.name == "compare_peers":
            for t in r["throughput"]:
                fast = t["rates"].get("fastmlp")
                if not _num(fast):
                    continue
                beside = [f"{t['vs_jax']:.2f}x JAX's"] if _num(t["vs_jax"]) else []
                if _num(t["vs_torch_fused"]):
                    beside.append(f"{t['vs_torch_fused']:.2f}x PyTorch's (fused Adam)")
                elif _num(t["speedup"]):
                    beside.append(f"{t['speedup']:.2f}x PyTorch's (eager)")
                shape = "-".join(str(int(s)) for s in t["sizes"])
                rows.append(f"| training samples/s, {shape}, batch {int(t['batch_size'])} | {_rate(fast)} "
                            f"| {', '.join(beside) or 'no peer measured'} |")
        elif f.spec.name == "cold_start":
            entries = {e["name"]: e for e in r["entries"]}
            if "train" in entries:
                e = entries["train"]
                rows.append(f"| `fastmlp train --epochs 1`, launch to exit, empty Numba cache "
                            f"| {e['cold']['wall']:.1f} s | warm cache: {e['warm']['wall']:.1f} s |")
            if "estimator" in entries:
                e, sk = entries["estimator"], r["sklearn_digits_fit_predict_s"]
                peer = "" if not _num(sk) else f"; scikit-learn's fit + predict, imported already: {sk:.2f} s"
                rows.append(f"| `MLPClassifier(max_iter=20)` fit + predict on digits, new process, empty Numba cache "
                            f"| {e['cold']['wall']:.1f} s | warm cache: {e['warm']['wall']:.1f} s{peer} |")
        elif f.spec.name == "compare_sklearn":
            for c in r["first_contact"]:
                if c["workload"] == "digits" and c["params"] == "defaults":
                    rows.append(f"| `MLPClassifier()` fit on digits as given, warm | {c['fastmlp_s']:.3f} s "
                                f"| scikit-learn's: {c['sklearn_s']:.3f} s ({c['sklearn_s'] / c['fastmlp_s']:.2f}x) |")
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as err:
        raise Error(f"{path}: malformed fragment: {err.__class__.__name__} {err}".splitlines()[0]) from None
    return rows


def readme_block(frags: list[Loaded], results_md: Path, readme: Path) -> str:
    """What README.md holds between its markers: the headline table and the line pointing to results.md."""
    rows = [row for f in frags for row in headline_rows(f)]
    lines = ["| measurement | fastmlp | beside it |", "|---|---:|---|", *rows, ""] if rows else []
    cpus = " / ".join(dict.fromkeys(f.meta["machine"]["cpu"] for f in frags))
    kernels = " / ".join(dict.fromkeys(f.meta["kernel_family"] for f in frags))
    quick = any(f.settings.get("quick") is True for f in frags)
    link = Path(os.path.relpath(results_md, readme.parent)).as_posix()
    lines.append(f"Measured on {cpus}, {kernels}, {days(frags)}{' (a --quick run)' if quick else ''}: "
                 f"[{link}]({link})")
    return "\n".join(lines) + "\n"


# ============================================================================= compose

def between_markers(text: str, block: str, path: Path) -> str:
    """``text`` with the lines between its marker lines replaced by ``block``."""
    lines = text.splitlines(keepends=True)
    found = {m: [i for i, line in enumerate(lines) if line.strip() == m] for m in (BEGIN, END)}
    missing = [m for m in (BEGIN, END) if not found[m]]
    if missing:
        raise Error(f"{path}: no {' and no '.join(missing)} marker line")
    doubled = [m for m in (BEGIN, END) if len(found[m]) > 1]
    if doubled:
        raise Error(f"{path}: more than one {doubled[0]} marker line")
    begin, end = found[BEGIN][0], found[END][0]
    if end < begin:
        raise Error(f"{path}: {END} comes before {BEGIN}")
    return "".join(lines[:begin + 1]) + block + "".join(lines[end:])


def compose(folder: Path = RESULTS_DIR, results_md: Path = RESULTS_MD, readme: Path = README) -> list[Path]:
    """(Re)write results.md's and the README's generated parts from the fragments in ``folder``;
    every check comes before the first write. Returns the files written."""
    frags = load_fragments(folder)
    current = _read_text(results_md) if results_md.exists() else f"{TITLE}\n\n{BEGIN}\n{END}\n"
    new_results = between_markers(current, results_block(frags, folder), results_md)
    if not readme.exists():
        raise Error(f"{readme}: not found")
    new_readme = between_markers(_read_text(readme), readme_block(frags, results_md, readme), readme)
    write_text(results_md, new_results)
    write_text(readme, new_readme)
    return [results_md, readme]


# ============================================================================= run

def plan(quick: bool, only: list[str] | None, narrowing: dict, folder: Path) -> list[tuple[Fragment, list[str]]]:
    """The fragments to run and each one's command, in order."""
    out = []
    for spec in FRAGMENTS:
        if only is not None and spec.name not in only:
            continue
        args = list(spec.quick if quick else spec.args)
        for key, option in spec.narrowing:
            if narrowing.get(key) is None:
                continue
            if option in args:  # the given value replaces the quick form's
                args[args.index(option) + 1] = str(narrowing[key])
            else:
                args += [option, str(narrowing[key])]
        cmd = [sys.executable, shown(BENCHMARKS / spec.script), *args,
               "--out", shown(folder / f"{spec.name}.md"), "--json", shown(folder / f"{spec.name}.json")]
        out.append((spec, cmd))
    return out


def progress(msg: str) -> None:
    print(f"results: {msg}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def run(quick: bool, only: list[str] | None, narrowing: dict, folder: Path, results_md: Path, readme: Path) -> None:
    steps = plan(quick, only, narrowing, folder)
    folder.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()
    for i, (spec, cmd) in enumerate(steps, 1):
        progress(f"[{i}/{len(steps)}] {spec.name} started {time.strftime('%H:%M:%S')}: "
                 f"{shlex.join([shown(Path(cmd[0])), *cmd[1:]])}")
        started, t0 = time.time(), time.monotonic()
        # The report also goes to --out: stdout would only repeat it; stderr carries the scripts' progress.
        code = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).returncode
        if code != 0:
            pair = [folder / f"{spec.name}.md", folder / f"{spec.name}.json"]
            # One file of the pair rewritten and not the other would compose a mixture: drop both.
            if any(p.exists() and p.stat().st_mtime >= started for p in pair):
                for p in pair:
                    p.unlink(missing_ok=True)
            raise Error(f"{spec.name} failed (exit {code}) after {duration(time.monotonic() - t0)}; "
                        "nothing composed")
        progress(f"[{i}/{len(steps)}] {spec.name} done in {duration(time.monotonic() - t0)}: "
                 f"{shown(folder / spec.name)}.md, .json")
    progress(f"all {len(steps)} done in {duration(time.monotonic() - t_all)}; composing")
    try:
        written = compose(folder, results_md, readme)
    except Error as err:
        raise Error(f"{err} (the fragments are in {shown(folder)}/: fix it, then run compose)") from None
    progress(f"wrote {', '.join(shown(p) for p in written)}")


# ============================================================================= command line

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the scripts one after the other into fragments, then compose")
    c = sub.add_parser("compose", help="results.md and the README's headline from the fragments")
    r.add_argument("--quick", action="store_true",
                   help="the short forms: compare_peers --quick, cold_start --only train,estimator, compare_sklearn "
                        "--rounds 1 --workloads mnist,first-contact (plumbing, not numbers to quote)")
    r.add_argument("--only", help=f"comma-separated fragments to run (default: all: {','.join(f.name for f in FRAGMENTS)})")
    r.add_argument("--configs", help="compare_peers --configs, e.g. '100/32'")
    r.add_argument("--peers", help="compare_peers --peers, e.g. fastmlp,jax,torch_fused")
    r.add_argument("--rounds", type=int, help="compare_peers and compare_sklearn --rounds")
    r.add_argument("--threads", type=int, help="compare_peers and compare_sklearn --threads")
    r.add_argument("--entries", help="cold_start --only, e.g. train,estimator")
    r.add_argument("--workloads", help="compare_sklearn --workloads, e.g. small,first-contact")
    for q in (r, c):
        q.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="the fragments' folder (default: %(default)s)")
        q.add_argument("--results-md", type=Path, default=RESULTS_MD, help="default: %(default)s")
        q.add_argument("--readme", type=Path, default=README, help="default: %(default)s")
    args = p.parse_args(argv)
    try:
        if args.command == "compose":
            written = compose(args.results_dir, args.results_md, args.readme)
            print(f"wrote {', '.join(shown(w) for w in written)}")
        else:
            only = None if args.only is None else args.only.split(",")
            unknown = sorted(set(only or ()) - {f.name for f in FRAGMENTS})
            if unknown:
                p.error(f"--only: unknown fragment {', '.join(unknown)}")
            narrowing = {k: getattr(args, k) for k in ("configs", "peers", "rounds", "threads", "entries", "workloads")}
            run(args.quick, only, narrowing, args.results_dir, args.results_md, args.readme)
    except Error as err:
        print(f"results.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
