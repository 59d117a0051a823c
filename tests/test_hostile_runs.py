"""Hostile runs: a run never loses a file it should not touch, two runs never share a folder, a
damaged checkpoint or model is one line, and the command's edges (a seed, a locale, a closed pipe,
a read-only install, Ctrl-C, a named pipe, glob patterns) end as a person expects.

The commands run in their own processes on the small learnable dataset (``small_data_dir``: 300
training images under MNIST's names), so a run takes a second or two.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, assert_one_line_exit_2, run, small_config, synthetic_dataset

from fastmlp.cli_train import interrupted_line
from fastmlp.training.model import MLP
from fastmlp.training.runs import CHECKPOINT, MARKER, RunFolder
from fastmlp.training.train import RunInterrupted, train

RUN_FILES = {"history.json", "metrics.csv", "model.npz", "curves.png", "checkpoint.npz"}


@pytest.fixture
def small(small_data_dir):
    """The arguments of a quick run on the small dataset (1 epoch, a hold-out of 50 images)."""
    return ["--data-dir", str(small_data_dir), "--no-verify", "--val-size", "50", "--hidden", "16", "--epochs", "1",
            "--threads", "1"]


def train_cli(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return run("train", *args, cwd=cwd, env=env, timeout=timeout)


def contents(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (recursively) and its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def previous_run(tmp_path, small) -> Path:
    """A folder holding a whole run of ``small``."""
    out = tmp_path / "r"
    proc = train_cli(*small, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert RUN_FILES | {MARKER} == {p.name for p in out.iterdir()}
    return out


# ----------------------------------------------------------------------------- nothing lost

def _corrupt_copy(data_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bad-data"
    shutil.copytree(data_dir, copy)
    target = copy / "mnist" / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100])
    return copy


@pytest.mark.parametrize("change,fragment", [
    (["--val-size", "300"], "val_size 300 leaves no training images"),
    (["--batch-size", "1000"], "batch_size 1000 is larger than the training set"),
    ("corrupt data", "train-images-idx3-ubyte.gz"),
])
def test_a_refused_new_run_leaves_the_previous_run_as_it_was(previous_run, small, small_data_dir, tmp_path, change,
                                                             fragment):
    before = contents(previous_run)
    args = [*small, "--out", previous_run]
    if change == "corrupt data":
        args[1] = str(_corrupt_copy(small_data_dir, tmp_path))
    else:
        args += change
    assert_one_line_error(train_cli(*args), fragment)
    assert contents(previous_run) == before


def test_a_refused_run_into_a_new_folder_leaves_no_folder_behind(tmp_path, small):
    out = tmp_path / "new" / "deeper"
    assert_one_line_error(train_cli(*small, "--out", out, "--val-size", "300"), "leaves no training images")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_a_persons_own_files_is_refused_and_left_alone(tmp_path, small):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "history.json").write_text('{"my": "own history"}')
    (mine / "model.npz").write_bytes(b"my own model")
    (mine / "notes.txt").write_text("notes")
    before = contents(mine)
    assert_one_line_error(train_cli(*small, "--out", mine), f"{mine}: not a fastmlp run folder",
                          "history.json, model.npz")
    assert contents(mine) == before


def test_a_run_writes_beside_other_files_and_the_next_run_replaces_only_its_own(tmp_path, small):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("notes")
    for _ in range(2):
        proc = train_cli(*small, "--out", folder)
        assert proc.returncode == 0, proc.stderr
        assert (folder / "notes.txt").read_text() == "notes"
    assert {p.name for p in folder.iterdir()} == RUN_FILES | {MARKER, "notes.txt"}


def test_a_run_folder_of_an_earlier_fastmlp_without_a_marker_is_replaced(previous_run, small):
    """A folder with a fastmlp checkpoint is a run's, marker or not."""
    (previous_run / MARKER).unlink()
    proc = train_cli(*small, "--out", previous_run, "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    assert "replacing the previous run" in proc.stdout
    assert json.loads((previous_run / "history.json").read_text())["config"]["seed"] == 5


@pytest.mark.parametrize("how", ["--out", "--resume"])
def test_a_second_writer_is_refused_naming_the_holder(previous_run, small, how):
    """This process holds the folder, as a running run does: a new run and a resumed one are refused."""
    before = contents(previous_run)
    with RunFolder(previous_run, resume=True):
        args = [*small, "--out", previous_run] if how == "--out" else ["--resume", previous_run, "--epochs", "2"]
        assert_one_line_error(train_cli(*args), f"{previous_run}: another fastmlp run is writing this folder",
                              f"pid {os.getpid()} on ")
    after = contents(previous_run)
    assert {k: v for k, v in after.items() if k != MARKER} == {k: v for k, v in before.items() if k != MARKER}
    proc = train_cli("--resume", previous_run, "--epochs", "2", "--threads", "1", "--data-dir",
                     small[1], "--no-verify")
    assert proc.returncode == 0, proc.stderr  # given up: the folder is free again


def test_a_running_run_holds_its_folder_for_its_whole_life(tmp_path, small):
    out, seen = tmp_path / "r", {}

    def log(line):
        if line.startswith("epoch") and not seen:
            seen["second"] = train_cli(*small, "--out", out)
            seen["resume"] = train_cli("--resume", out, "--epochs", "9", "--data-dir", small[1], "--no-verify")

    train(small_config(epochs=2), synthetic_dataset(), out_dir=out, log=log)
    for proc in seen.values():
        assert_one_line_error(proc, "another fastmlp run is writing this folder", f"pid {os.getpid()}")
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == 2


@pytest.mark.parametrize("make", [Path.mkdir, os.mkfifo, lambda p: p.symlink_to(p.parent.parent / "precious")])
def test_a_marker_that_is_no_plain_file_is_one_line_and_no_link_is_followed(tmp_path, small, make):
    (tmp_path / "precious").write_text("a person's file")
    (tmp_path / "r").mkdir()
    make(tmp_path / "r" / MARKER)
    assert_one_line_error(train_cli(*small, "--out", tmp_path / "r"), MARKER, "cannot lock the run folder")
    assert (tmp_path / "precious").read_text() == "a person's file"


def test_a_named_pipe_for_history_json_neither_stalls_a_resumed_run_nor_is_replaced(previous_run, small):
    (previous_run / "history.json").unlink()
    os.mkfifo(previous_run / "history.json")
    proc = train_cli("--resume", previous_run, "--epochs", "2", "--data-dir", small[1], "--no-verify", timeout=120)
    assert_one_line_error(proc, "history.json: is a named pipe, not a regular file")
    assert stat.S_ISFIFO((previous_run / "history.json").lstat().st_mode)


@pytest.mark.parametrize("make", [os.mkfifo, lambda p: p.symlink_to("/dev/zero")])
def test_a_config_file_that_is_a_pipe_or_a_device_is_one_line_at_once(tmp_path, make):
    make(tmp_path / "settings.toml")
    assert_one_line_exit_2(["train", "--config", "settings.toml"], tmp_path,
                           "settings.toml: the configuration file is not a regular file")


# ----------------------------------------------------------------------------- damaged checkpoints and models

def _rewrite_checkpoint(folder: Path, **changes) -> None:
    """``folder``'s checkpoint with metadata fields changed (a value of ``...`` removes the field)."""
    path = folder / CHECKPOINT
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "meta"}
        meta = json.loads(str(f["meta"]))
    for key, value in changes.items():
        target, name = (meta["history"], key[8:]) if key.startswith("history_") else (meta, key)
        if value is ...:
            target.pop(name, None)
        else:
            target[name] = value
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)


