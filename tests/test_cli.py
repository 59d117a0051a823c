"""The ``fastmlp`` command: its subcommands work, and every user error is one line, not a traceback."""

import gzip
import json

import numpy as np
import pytest
from helpers import assert_one_line_error, run

from fastmlp.cli import build_parser
from fastmlp.cli_train import train_config_from_args
from fastmlp.config import PRESETS, TrainConfig, read_config_file
from fastmlp.errors import ConfigError


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
    (["--threads", "0", "--data-dir", "."], "--threads must be in 1..1024"),
    (["--dropout", "1"], "dropout must be in [0, 1)"),
    (["--preset", "best", "--ema", "1.5"], "ema must be in [0, 1)"),
    (["--augment", "rotate"], "invalid choice: 'rotate'"),
    (["--schedule", "step"], "invalid choice: 'step'"),
    (["--preset", "slow"], "invalid choice: 'slow'"),
])
def test_train_rejects_bad_hyperparameters_in_one_line(args, fragment):
    assert_one_line_error(run("train", *args), fragment)


def config(*argv) -> TrainConfig:
    """The configuration ``fastmlp train ARGV`` would train."""
    return train_config_from_args(build_parser().parse_args(["train", *argv]))


def test_a_preset_gives_the_defaults_and_explicit_flags_override_it():
    assert config() == TrainConfig() == config("--preset", "fast")
    best = config("--preset", "best")
    assert best == TrainConfig.preset("best") and best.augment == PRESETS["best"]["mnist"]["augment"]
    tuned = config("--preset", "best", "--epochs", "3", "--hidden", "64", "--augment", "none", "--dropout", "0")
    assert (tuned.epochs, tuned.hidden_sizes, tuned.augment, tuned.dropout) == (3, (64,), "none", 0.0)
    assert tuned.schedule == best.schedule and tuned.ema == best.ema  # the rest stays the preset's
    assert config("--lr", "0.01").lr == 0.01 and config("--lr", "0.01").epochs == TrainConfig().epochs


def test_a_presets_warm_up_keeps_its_share_of_other_epochs_unless_given():
    best = config("--preset", "best")
    short = config("--preset", "best", "--epochs", "20")
    assert short.warmup == best.warmup * 20 / best.epochs  # 36 of 120: 6 of 20
    assert config("--preset", "best", "--epochs", "20", "--warmup", "12").warmup == 12
    assert TrainConfig.preset("best", epochs=20) == short
    assert config("--preset", "best", "--epochs", "20", "--schedule", "decay").warmup == best.warmup  # unused there


def test_the_warm_up_line_names_the_epochs_the_run_has(tmp_path):
    (tmp_path / "e10.toml").write_text("epochs = 10\n")
    proc = run("train", "--preset", "best", "--config", tmp_path / "e10.toml", "--epochs", "4", "--print-config")
    assert proc.stdout.startswith("# --preset best's warm-up keeps its share of the epochs: 1.2 of 4 (36 of its 120)")


@pytest.mark.parametrize("args", [["--schedule", "cosine", "--warmup", "10", "--epochs", "2"],
                                  ["--preset", "best", "--warmup", "120"]])
def test_a_warm_up_as_long_as_the_run_is_one_line(args):
    assert_one_line_error(run("train", *args, "--print-config"), "is not shorter than --epochs",
                          "would never leave its warm-up")


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
    assert {p.name for p in out.iterdir()} == {"history.json", "metrics.csv", "model.npz", "curves.png",
                                               "checkpoint.npz", ".fastmlp-run"}
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


# ----------------------------------------------------------------------------- configuration files

def test_the_configuration_is_the_preset_then_the_file_then_the_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('lr = 0.01\nepochs = 3\nhidden_sizes = [64, 32]\naugment = "affine"\n')
    from_file = config("--config", str(path))
    assert (from_file.lr, from_file.epochs, from_file.hidden_sizes, from_file.augment) == (0.01, 3, (64, 32), "affine")
    assert from_file.batch_size == TrainConfig().batch_size  # the rest stays the preset's
    over_best = config("--preset", "best", "--config", str(path), "--epochs", "5", "--hidden", "128")
    assert (over_best.lr, over_best.epochs, over_best.hidden_sizes) == (0.01, 5, (128,))
    assert over_best.ema == PRESETS["best"]["mnist"]["ema"] and over_best.val_size == 0


def test_print_config_writes_toml_that_config_reads_back_to_the_same_configuration(tmp_path):
    proc = run("train", "--preset", "best", "--epochs", "3", "--patience", "0", "--print-config")
    assert proc.returncode == 0 and proc.stderr == ""
    (tmp_path / "printed.toml").write_text(proc.stdout)
    values = read_config_file(tmp_path / "printed.toml")
    assert TrainConfig(**values) == config("--preset", "best", "--epochs", "3")
    assert set(values) == set(TrainConfig.__dataclass_fields__)  # every field, so nothing depends on defaults


