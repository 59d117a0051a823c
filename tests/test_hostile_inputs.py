"""Hostile inputs through the command line: each ends as one line naming the problem, exit 2.

Every case runs ``python -m fastmlp`` in a subprocess, in an empty current folder, without
``$FASTMLP_DATA_DIR`` and with the network out of reach, and checks: exit status 2, exactly one
line on stderr, starting ``fastmlp: error:``, no traceback, and an answer before any work starts
(``helpers.PROMPT`` seconds, a bound no real run meets).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_exit_2
from model_files import MALFORMED

TRAIN = ("train", "--epochs", "1", "--hidden", "16")
@pytest.fixture
def cwd(tmp_path) -> Path:
    """An empty current folder for the command (so no ./data)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


@pytest.fixture
def mnist_dir(tmp_path, synthetic) -> Path:
    """A data folder holding a small dataset under MNIST's file names (read with --no-verify)."""
    synthetic.write(tmp_path / "data" / "mnist", "gz")
    return tmp_path / "data"


def mnist_file(base: Path, name: str) -> Path:
    return base / "mnist" / name


# ----------------------------------------------------------------------------- data files

def test_npy_header_claiming_10_to_the_12_rows(cwd, mnist_dir):
    folder = mnist_dir / "mnist"
    for f in folder.iterdir():
        f.unlink()
    rng = np.random.default_rng(0)
    np.save(folder / "train_labels.npy", rng.integers(0, 10, 12).astype(np.uint8))
    np.save(folder / "test_images.npy", rng.integers(0, 256, (7, 784)).astype(np.uint8))
    np.save(folder / "test_labels.npy", rng.integers(0, 10, 7).astype(np.uint8))
    with open(folder / "train_images.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**12, 784)})
        fh.write(bytes(784))
    assert_one_line_exit_2([*TRAIN, "--data-dir", mnist_dir, "--no-verify"], cwd, "train_images.npy", "truncated")


def test_named_pipe_in_place_of_a_data_file(cwd, mnist_dir):
    target = mnist_file(mnist_dir, "train-labels-idx1-ubyte.gz")
    target.unlink()
    os.mkfifo(target)
    assert_one_line_exit_2([*TRAIN, "--data-dir", mnist_dir, "--no-verify"], cwd, str(target), "named pipe")


def test_sparse_2_gib_images_file_whose_header_disagrees_with_the_labels(cwd, mnist_dir):
    target = mnist_file(mnist_dir, "train-images-idx3-ubyte")
    mnist_file(mnist_dir, "train-images-idx3-ubyte.gz").unlink()
    count = (1 << 31) // 784
    with open(target, "wb") as fh:
        fh.write(np.array([0x803, count, 28, 28], ">i4").tobytes())
        fh.truncate(16 + count * 784)
    assert_one_line_exit_2([*TRAIN, "--data-dir", mnist_dir, "--no-verify"], cwd,
                           f"{count} train images but 12 train labels")


def test_gzip_of_two_members_cut_short(cwd, mnist_dir, synthetic):
    target = mnist_file(mnist_dir, "train-images-idx3-ubyte.gz")
    raw = synthetic.idx("train_images")
    target.write_bytes((gzip.compress(raw[:100]) + gzip.compress(raw[100:]))[:-100])
    assert_one_line_exit_2([*TRAIN, "--data-dir", mnist_dir, "--no-verify"], cwd, str(target), "truncated")


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs /proc/self/mem")
def test_read_error_while_reading_a_data_file(cwd, mnist_dir):
    """/proc/self/mem is a regular file whose first bytes cannot be read: EIO."""
    target = mnist_file(mnist_dir, "t10k-labels-idx1-ubyte")
    mnist_file(mnist_dir, "t10k-labels-idx1-ubyte.gz").unlink()
    target.symlink_to("/proc/self/mem")
    assert_one_line_exit_2([*TRAIN, "--data-dir", mnist_dir, "--no-verify"], cwd, str(target),
                           "Input/output error")


# ----------------------------------------------------------------------------- data folders

def test_data_dir_that_is_a_file(cwd):
    (cwd / "afile").write_bytes(b"")
    assert_one_line_exit_2([*TRAIN, "--data-dir", "afile"], cwd, "afile is a file, not a folder")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("folder", ["/proc", "/proc/self/fd"])
def test_data_dir_under_proc(cwd, folder):
    assert_one_line_exit_2([*TRAIN, "--data-dir", folder], cwd, f"{folder}/mnist", "--data-dir", "FASTMLP_DATA_DIR")


def test_no_data_anywhere_and_nowhere_to_download_it(cwd):
    """Run from /proc, where ./data cannot be created (a read-only folder does not stop root)."""
    assert_one_line_exit_2([*TRAIN, "--out", str(cwd / "run")], Path("/proc"), "data/mnist",
                           "--data-dir", "FASTMLP_DATA_DIR")


# ----------------------------------------------------------------------------- model files

# One of each kind; tests/test_model.py has them all, without the command line.
MODEL_CASES = ["empty", "truncated-half", "npy-renamed", "zip-of-other-arrays", "metadata-json-list", "sizes-2d",
               "sizes-huge", "params-strings", "params-float64", "params-too-short", "params-nan"]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_malformed_model_file(cwd, case):
    content, fragment = MALFORMED[case]
    (cwd / "model.npz").write_bytes(content)
    line = assert_one_line_exit_2(["evaluate", "model.npz"], cwd, "model.npz")
    assert fragment in line.lower(), line


def test_named_pipe_as_model_file(cwd):
    os.mkfifo(cwd / "model.npz")
    assert_one_line_exit_2(["evaluate", "model.npz"], cwd, "named pipe")


# ----------------------------------------------------------------------------- search storage and space

def test_a_space_file_that_is_not_utf8(cwd):
    (cwd / "space.toml").write_bytes(b'lr = "\xff\xfe"\n')
    assert_one_line_exit_2(["search", "--space", "space.toml", "--storage", "s.db"], cwd,
                           "space.toml", "not UTF-8")


@pytest.mark.parametrize("value", ["inf", "nan", "1e400", "0"])
def test_a_search_time_budget_that_is_not_a_finite_positive_number(cwd, value):
    assert_one_line_exit_2(["search", "--timeout", value, "--storage", "s.db"], cwd, "--timeout must be a number")


@pytest.mark.parametrize("name,text", [("deep.toml", "lr = " + "[" * 500 + "]" * 500),
                                       ("deep.json", '{"lr": ' + "[" * 1000 + "]" * 1000 + "}")])
@pytest.mark.parametrize("command", [["search", "--print-space", "--space"], ["train", "--print-config", "--config"]])
def test_a_settings_file_nested_hundreds_deep_is_one_line(cwd, name, text, command):
    (cwd / name).write_text(text)
    assert_one_line_exit_2([*command, name], cwd, f"{name}: values nested too deeply")


def test_a_negative_search_seed(cwd):
    assert_one_line_exit_2(["search", "--seed", "-1", "--storage", "s.db"], cwd, "seed must be >= 0")


@pytest.mark.parametrize("command", [["search", "--trials", "1"], ["search", "--status"],
                                     ["report", "--no-retrain"]])
def test_a_study_storage_with_a_damaged_table(cwd, command):
    import sqlite3
    with sqlite3.connect(cwd / "damaged.db") as db:
        db.execute("create table studies (x integer)")
    assert_one_line_exit_2([*command, "--storage", "damaged.db"], cwd, "damaged.db", "damaged")


# ----------------------------------------------------------------------------- threads

@pytest.mark.parametrize("args", [[*TRAIN, "--threads", "99999999999999999999"], [*TRAIN, "--threads", "0"],
                                  ["search", "--trials", "1", "--threads", "1025"],
                                  ["report", "--threads", "5000"]])
def test_a_thread_count_beyond_any_machine_is_one_line(cwd, args):
    assert_one_line_exit_2(args, cwd, "--threads must be in 1..1024")


@pytest.mark.parametrize("value", ["²", "٣", "-1", "0", "two"])
def test_numba_num_threads_that_is_not_a_positive_ascii_number_is_one_line(cwd, value, monkeypatch):
    monkeypatch.setenv("NUMBA_NUM_THREADS", value)
    assert_one_line_exit_2([*TRAIN, "--print-config"], cwd, "NUMBA_NUM_THREADS must be a positive integer")
