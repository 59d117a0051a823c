"""``benchmarks/results.py``: compose on small hand-made fragments (header, tables, the README's
headline, text outside the markers kept, the same bytes twice, one-line errors that write nothing),
and run's plumbing on a stand-in script. No benchmark runs here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # as the benchmark scripts import their helpers

import results  # noqa: E402

META = {
    "started": "2026-12-01T10:00:00Z", "finished": "2026-12-01T10:40:00Z",
    "command": ".venv/bin/python benchmarks/peers/compare_peers.py --out benchmarks/results/compare_peers.md",
    "commit": "abc1234", "dirty": True,
    "machine": {"cpu": "Test CPU 9000", "cores_usable": 2, "cores_total": 4, "memory_bytes": 24 * 2 ** 30},
    "blas": [], "kernel_family": "OpenBLAS SkylakeX",
    "versions": {"python": "3.11.7", "numpy": "2.4.6", "numba": "0.68.1", "scipy": "1.17.1"},
    "load_average": [0.1, 2.0],
}


def throughput(sizes, batch, fast, jax, fused, eager):
    return {"config": f"[{sizes[1]}]/{batch}", "sizes": sizes, "batch_size": batch, "rates": {"fastmlp": fast},
            "vs_jax": jax, "vs_torch_fused": fused, "speedup": eager}


FRAGMENTS = {
    "compare_peers": ("compare_peers", {"quick": False}, {"throughput": [
        throughput([784, 100, 10], 32, 278361.4, 1.40, 5.01, 9.8),
        throughput([784, 1024, 1024, 10], 128, 14093.0, 1.01, None, 2.4)]},
        "# fastmlp beside other implementations\n\n- machine: Test CPU 9000\n\n## Training throughput\n\n"
        "### [100]/32\n\n| implementation | samples/s |\n|---|---:|\n| fastmlp | 278,361 |\n"),
    "inference": ("compare_peers", {"quick": False}, {"inference": []},
                  "# fastmlp beside other implementations\n\n## Inference throughput\n\n| weights | images/s |\n"
                  "|---|---:|\n| [100] | 856,494 |\n"),
    "cold_start": ("cold_start", {"only": ["train", "estimator"]}, {
        "entries": [{"name": "train", "cold": {"wall": 41.23}, "warm": {"wall": 7.31}},
                    {"name": "estimator", "cold": {"wall": 25.3}, "warm": {"wall": 3.1}}],
        "sklearn_digits_fit_predict_s": 0.451},
        "| entry point | cold: wall |\n|---|---:|\n| `fastmlp train --epochs 1` | 41.2 s |\n"),
    "compare_sklearn": ("compare_sklearn", {"rounds": 1}, {"timed": [], "small": [], "first_contact": [
        {"workload": "digits", "params": "defaults", "fastmlp_s": 0.21, "sklearn_s": 1.15},
        {"workload": "digits", "params": "max_iter=20", "fastmlp_s": 0.05, "sklearn_s": 0.2}]},
        "`compare_sklearn.py`, 2026-12-01 11:00 UTC:\n\n| first contact | fastmlp fit |\n|---|---:|\n"
        "| digits | 0.210 s |\n"),
}

README = "# project\n\nIntro.\n\n<!-- results:begin -->\nold headline\n<!-- results:end -->\n\n## More\n\nKept.\n"
RESULTS_MD = ("# Measured numbers\n\nHand-written preface.\n\n<!-- results:begin -->\nstale\n<!-- results:end -->\n\n"
              "## Probes and earlier measurements\n\nKept as it is.\n")


def write_fragment(folder: Path, name: str, meta: dict | None = None, **changes) -> None:
    kind, settings, res, md = FRAGMENTS[name]
    data = {"schema": 1, "script": kind, "meta": {**META, **(meta or {})}, "settings": settings, "results": res,
            **changes}
    (folder / f"{name}.json").write_text(json.dumps(data, indent=1))
    (folder / f"{name}.md").write_text(md)


@pytest.fixture
def site(tmp_path):
    """A results folder with all four fragments, a results.md and a README with their markers."""
    folder = tmp_path / "results"
    folder.mkdir()
    for name in FRAGMENTS:
        write_fragment(folder, name, {"finished": "2026-12-01T10:40:00Z" if name == "compare_peers"
                                      else "2026-12-01T12:05:00Z"})
    (tmp_path / "results.md").write_text(RESULTS_MD)
    (tmp_path / "README.md").write_text(README)
    return folder, tmp_path / "results.md", tmp_path / "README.md"


def between(text: str) -> str:
    return text.split(results.BEGIN + "\n", 1)[1].split("\n" + results.END, 1)[0] + "\n"


def test_compose_writes_the_header_and_every_fragments_tables(site):
    folder, md, readme = site
    results.compose(folder, md, readme)
    part = between(md.read_text())
    assert "- date: 2026-12-01 10:00 – 12:05 UTC\n" in part
    assert "- commit: abc1234 + local changes\n" in part
    assert "- machine: Test CPU 9000, 2 cores usable (of 4), 24.0 GiB memory\n" in part
    assert "- BLAS kernel family: OpenBLAS SkylakeX\n" in part
    assert "- versions: Python 3.11.7, NumPy 2.4.6, Numba 0.68.1, SciPy 1.17.1\n" in part
    assert f"`{META['command']}`" in part
    titles = [f"## {f.title}" for f in results.FRAGMENTS]
    assert [part.index(t) for t in titles] == sorted(part.index(t) for t in titles)
    for table_row in ("| fastmlp | 278,361 |", "| [100] | 856,494 |", "| `fastmlp train --epochs 1` | 41.2 s |",
                      "| digits | 0.210 s |"):
        assert table_row in part
    # The fragment's title is dropped, its headings one level down under the section's.
    assert "fastmlp beside other implementations" not in part
    assert "\n### Training throughput\n" in part and "\n#### [100]/32\n" in part


def test_compose_writes_the_readme_headline(site):
    folder, md, readme = site
    results.compose(folder, md, readme)
    block = between(readme.read_text())
    lines = block.rstrip("\n").split("\n")
    assert lines[0].startswith("| measurement |")
    assert "| training samples/s, 784-100-10, batch 32 | 278,361 | 1.40x JAX's, 5.01x PyTorch's (fused Adam) |" in lines
    assert "| training samples/s, 784-1024-1024-10, batch 128 | 14,093 | 1.01x JAX's, 2.40x PyTorch's (eager) |" in lines
    assert any(line.startswith("| `fastmlp train --epochs 1`") and "41.2 s" in line and "7.3 s" in line
               for line in lines)
    assert any(line.startswith("| `MLPClassifier()`") and "0.210 s" in line and "5.48x" in line for line in lines)
    # The table, a blank line, and one line pointing to results.md: nothing else.
    assert lines[-2] == ""
    assert lines[-1] == "Measured on Test CPU 9000, OpenBLAS SkylakeX, 2026-12-01: [results.md](results.md)"
    assert all(line.startswith("|") for line in lines[:-2])


def test_compose_keeps_everything_outside_the_markers(site):
    folder, md, readme = site
    results.compose(folder, md, readme)
    for path, before in ((md, RESULTS_MD), (readme, README)):
        after = path.read_text()
        head, tail = before.split("stale\n" if path == md else "old headline\n")
        assert after.startswith(head) and after.endswith(tail)


def test_compose_twice_gives_the_same_bytes(site):
    folder, md, readme = site
    results.compose(folder, md, readme)
    first = md.read_bytes(), readme.read_bytes()
    results.compose(folder, md, readme)
    assert (md.read_bytes(), readme.read_bytes()) == first


def test_compose_creates_results_md_with_a_title_and_the_markers(site):
    folder, md, readme = site
    md.unlink()
    results.compose(folder, md, readme)
    text = md.read_text()
    assert text.startswith(results.TITLE + "\n\n" + results.BEGIN + "\n\nGenerated by")
    assert text.endswith(results.END + "\n")


def test_fragments_that_disagree_say_so_per_section(site):
    folder, md, readme = site
    write_fragment(folder, "cold_start", {"commit": "def5678", "dirty": False,
                                          "machine": {**META["machine"], "cpu": "Other CPU"}})
    results.compose(folder, md, readme)
    part = between(md.read_text())
    assert "- commit: differs between sections (each gives its own)\n" in part
    assert "- machine: differs between sections (each gives its own)\n" in part
    assert ("\nRun 2026-12-01 10:00 – 10:40 UTC; commit: def5678; machine: Other CPU, 2 cores usable (of 4), "
            "24.0 GiB memory.\n") in part
    assert "\nRun 2026-12-01 10:00 – 10:40 UTC; commit: abc1234 + local changes; machine: Test CPU 9000," in part
    assert "- BLAS kernel family: OpenBLAS SkylakeX\n" in part  # the same everywhere: once, in the header
    assert "Measured on Test CPU 9000 / Other CPU," in readme.read_text()


def unchanged(md: Path, readme: Path):
    return md.read_bytes() == RESULTS_MD.encode() and readme.read_bytes() == README.encode()


@pytest.mark.parametrize("marker", [results.BEGIN, results.END])
def test_a_readme_without_its_markers_is_one_line_and_nothing_is_written(site, marker):
    folder, md, readme = site
    readme.write_text(README.replace(marker + "\n", ""))
    with pytest.raises(results.Error) as err:
        results.compose(folder, md, readme)
    message = str(err.value)
    assert "\n" not in message and str(readme) in message and marker in message
    assert md.read_bytes() == RESULTS_MD.encode()


def test_the_command_reports_one_line(site, capsys):
    folder, md, readme = site
    readme.write_text("# no markers\n")
    code = results.main(["compose", "--results-dir", str(folder), "--results-md", str(md), "--readme", str(readme)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("results.py: ") and "results:begin" in err


@pytest.mark.parametrize("damage, named", [
    (lambda f: (f / "cold_start.json").write_text("{not json"), "cold_start.json"),
    (lambda f: (f / "compare_peers.json").write_text(json.dumps({"schema": 1, "script": "compare_peers"})),
     "compare_peers.json"),
    (lambda f: write_fragment(f, "compare_sklearn", {"machine": {"cpu": "x"}}), "compare_sklearn.json"),
    (lambda f: write_fragment(f, "compare_peers", results={"throughput": [{"rates": {"fastmlp": 1.0}}]}),
     "compare_peers.json"),
    (lambda f: write_fragment(f, "inference", script="cold_start"), "inference.json"),
    (lambda f: (f / "inference.json").unlink(), "inference.json"),
    (lambda f: (f / "stray.md").write_text("?"), "stray.md"),
], ids=["not-json", "no-meta", "no-cores", "no-throughput-fields", "wrong-script", "half-a-pair", "unknown-name"])
def test_a_malformed_fragment_is_one_line_naming_it_and_nothing_is_written(site, damage, named):
    folder, md, readme = site
    damage(folder)
    with pytest.raises(results.Error) as err:
        results.compose(folder, md, readme)
    message = str(err.value)
    assert "\n" not in message and named in message
    assert unchanged(md, readme)


def test_an_empty_results_folder_is_an_error(site):
    folder, md, readme = site
    for path in folder.iterdir():
        path.unlink()
    with pytest.raises(results.Error, match="no fragments"):
        results.compose(folder, md, readme)
    assert unchanged(md, readme)


def test_some_fragments_compose_alone(site):
    folder, md, readme = site
    for name in ("compare_peers", "inference", "cold_start"):
        (folder / f"{name}.json").unlink()
        (folder / f"{name}.md").unlink()
    results.compose(folder, md, readme)
    part = between(md.read_text())
    assert "## The estimators beside scikit-learn's" in part and "## Training throughput" not in part
    assert "- date: 2026-12-01 10:00 – 12:05 UTC" in part
    assert "| `MLPClassifier()` fit on digits as given, warm |" in readme.read_text()


def test_run_plans_each_script_in_order_with_its_files():
    folder = ROOT / "benchmarks" / "results"
    steps = results.plan(True, None, {"rounds": 1, "configs": "100/32", "entries": "train"}, folder)
    assert [spec.name for spec, _ in steps] == ["compare_peers", "inference", "cold_start", "compare_sklearn"]
    cmds = {spec.name: cmd for spec, cmd in steps}
    assert cmds["compare_peers"][1:] == ["benchmarks/peers/compare_peers.py", "--quick", "--configs", "100/32",
                                         "--rounds", "1", "--out", "benchmarks/results/compare_peers.md",
                                         "--json", "benchmarks/results/compare_peers.json"]
    assert cmds["inference"][2:5] == ["--inference", "--no-throughput", "--quick"]
    assert cmds["cold_start"][2:4] == ["--only", "train"]  # replaces the quick form's entry points
    assert cmds["compare_sklearn"][2:6] == ["--rounds", "1", "--workloads", "mnist,first-contact"]
    assert all(cmd[0] == sys.executable for _, cmd in steps)
    full = results.plan(False, ["cold_start"], {}, folder)
    assert [(spec.name, cmd[2:3]) for spec, cmd in full] == [("cold_start", ["--out"])]


STAND_IN = '''
import json, sys
args = sys.argv[1:]
out, js = args[args.index("--out") + 1], args[args.index("--json") + 1]
name = js.rsplit("/", 1)[-1][:-5]
if name == "{fail}":
    sys.exit(3)
fragment = json.loads({fragments!r})[name]
open(out, "w").write(fragment["md"])
open(js, "w").write(json.dumps(fragment["json"]))
'''


def stand_in(tmp_path, monkeypatch, fail=""):
    """Every fragment's script replaced by one that writes the hand-made fragment for its --json name."""
    fragments = {name: {"md": md, "json": {"schema": 1, "script": kind, "meta": META, "settings": s, "results": r}}
                 for name, (kind, s, r, md) in FRAGMENTS.items()}
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN.format(fail=fail, fragments=json.dumps(fragments)))
    monkeypatch.setattr(results, "FRAGMENTS", tuple(results.Fragment(f.name, f.title, str(script), f.kind, (), (), ())
                                                    for f in results.FRAGMENTS))