def test_a_history_json_or_its_config_object_is_read_as_a_configuration(tmp_path):
    wanted = TrainConfig(hidden_sizes=(48,), lr=2e-3, epochs=2, patience=2, min_delta=0.001)
    (tmp_path / "history.json").write_text(json.dumps({"config": wanted.to_dict(), "epochs": [], "status": "done"}))
    (tmp_path / "config.json").write_text(json.dumps(wanted.to_dict()))
    assert config("--config", str(tmp_path / "history.json")) == wanted
    assert config("--config", str(tmp_path / "config.json")) == wanted


@pytest.mark.parametrize("text,fragment", [
    ("lrr = 0.01\n", "unknown key 'lrr' (did you mean 'lr'?)"),
    ('lr = "fast"\n', "lr must be a number > 0; got 'fast'"),
    ("epochs = 0\n", "epochs must be >= 1; got 0"),
    ("epochs = 2.5\n", "epochs must be an integer >= 1; got 2.5"),
    ("patience = -1\n", "patience must be >= 0"),
    ("min_delta = true\n", "min_delta must be a number >= 0; got True"),
    ('hidden_sizes = "512,256"\n', "hidden_sizes must be a list of positive integers"),
    ('augment = "rotate"\n', "augment must be one of none, affine, elastic"),
    ("lr = \n", "not valid TOML"),
])
def test_a_bad_configuration_file_is_one_line_naming_the_file_and_the_key(tmp_path, text, fragment):
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert_one_line_error(run("train", "--config", path, "--print-config"), f"{path}: ", fragment)


@pytest.mark.parametrize("sizes", ["128", (3.7,), 5, [True], None])
def test_hidden_sizes_that_are_not_whole_numbers_are_refused_not_coerced(sizes):
    with pytest.raises(ConfigError, match="hidden_sizes must be a list of positive integers"):
        TrainConfig(hidden_sizes=sizes)


def test_numpy_numbers_are_numbers_to_every_rule():
    config = TrainConfig(hidden_sizes=(np.int64(64), 32.0), lr=np.float32(0.5), epochs=np.int64(3),
                         beta2=np.float16(0.5)).validate()
    assert config.hidden_sizes == (64, 32) and (config.lr, config.epochs, config.beta2) == (0.5, 3, 0.5)
    assert (type(config.lr), type(config.epochs)) == (float, int)
    with pytest.raises(ConfigError, match="lr must be a number > 0; got np.True_"):
        TrainConfig(lr=np.bool_(True)).validate()


HUGE = str(10 ** 309)  # beyond any float


@pytest.mark.parametrize("args,fragment", [
    (["--epochs", HUGE], "epochs must be an integer >= 1; got an integer of 1027 bits"),
    (["--seed", HUGE], "seed must be an integer >= 0; got an integer of 1027 bits"),
    (["--lr", HUGE], "lr must be finite"),
    (["--hidden", f"64,{HUGE}"], "hidden_sizes must be positive integers below 2**31; got [64, 'an integer of"),
    (["--hidden", "3000000000"], "hidden_sizes must be positive integers below 2**31"),
])
def test_integers_beyond_any_float_are_one_line(args, fragment):
    assert_one_line_error(run("train", *args, "--print-config"), fragment)


@pytest.mark.parametrize("text", ['hidden_sizes = [16]\n[config]\nepochs = 2\n',
                                  '{"config": {"epochs": 2}, "epochs": 3}'])
def test_a_config_table_with_settings_beside_it_is_one_line_not_half_read(tmp_path, text):
    path = tmp_path / ("run.json" if text.startswith("{") else "run.toml")
    path.write_text(text)
    assert_one_line_error(run("train", "--config", path, "--print-config"), "holds a [config] table and settings "
                                                                           "beside it")


def test_a_missing_configuration_file_is_one_line(tmp_path):
    assert_one_line_error(run("train", "--config", tmp_path / "none.toml"), "none.toml: no such configuration file")


# ----------------------------------------------------------------------------- early stopping and what a run prints

@pytest.mark.parametrize("args,fragment", [
    (["--preset", "best", "--patience", "3"], "--patience needs a validation hold-out, and --preset best leaves none"),
    (["--val-size", "0", "--patience", "2"], "and --val-size 0 leaves none; give --val-size N"),
    (["--min-delta", "-0.1"], "min_delta must be >= 0"),
])
def test_patience_without_a_validation_hold_out_is_one_line(args, fragment):
    assert_one_line_error(run("train", *args, "--print-config"), fragment)


SMALL = ["--hidden", "32", "--batch-size", "50", "--threads", "1", "--no-verify", "--lr", "0.003"]