@pytest.mark.parametrize("changes,fragment", [
    ({"epoch": -3}, "its epoch is -3, not a whole number >= 1"),
    ({"epoch": 0}, "its epoch is 0"),
    ({"epoch": "abc"}, "its epoch is 'abc'"),
    ({"epoch": 1.5}, "its epoch is 1.5"),
    ({"adam_t": "x"}, "its adam_t is 'x'"),
    ({"adam_t": None}, "its adam_t is None"),
    ({"adam_t": 5}, "its step count 5 is not 1 epochs of"),
    ({"rng": "abc"}, "random generator state"),
    ({"rng": {"bit_generator": "MT19937", "state": {}}}, "random generator state"),
    ({"rng": [1, 2]}, "random generator state"),
    ({"history": [1, 2]}, "its history is not an object"),
    ({"history_epochs": "many"}, "its history is not an object with a list of epochs"),
    ({"history_epochs": []}, "its history records 0 epochs, not 1"),
    ({"history_epochs": ["a record"]}, "record of epoch 1"),
    ({"history_epochs": [{"epoch": 1, "train_loss": "low"}]}, "record of epoch 1"),
    ({"history_dataset": [1]}, "dataset"),
    ({"config": [1]}, "its configuration is not an object"),
    ({"config": {"lr": "fast"}}, "lr must be a number"),
    ({"sizes": "big"}, "its layer sizes are 'big'"),
])
def test_a_damaged_checkpoint_is_one_line(previous_run, small, changes, fragment):
    _rewrite_checkpoint(previous_run, **changes)
    before = contents(previous_run)
    args = ["--resume", previous_run, "--epochs", "2", "--data-dir", small[1], "--no-verify"]
    assert_one_line_error(train_cli(*args), str(previous_run / CHECKPOINT), fragment)
    assert contents(previous_run) == before