def test_run_writes_the_fragments_then_composes(site, tmp_path, monkeypatch):
    _, md, readme = site
    stand_in(tmp_path, monkeypatch)
    folder = tmp_path / "new-results"
    results.run(False, None, {}, folder, md, readme)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.{e}" for n in FRAGMENTS for e in ("md", "json"))
    assert "| digits | 0.210 s |" in md.read_text()
    assert "278,361" in readme.read_text()


def test_run_stops_at_a_failing_script_and_composes_nothing(site, tmp_path, monkeypatch):
    _, md, readme = site
    stand_in(tmp_path, monkeypatch, fail="cold_start")
    folder = tmp_path / "new-results"
    with pytest.raises(results.Error, match="cold_start failed"):
        results.run(False, None, {}, folder, md, readme)
    assert sorted(p.stem for p in folder.iterdir()) == ["compare_peers", "compare_peers", "inference", "inference"]
    assert unchanged(md, readme)


def test_what_the_scripts_write_is_what_compose_reads(site, tmp_path):
    """The metadata of ``common.run_metadata`` and ``common.write_json``, and cold_start's results,
    as a fragment: compose takes them (the scripts' other results are checked above by hand)."""
    import common

    spec = importlib.util.spec_from_file_location("cold_start_script", ROOT / "benchmarks/peers/cold_start.py")
    cold_start = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cold_start)
    chosen = [e for e in cold_start.ENTRY_POINTS if e[0] in ("train", "estimator")]
    measured = {(name, phase): {"wall": 12.0 if phase == "cold" else 2.0, "compile": 1.0, "functions": 3,
                                "slowest": [("kernel", 0.5)]} for name, *_ in chosen for phase in ("cold", "warm")}
    folder, md, readme = site
    fresh = tmp_path / "fresh"
    common.write_json(fresh / "cold_start.json", "cold_start", common.run_metadata(), {"only": ["train"]},
                      cold_start.json_results(chosen, measured, float("nan")))
    (fresh / "cold_start.md").write_text(cold_start.markdown(chosen, measured, None))
    results.compose(fresh, md, readme)
    meta = json.loads((fresh / "cold_start.json").read_text())["meta"]
    assert meta["machine"]["cpu"] in md.read_text() and meta["kernel_family"] in md.read_text()
    assert "| `fastmlp train --epochs 1`, launch to exit, empty Numba cache | 12.0 s | warm cache: 2.0 s |" in \
        readme.read_text()
