"""The search: its space, a tiny study end to end on real MNIST, resuming, interruptions (Ctrl-C,
a killed worker, the time budget), diverging trials, worker processes, and one-line user errors."""

import json
import os
import subprocess
import sys
import time

import optuna
import pytest

from fastmlp import search
from fastmlp import train as trainmod
from fastmlp.cli import main
from fastmlp.search import Space, parse_param, read_space_file
from fastmlp.train import ConfigError

optuna.logging.set_verbosity(optuna.logging.ERROR)

# A tiny space: one small hidden layer, 2000 training images, one epoch a trial.
SMALL = ["--subset", "2000", "--epochs", "1", "--layers", "1", "--width", "16,32", "--batch-size", "25,50"]
TINY = [*SMALL, "--lr", "1e-3:3e-3"]


def run_search(storage, *args) -> int:
    return main(["search", "--storage", str(storage), *args])


def trials_of(storage, name="mnist"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{storage}").get_trials(deepcopy=False)


def states(trials) -> list[str]:
    return [t.state.name for t in trials]


# ----------------------------------------------------------------------------- the space

def test_the_default_space_covers_the_homeworks_hyperparameters():
    space = Space.default()
    assert set(space.params) >= {"batch_size", "layers", "width", "lr", "beta1", "beta2", "eps"}
    assert space.params["lr"].scale == "log" and space.params["eps"].scale == "log"
    assert space.params["beta2"].scale == "log1m"
    assert space.epochs >= space.min_epochs >= 1
    assert Space.from_mapping(space.to_dict()) == space  # what the study stores reads back the same


@pytest.mark.parametrize("name,raw,kind,expect", [
    ("lr", "1e-4:3e-3", "range", (1e-4, 3e-3, "log")),
    ("beta1", "0.8:0.99", "range", (0.8, 0.99, "linear")),
    ("beta2", {"low": 0.99, "high": 0.9999}, "range", (0.99, 0.9999, "log1m")),
    ("eps", {"low": 1e-9, "high": 1e-6, "log": False}, "range", (1e-9, 1e-6, "linear")),
    ("batch_size", "32,64", "choice", (32, 64)),
    ("width", [128, 256, 128], "choice", (128, 256)),
    ("layers", 2, "fixed", 2),
    ("lr", "1e-3", "fixed", 1e-3),
    ("lr", {"value": 1e-3}, "fixed", 1e-3),
    ("batch_size", [64], "fixed", 64),
    ("lr", "1e-3:1e-3", "fixed", 1e-3),
])
def test_space_entries_read_as_numbers_lists_ranges_or_tables(name, raw, kind, expect):
    p = parse_param(name, raw)
    assert p.kind == kind
    if kind == "range":
        assert (p.low, p.high, p.scale) == expect
    elif kind == "choice":
        assert p.choices == expect
    else:
        assert p.value == expect


@pytest.mark.parametrize("name,raw,message", [
    ("lr", "0:1e-3", "lr: must be > 0"),
    ("lr", {"low": 1e-3, "high": 1e-4}, "low 1e-03 is above high 1e-04"),
    ("beta1", {"low": 0.0, "high": 0.9, "scale": "log"}, "a log scale needs low > 0"),
    ("beta2", 1.0, "beta2: must be in [0, 1)"),
    ("batch_size", 0, "batch_size: must be a positive integer"),
    ("width", "64.5", "width: must be a positive integer"),
    ("lr", "fast", "lr: not a number"),
    ("lr", [], "the list of choices is empty"),
    ("lr", {"low": 1e-4}, "a range needs both low and high"),
    ("lr", {"low": 1e-4, "high": 1e-3, "scale": "cubic"}, "scale must be one of"),
    ("lr", {"lo": 1e-4}, "unknown key 'lo'"),
    ("lr", True, "expected a number"),
])
def test_bad_space_entries_are_one_line_errors_naming_them(name, raw, message):
    with pytest.raises(ConfigError) as err:
        parse_param(name, raw, where="space.toml")
    text = str(err.value)
    assert message in text and text.startswith(f"space.toml: {name}") and "\n" not in text


def test_a_space_file_in_toml_or_json_changes_the_default(tmp_path):
    toml = tmp_path / "space.toml"
    toml.write_text('lr = "1e-3:2e-3"\nbatch_size = [64]\nepochs = 3\n[beta2]\nlow = 0.99\nhigh = 0.999\n')
    space = read_space_file(toml, Space.default())
    assert (space.params["lr"].low, space.params["lr"].high) == (1e-3, 2e-3)
    assert space.params["batch_size"].value == 64 and space.epochs == 3
    assert space.params["beta2"].high == 0.999
    assert space.params["width"] == Space.default().params["width"]  # untouched entries stay
    js = tmp_path / "space.json"
    js.write_text(json.dumps({"eta": 1e-3, "epsilon": "1e-8:1e-7", "min_epochs": 2}))
    space = read_space_file(js, Space.default())
    assert space.params["lr"].value == 1e-3 and space.params["eps"].kind == "range" and space.min_epochs == 2


def test_trial_seeds_are_deterministic_and_distinct():
    assert search.trial_seed(0, 5) == search.trial_seed(0, 5)
    assert len({search.trial_seed(0, n) for n in range(100)}) == 100
    assert search.trial_seed(0, 5) != search.trial_seed(1, 5)


# ----------------------------------------------------------------------------- user errors

def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.mark.parametrize("files,args,fragment", [
    ({}, ["--space", "missing.toml"], "missing.toml: no such space file"),
    ({"bad.toml": "lr = [1e-3,"}, ["--space", "bad.toml"], "bad.toml: not valid TOML"),
    ({"bad.json": '{"lr": }'}, ["--space", "bad.json"], "bad.json: not valid JSON"),
    ({"odd.json": '{"momentum": 0.9}'}, ["--space", "odd.json"], "unknown hyperparameter 'momentum'"),
    ({}, ["--lr", "0:1e-3"], "flags: lr: must be > 0"),
    ({}, ["--epochs", "2", "--min-epochs", "3"], "min_epochs 3 is above epochs 2"),
    ({}, ["--jobs", "0"], "--jobs must be >= 1"),
    ({}, ["--timeout", "-5"], "--timeout must be > 0"),
])
def test_a_bad_space_file_or_flag_is_a_one_line_error_and_touches_no_storage(tmp_path, files, args, fragment):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = run_cli("search", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: ") and fragment in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_print_space_writes_toml_that_reads_back(tmp_path):
    proc = run_cli("search", "--print-space", "--lr", "1e-3", "--batch-size", "64,128", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "s.toml").write_text(proc.stdout)
    space = read_space_file(tmp_path / "s.toml", Space.default())
    assert space.params["lr"].value == 1e-3 and space.params["batch_size"].choices == (64, 128)
    assert space == Space.from_mapping({"lr": 1e-3, "batch_size": [64, 128]}, Space.default())


# ----------------------------------------------------------------------------- on real MNIST

def test_a_tiny_search_runs_end_to_end_and_never_looks_at_the_test_set(mnist, tmp_path, monkeypatch, capsys):
    seen = []
    real_train = trainmod.train

    def spy(config, dataset=None, **kw):
        seen.append(kw.get("evaluate_test"))
        return real_train(config, dataset, **kw)
    monkeypatch.setattr(trainmod, "train", spy)
    db = tmp_path / "s.db"
    assert run_search(db, "--trials", "3", *TINY) == 0
    out = capsys.readouterr().out
    trials = trials_of(db)
    assert len(trials) == 3 and seen == [False] * 3
    assert states(trials) == ["COMPLETE"] * 3
    for t in trials:
        assert 0.3 < t.value <= 1.0  # 2000 images, one epoch: well above chance (0.1)
        assert t.intermediate_values == {1: t.value}
        assert t.user_attrs["epochs_run"] == 1 and t.user_attrs["config"]["hidden_sizes"][0] in (16, 32)
        assert t.user_attrs["config"]["seed"] == search.trial_seed(0, t.number)
        assert "test_acc" not in t.user_attrs
    for n in range(3):
        assert f"trial {n:>4} complete" in out
    assert "3 done" in out and "best: trial" in out


def test_resuming_adds_trials_with_the_studys_own_settings(mnist, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert run_search(db, "--trials", "2", *TINY) == 0
    first = trials_of(db)
    capsys.readouterr()
    assert run_search(db, "--trials", "2") == 0  # no space flags: the study's stored space and subset
    out = capsys.readouterr().out
    assert "resuming with 2 trials" in out and "training on first 2000" in out
    trials = trials_of(db)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert states(trials) == ["COMPLETE"] * 4
    assert [t.params for t in trials[:2]] == [t.params for t in first]  # the old ones untouched
    assert trials[2].params not in (trials[0].params, trials[1].params)  # the sampler did not start over
    assert all(t.user_attrs["config"]["hidden_sizes"][0] in (16, 32) for t in trials)


def test_resuming_with_another_subset_is_refused(mnist, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert run_search(db, "--trials", "1", *TINY) == 0
    assert run_search(db, "--trials", "1", "--subset", "3000") == 2
    assert "was searched with subset 2000" in capsys.readouterr().err
    assert len(trials_of(db)) == 1


def test_an_interrupted_trial_is_marked_queued_again_and_run_by_the_next_search(mnist, tmp_path, monkeypatch,
                                                                             capsys):
    db = tmp_path / "s.db"
    real_train = trainmod.train

    def interrupted_train(config, dataset=None, *, on_epoch=None, **kw):
        def on_epoch_then_ctrl_c(rec):
            on_epoch(rec)
            if rec["epoch"] == 2:
                raise KeyboardInterrupt  # as Ctrl-C during epoch 3
        return real_train(config, dataset, on_epoch=on_epoch_then_ctrl_c, **kw)
    monkeypatch.setattr(trainmod, "train", interrupted_train)
    args = ["--subset", "1000", "--epochs", "4", "--layers", "1", "--width", "16", "--pruner", "none"]
    assert run_search(db, *args) == 130
    assert "interrupted" in capsys.readouterr().out
    trials = trials_of(db)  # the storage is consistent: nothing left RUNNING
    assert states(trials) == ["FAIL", "WAITING"]
    cut, queued = trials
    assert cut.user_attrs["stop_reason"] == "interrupted during epoch 3; queued again"
    assert cut.intermediate_values.keys() == {1, 2} and cut.user_attrs["epochs_run"] == 2
    assert queued.params == cut.params and queued.user_attrs["retry_of"] == 0

    monkeypatch.setattr(trainmod, "train", real_train)
    assert run_search(db, "--trials", "1") == 0
    trials = trials_of(db)
    assert states(trials) == ["FAIL", "COMPLETE"]
    assert trials[1].params == cut.params
    assert trials[1].user_attrs["config"] == cut.user_attrs["config"]  # the same seed too
    assert trials[1].intermediate_values[2] == cut.intermediate_values[2]  # so the same run


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_worker_that_died_is_found_by_its_heartbeat_and_its_trial_run_again(mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(search, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(search, "GRACE_PERIOD", 1)
    db = tmp_path / "s.db"
    assert run_search(db, "--trials", "1", *TINY) == 0
    # a worker starts a trial, sends one heartbeat, and is killed
    storage = search.open_storage(str(db))
    study = optuna.load_study(study_name="mnist", storage=storage)
    trial = study.ask()
    search.Space.from_mapping(study.user_attrs[search.SETTINGS_ATTR]["space"]).suggest(trial)
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    assert run_search(db, "--trials", "1") == 0
    trials = trials_of(db)
    assert states(trials) == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params and trials[2].user_attrs["retry_of"] == 1
    assert "heartbeats" in trials[2].user_attrs["retry_reason"]


def test_a_diverging_trial_is_recorded_with_its_reason_and_the_search_goes_on(mnist, tmp_path, capsys):
    db = tmp_path / "s.db"
    space = tmp_path / "diverge.toml"
    space.write_text("lr = 1e30   # far too large: the loss overflows at once\n")
    assert run_search(db, "--trials", "2", "--space", str(space), *SMALL) == 0
    out = capsys.readouterr().out
    trials = trials_of(db)
    assert states(trials) == ["PRUNED", "PRUNED"]  # the second trial ran after the first diverged
    for t in trials:
        assert t.user_attrs["stop_reason"].startswith("diverged: loss became")
        assert t.user_attrs["epochs_run"] == 0
    assert "(diverged: loss became" in out
    assert run_search(db, "--trials", "1", "--lr", "1e-3") == 0  # and the study goes on
    assert states(trials_of(db)) == ["PRUNED", "PRUNED", "COMPLETE"]


def test_the_time_budget_cuts_the_running_trial_and_queues_it_again(mnist, tmp_path, monkeypatch, capsys):
    real_train = trainmod.train

    def slow_train(config, dataset=None, *, on_epoch=None, **kw):
        def slow(rec):
            time.sleep(0.4)
            on_epoch(rec)
        return real_train(config, dataset, on_epoch=slow, **kw)
    monkeypatch.setattr(trainmod, "train", slow_train)
    db = tmp_path / "s.db"
    t0 = time.time()
    args = ["--subset", "500", "--epochs", "50", "--layers", "1", "--width", "16", "--pruner", "none"]
    assert run_search(db, "--timeout", "1.5", *args) == 0
    assert time.time() - t0 < 15
    trials = trials_of(db)
    assert states(trials)[-2:] == ["FAIL", "WAITING"]
    assert trials[-2].user_attrs["stop_reason"].startswith("time budget ran out after epoch")
    assert "left" in capsys.readouterr().out


def test_worker_processes_share_one_study(mnist, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert run_search(db, "--trials", "2", "--jobs", "2", *TINY) == 0
    out = capsys.readouterr()
    trials = trials_of(db)
    assert states(trials) == ["COMPLETE", "COMPLETE"]
    assert "2 workers x 1 thread" in out.out
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # one trial in each process


def test_a_smaller_epoch_budget_lowers_the_inherited_minimum_but_not_an_explicit_one():
    base = search.Space.default()
    assert base.min_epochs > 1
    smaller = search.Space.from_mapping({"epochs": 1}, base=base)
    assert (smaller.epochs, smaller.min_epochs) == (1, 1)
    with pytest.raises(Exception, match="min_epochs 2 is above epochs 1"):
        search.Space.from_mapping({"epochs": 1, "min_epochs": 2}, base=base)