def test_a_truncated_checkpoint_is_one_line(previous_run, small):
    path = previous_run / CHECKPOINT
    path.write_bytes(path.read_bytes()[:1000])
    assert_one_line_error(train_cli("--resume", previous_run, "--epochs", "2"), f"{path}: not a readable checkpoint")


@pytest.mark.parametrize("metadata,fragment", [
    ({"config": {"val_size": "abc"}}, 'config.val_size is "abc", expected a whole number >= 0'),
    ({"config": {"val_size": None}}, "config.val_size is null"),
    ({"config": {"val_size": [1, 2]}}, "config.val_size is [1, 2]"),
    ({"config": {"val_size": -1}}, "config.val_size is -1"),
    ({"config": {"dataset": 5}}, "config.dataset is 5"),
    ({"config": ["a", "list"]}, "config is"),
    ({"epoch": "x"}, 'epoch is "x"'),
    ({"input_scale": "x"}, 'input_scale is "x"'),
])
def test_model_metadata_of_the_wrong_type_is_one_line(tmp_path, metadata, fragment):
    model = MLP.initialized([784, 8, 10], np.random.default_rng(0))
    model.save(tmp_path / "model.npz", **metadata)
    assert_one_line_exit_2(["evaluate", "model.npz"], tmp_path, "model.npz: metadata", fragment)


# ----------------------------------------------------------------------------- settings the kernels cannot take

@pytest.mark.parametrize("args,fragment", [
    (["train", "--seed", str(2**64)], "seed must be <= 9223372036854775807"),
    (["train", "--seed", str(2**63)], "seed must be <= 9223372036854775807"),
    (["search", "--seed", str(2**64), "--storage", "s.db"], "seed must be <= 9223372036854775807"),
    (["train", "--elastic-sigma", "1e9", "--augment", "elastic"], "elastic_sigma must be in [1, 28]; got 1e+09"),
    (["train", "--elastic-sigma", "1e12"], "elastic_sigma must be in [1, 28]"),
    (["train", "--crop", str(10**18)], "crop must be in [0, 27]"),
    (["train", "--aug-shift", "1e308"], "aug_shift must be in [0, 27]"),
    (["train", "--dropout", "0.9999999999"], "dropout must be in [0, 1); got 1 (it is 1 in float32"),
    (["train", "--dropout-input", "0.99999999999"], "(it is 1 in float32"),
    (["train", "--label-smoothing", "0.9999999999"], "(it is 1 in float32"),
    (["train", "--ema", "0.9999999999"], "(it is 1 in float32"),
    (["train", "--aug-scale", "0.99999999999"], "(it is 1 in float32"),
    (["train", "--lr", "1e39"], "lr must be > 0; got 1e+39 (it is inf in float32"),
])
def test_a_setting_the_kernels_cannot_take_is_one_line_at_once(tmp_path, args, fragment):
    assert_one_line_exit_2(args, tmp_path, fragment)
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- the command's edges

def test_a_non_ascii_output_folder_prints_under_an_ascii_locale(tmp_path, small):
    proc = train_cli(*small, "--out", "réunion", cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert "wrote r\\xe9union/" in proc.stdout
    assert (tmp_path / "réunion" / "model.npz").exists()


def _read_lines_then_close(args, lines: int, **kw) -> subprocess.CompletedProcess:
    """Run ``fastmlp ARGS`` with stdout a pipe that is closed after ``lines`` lines (``| head -LINES``)."""
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)
    for _ in range(lines):
        proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.wait(timeout=300)
    return subprocess.CompletedProcess(args, proc.returncode, "", stderr)