def test_a_run_prints_validation_figures_each_epoch_and_the_test_accuracy_once(small_data_dir, tmp_path):
    proc = run("train", *SMALL, "--data-dir", small_data_dir, "--val-size", "100", "--epochs", "40",
               "--patience", "2", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch")]
    assert 2 < len(epoch_lines) < 40 and all("val loss" in line and "test" not in line for line in epoch_lines)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["status"] == "stopped early"
    assert f"stopped early after epoch {len(epoch_lines)}: the validation accuracy has not improved" in proc.stdout
    tested = [line for line in proc.stdout.splitlines() if "test accuracy" in line]
    assert tested == [f"test accuracy of the best-validation model (epoch {history['best_epoch']}): "
                      f"{100 * history['test_acc']:.2f}%"]
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 1 + len(epoch_lines)


def test_a_run_without_a_hold_out_says_at_the_start_that_it_keeps_the_last_epoch(small_data_dir, tmp_path):
    proc = run("train", *SMALL, "--data-dir", small_data_dir, "--preset", "best", "--augment", "none", "--epochs",
               "1", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert ("--preset best trains on all its training images: no validation hold-out, the last epoch is kept"
            in proc.stdout.splitlines()[1])
    assert "test accuracy of the last epoch's model (epoch 1): " in proc.stdout


@pytest.mark.parametrize("args,fragment", [
    (["--preset", "best"], "--preset cannot be given with --resume"),
    (["--lr", "0.5"], "lr cannot change (it was 0.003; --epochs, --patience and --min-delta may)"),
    ([], "the run has trained all its 2 epochs; give --epochs above 2 to continue it"),
])
def test_resume_keeps_the_runs_settings_and_refuses_a_run_with_nothing_left(small_data_dir, tmp_path, args,
                                                                             fragment):
    out = tmp_path / "run"
    assert run("train", *SMALL, "--data-dir", small_data_dir, "--val-size", "100", "--epochs", "2",
               "--out", out).returncode == 0
    assert_one_line_error(run("train", "--resume", out, "--data-dir", small_data_dir, "--no-verify", *args),
                          fragment)


# ----------------------------------------------------------------------------- the parsers

def test_bare_fastmlp_prints_the_full_help_and_succeeds():
    proc = run()
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: fastmlp") and "train" in proc.stdout and "predict" in proc.stdout


def test_the_dataset_names_of_data_are_optional_in_its_help():
    proc = run("data", "--help")
    assert proc.returncode == 0
    assert "{download,info} [DATASET ...]" in proc.stdout and "optional" in proc.stdout


@pytest.mark.parametrize("args,help_of", [(["train", "--bogus", "3"], "fastmlp train"),
                                          (["evaluate", "m.npz", "--what"], "fastmlp evaluate"),
                                          (["search", "--hiden", "64"], "fastmlp search")])
def test_an_unknown_argument_points_to_the_help_of_its_command(args, help_of):
    assert_one_line_error(run(*args), "unrecognized arguments", f"(see {help_of} --help)")


def test_search_refuses_hidden_and_points_to_its_own_flags():
    assert_one_line_error(run("search", "--hidden", "512,256", "--print-space"), "a search has no --hidden",
                          "--layers SPEC", "--width SPEC", "(see fastmlp search --help)")


def test_the_help_says_when_to_use_alpha_and_when_weight_decay():
    from fastmlp.config import RULES
    assert "for parity with scikit-learn's alpha (for Adam training use --weight-decay)" in RULES["alpha"].help
    assert "the decay to use for Adam training" in RULES["weight_decay"].help
    text = " ".join(run("train", "--help").stdout.split())
    assert "(for Adam training use --weight-decay)" in text and "the decay to use for Adam training" in text


def test_every_option_names_its_value_by_kind():
    """N for counts, X for numbers, FILE, DIR, URL for places; never argparse's upper-cased dest."""
    for command in ("train", "evaluate", "data", "search", "dashboard", "report", "predict", "export"):
        usage = run(command, "--help").stdout.split("\n\n")[0]
        for dest in ("DATA_DIR", "OUT", "RESUME", "THREADS", "PORT", "HOST", "TOP", "SEED", "TIMEOUT", "RUN_DIR"):
            assert f" {dest}" not in usage, (command, dest)


def test_the_best_preset_is_each_datasets_own_and_says_when_a_dataset_has_none(tmp_path, capsys):
    """MNIST's recipe warps the digits; Fashion-MNIST's flips the clothes instead (shifts and erasing lost on
    its validation hold-out, docs/recipe.md); any other dataset gets the recipe without image-specific
    transforms, and --print-config says so."""
    from fastmlp.cli import main
    mnist, fashion = TrainConfig.preset("best"), TrainConfig.preset("best", dataset="fashion-mnist")
    assert mnist.augment == "elastic" and mnist.flip == 0
    assert fashion.augment == "none" and fashion.flip == 0.5 and fashion.crop == 0 and fashion.erase == 0
    other = TrainConfig.preset("best", dataset="kmnist")
    assert other.augment == "none" and not other.augmented and other.hidden_sizes == mnist.hidden_sizes
    assert main(["train", "--preset", "best", "--dataset", "kmnist", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# --preset best has no recipe chosen for kmnist")
    config = tmp_path / "run.toml"
    config.write_text(out)
    assert read_config_file(config)["dataset"] == "kmnist"
