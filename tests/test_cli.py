"""The ``fastmlp`` command: its subcommands work, and every user error is one line, not a traceback."""

import gzip
import os
import subprocess
import sys

import pytest


def run(*args, cwd=None, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_gradcheck_passes_and_lists_every_gradient():
    proc = run("gradcheck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all 7 gradients agree" in proc.stdout
    for name in ("W1", "b1", "W3", "b3", "x"):
        assert f" {name} " in proc.stdout


@pytest.mark.parametrize("args,fragment", [
    (["--lr", "-1"], "lr must be > 0"),
    (["--beta2", "1"], "beta2 must be in [0, 1)"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--eps", "1e-50"], "eps must be > 0; got 1e-50 (it is 0 in float32"),
    (["--hidden", "512 256"], "expected comma-separated integers"),
    (["--hidden", "10,,20"], "expected comma-separated integers"),
    (["--threads", "0", "--data-dir", "."], "--threads must be >= 1"),
    (["--dropout", "1"], "dropout must be in [0, 1)"),
    (["--preset", "best", "--ema", "1.5"], "ema must be in [0, 1)"),
    (["--augment", "rotate"], "invalid choice: 'rotate'"),
    (["--schedule", "step"], "invalid choice: 'step'"),
    (["--preset", "slow"], "invalid choice: 'slow'"),
])
def test_train_rejects_bad_hyperparameters_in_one_line(args, fragment):
    assert_one_line_error(run("train", *args), fragment)


def test_a_preset_gives_the_defaults_and_explicit_flags_override_it():
    from fastmlp.cli import build_parser, train_config_from_args
    from fastmlp.config import PRESETS, TrainConfig

    def config(*argv):
        return train_config_from_args(build_parser().parse_args(["train", *argv]))

    assert config() == TrainConfig() == config("--preset", "fast")
    best = config("--preset", "best")
    assert best == TrainConfig.preset("best") and best.augment == PRESETS["best"]["augment"]
    tuned = config("--preset", "best", "--epochs", "3", "--hidden", "64", "--augment", "none", "--dropout", "0")
    assert (tuned.epochs, tuned.hidden_sizes, tuned.augment, tuned.dropout) == (3, (64,), "none", 0.0)
    assert tuned.schedule == best.schedule and tuned.ema == best.ema  # the rest stays the preset's
    assert config("--lr", "0.01").lr == 0.01 and config("--lr", "0.01").epochs == TrainConfig().epochs


def test_train_rejects_malformed_hidden_sizes():
    proc = run("train", "--hidden", "512,zero")
    assert proc.returncode == 2 and "expected comma-separated integers" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_corrupt_data_file_is_named_in_one_line(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 20))
    proc = run("train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(proc, "train-images-idx3-ubyte.gz", "wrong IDX magic 0x00000801")


def test_evaluating_a_missing_model_is_one_line(tmp_path):
    assert_one_line_error(run("evaluate", str(tmp_path / "nope.npz")), "no such model file")


def test_an_unknown_dataset_is_one_line(tmp_path):
    assert_one_line_error(run("data", "info", "cifar"), "unknown dataset 'cifar'")


@pytest.mark.slow
def test_train_then_evaluate_on_mnist(mnist, tmp_path):
    out = tmp_path / "run"
    proc = run("train", "--hidden", "64", "--batch-size", "256", "--epochs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "epoch   1" in proc.stdout and "test accuracy" in proc.stdout
    assert {p.name for p in out.iterdir()} == {"history.json", "model.npz", "curves.png", "checkpoint.npz"}
    proc = run("evaluate", str(out / "model.npz"))
    assert proc.returncode == 0, proc.stderr
    assert "test" in proc.stdout and "validation" in proc.stdout
    test_line = next(line for line in proc.stdout.splitlines() if line.strip().startswith("test"))
    assert float(test_line.split()[-1].rstrip("%")) > 90


def test_version_prints_the_installed_distribution_version():
    from importlib.metadata import version
    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"fastmlp {version('fastmlp')}"