@pytest.mark.parametrize("lines", [1, 3])
def test_a_closed_output_pipe_ends_a_run_quietly(tmp_path, small, lines):
    """``fastmlp train | head -N``: no traceback, the status SIGPIPE gives, and a run cut after an epoch
    says so in its history (and resumes)."""
    out = tmp_path / "r"
    proc = _read_lines_then_close(["train", *small[:-4], "--epochs", "100000", "--threads", "1", "--out", out], lines)
    assert proc.returncode == 141 and proc.stderr == ""
    if lines == 3 or (out / CHECKPOINT).exists():  # three lines: the start, the data, the training; then an epoch
        history = json.loads((out / "history.json").read_text())
        assert history["status"] == "interrupted" and history["message"] == "the output's reader went away"
        more = len(history["epochs"]) + 1
        resumed = train_cli("--resume", out, "--epochs", more, "--data-dir", small[1], "--no-verify")
        assert resumed.returncode == 0, resumed.stderr


def test_a_file_name_that_is_not_utf8_is_printed_escaped(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image
    model = MLP.initialized([784, 8, 10], np.random.default_rng(0))
    model.save(tmp_path / "model.npz")
    name = os.fsdecode(b"digit-\xff.png")
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / name)
    for encoding in ("utf-8", "ascii"):  # strict encodings, as a UTF-8 locale's stdout is
        proc = run("predict", "model.npz", name, cwd=tmp_path, env={"PYTHONIOENCODING": encoding})
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stdout.startswith("digit-\\udcff.png: ")
        proc = run("predict", "model.npz", os.fsdecode(b"absent-\xff.png"), cwd=tmp_path,
                   env={"PYTHONIOENCODING": encoding})
        assert_one_line_error(proc, "absent-\\udcff.png: no such file")
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "predict", "model.npz", name], cwd=tmp_path,
                          capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8:surrogateescape"})
    assert proc.returncode == 0 and proc.stdout.startswith(b"digit-\xff.png: ")  # the name's own bytes


def test_resume_refuses_another_out_folder(previous_run, small):
    assert_one_line_error(train_cli("--resume", previous_run, "--out", previous_run.parent / "other"),
                          f"--resume {previous_run} continues the run in its own folder")
    assert not (previous_run.parent / "other").exists()
    same = train_cli("--resume", previous_run, "--out", f"{previous_run}/.", "--data-dir", small[1], "--no-verify")
    assert_one_line_error(same, "has trained all its 1 epochs")  # --out accepted: the same folder


@pytest.mark.parametrize("blank", ["", " "])
def test_a_blank_data_dir_variable_is_one_line_not_a_download(tmp_path, blank):
    proc = run("train", "--epochs", "1", cwd=tmp_path, env={"FASTMLP_DATA_DIR": blank, "https_proxy": "http://127.0.0.1:9"},
               timeout=60)
    assert_one_line_error(proc, "FASTMLP_DATA_DIR is set but empty")
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- Ctrl-C

def _interrupt_at(stage: str):
    """A dataset loader and a log that raise KeyboardInterrupt at ``stage``: the data, the start of
    training, or the end of epoch 1."""
    data = synthetic_dataset()

    def load():
        if stage == "data":
            raise KeyboardInterrupt
        return data

    def log(line):
        if (stage == "training" and line.startswith("training:")) or (stage == "epoch" and line.startswith("epoch")):
            raise KeyboardInterrupt
    return load, log


@pytest.mark.parametrize("stage,saved,begun,says", [
    ("data", 0, False, "interrupted before training started; nothing in {out} was changed"),
    ("training", 0, True, "interrupted before the first epoch ended; {out} holds only history.json"),
    ("epoch", 1, True, "the run's files after epoch 1 are in {out}; continue with fastmlp train --resume {out}"),
])
def test_ctrl_c_says_what_the_folder_really_holds(tmp_path, stage, saved, begun, says):
    out = tmp_path / "r"
    train(small_config(epochs=1, seed=9), synthetic_dataset(), out_dir=out)
    before = contents(out)
    load, log = _interrupt_at(stage)
    with pytest.raises(RunInterrupted) as caught:
        train(small_config(epochs=3), load, out_dir=out, log=log)
    assert (caught.value.saved, caught.value.begun) == (saved, begun)
    assert says.format(out=out) in interrupted_line(caught.value, out)
    if stage == "data":
        assert contents(out) == before  # the previous run, as it was
    else:
        assert json.loads((out / "history.json").read_text())["status"] == "interrupted"
        assert (out / CHECKPOINT).exists() == (saved > 0)


def test_ctrl_c_before_the_data_in_a_new_folder_leaves_no_folder(tmp_path):
    load, log = _interrupt_at("data")
    with pytest.raises(RunInterrupted):
        train(small_config(), load, out_dir=tmp_path / "new" / "r", log=log)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_of_the_command_during_training_says_how_to_continue(tmp_path, small):
    out = tmp_path / "r"
    args = [*small[:-4], "--epochs", "100000", "--threads", "1", "--out", out]
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", "train", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch"):
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    epoch = json.loads((out / "history.json").read_text())["epochs"][-1]["epoch"]
    assert stderr.strip() == (f"fastmlp: interrupted; the run's files after epoch {epoch} are in {out}; continue "
                              f"with fastmlp train --resume {out}")


# ----------------------------------------------------------------------------- predict's files

@pytest.fixture
def digits(tmp_path) -> Path:
    """A model and a tree of digit images: a.png, c[1].png, sub/b.png, set[2]/d.png, notes.txt."""
    pytest.importorskip("PIL")
    from PIL import Image
    MLP.initialized([784, 8, 10], np.random.default_rng(0)).save(tmp_path / "model.npz")
    root = tmp_path / "digits"
    for name in ("a.png", "c[1].png", "sub/b.png", "set[2]/d.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(root / name)
    (root / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("pattern,expected", [
    ("digits/**/*.png", ["digits/a.png", "digits/c[1].png", "digits/set[2]/d.png", "digits/sub/b.png"]),
    ("digits/**", ["digits/a.png", "digits/c[1].png", "digits/set[2]/d.png", "digits/sub/b.png"]),
    ("digits/c[1].png", ["digits/c[1].png"]),
    ("digits/set[2]/*.png", ["digits/set[2]/d.png"]),
    ("dig*", ["digits/a.png", "digits/c[1].png"]),
    ("digits/[ab].png", ["digits/a.png"]),
])
def test_predict_takes_recursive_globs_and_names_with_brackets(digits, pattern, expected):
    proc = run("predict", "model.npz", pattern, "--json", cwd=digits)
    assert proc.returncode in (0, 1), proc.stderr  # `**` also matches notes.txt: read, and refused
    read = [r["image"] for r in json.loads(proc.stdout) if "error" not in r]
    assert sorted(read) == expected


def test_predict_refuses_a_named_pipe_at_once(digits):
    os.mkfifo(digits / "pipe.png")
    assert_one_line_exit_2(["predict", "model.npz", "pipe.png"], digits, "pipe.png: a named pipe, not a regular file")


# ----------------------------------------------------------------------------- a read-only install

def test_the_engine_runs_where_no_cache_folder_is_writable(tmp_path):
    """A package installed read-only, ``NUMBA_CACHE_DIR`` read-only and no usable home: the kernels still
    compile, cached in a folder of the temporary folder that is this user's alone."""
    shutil.copytree(Path(__file__).resolve().parents[1] / "fastmlp", tmp_path / "site" / "fastmlp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    readonly, scratch = tmp_path / "readonly", tmp_path / "tmp"
    readonly.mkdir()
    scratch.mkdir()
    for path in [readonly, *(tmp_path / "site").rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    prefix = []
    if os.getuid() == 0:  # root writes anywhere; without these capabilities it honours the permissions
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a folder unwritable")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "NUMBA_CACHE_DIR")}
    env.update(HOME=str(readonly / "home"), NUMBA_CACHE_DIR=str(readonly), TMPDIR=str(scratch),
               PYTHONPATH=str(tmp_path / "site"))
    code = ("import numpy as np, fastmlp; from fastmlp.engine.rng import mix64; "
            "print(fastmlp.__file__); print(int(mix64(np.uint64(1))))")
    try:
        proc = subprocess.run([*prefix, sys.executable, "-c", code], env=env, cwd=scratch, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0] == str(tmp_path / "site" / "fastmlp" / "__init__.py")
        assert list((scratch / f"fastmlp-numba-{os.getuid()}").rglob("*.nbi"))  # cached where it could be
    finally:
        for path in [readonly, *(tmp_path / "site").rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
