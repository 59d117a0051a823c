"""The search: the objective's epoch loop, resuming, interruptions (Ctrl-C, a lost worker, the time
budget), diverging trials and worker processes, on a small in-memory dataset; the command end to end
on real MNIST; and one-line user errors."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import import_extra
from helpers import run as fastmlp
from synthetic import SyntheticDataset, learnable_arrays

optuna = import_extra("optuna", "search")  # the search extra: without it this module skips

from fastmlp.cli import main  # noqa: E402
from fastmlp.errors import ConfigError  # noqa: E402
from fastmlp.search import study as studymod  # noqa: E402
from fastmlp.search import workers as search  # noqa: E402
from fastmlp.search.study import open_storage, quiet_optuna, resolve_settings, stored_settings, trial_seed  # noqa: E402
from fastmlp.training.train import Trainer  # noqa: E402

quiet_optuna()

SMALL_SPACE = {"layers": "1", "width": "16,32", "batch_size": "25,50", "lr": "2e-3:5e-3", "epochs": "2",
               "min_epochs": "1"}


def settings_for(tmp_path, stored=None, **space):
    return resolve_settings(stored, storage=str(tmp_path / "s.db"), study_name="small",
                            space_flags={**SMALL_SPACE, **space}, val_size=100, dataset="small", pruner="none")


def run(settings, dataset, **kw):
    lines = []
    result = search.run_search(settings, dataset=dataset, log=lines.append, **kw)
    return result, "\n".join(lines)


def trials_of(tmp_path, name="small"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 's.db'}").get_trials(deepcopy=False)


def states(trials) -> list[str]:
    return [t.state.name for t in trials]


# ----------------------------------------------------------------------------- the objective

def test_a_small_search_trains_each_trial_and_never_looks_at_the_test_set(small_dataset, tmp_path, monkeypatch):
    seen = []
    real = Trainer.for_dataset.__func__

    def spy(cls, config, dataset, **kw):
        seen.append(kw.get("evaluate_test"))
        return real(cls, config, dataset, **kw)
    monkeypatch.setattr(Trainer, "for_dataset", classmethod(spy))
    result, out = run(settings_for(tmp_path), small_dataset, trials=3)
    trials = trials_of(tmp_path)
    assert states(trials) == ["COMPLETE"] * 3 and seen == [False] * 3
    for t in trials:
        assert t.intermediate_values.keys() == {1, 2} and t.value == t.intermediate_values[2]
        assert t.user_attrs["epochs_run"] == 2 and t.user_attrs["config"]["hidden_sizes"][0] in (16, 32)
        assert t.user_attrs["config"]["seed"] == trial_seed(0, t.number)
        assert "test_acc" not in t.user_attrs and "stop_reason" not in t.user_attrs
    assert max(t.value for t in trials) > 0.3  # learnable data: well above chance (0.1)
    for n in range(3):
        assert f"trial {n:>4} complete" in out
    assert "3 done" in out and "best: trial" in result.summary and not result.crashed


def test_trials_name_their_hyperparameters_as_the_homework_does_and_the_study_names_its_objective(
        small_dataset, tmp_path):
    """What the dashboard shows: the objective by its name, each trial's hyperparameters by the homework's."""
    run(settings_for(tmp_path), small_dataset, trials=1)
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert study.metric_names == ["validation accuracy"]
    (trial,) = study.trials
    c = trial.user_attrs["config"]
    assert trial.user_attrs["hyperparameters"].startswith(
        f"Batch Size {c['batch_size']}, Hidden Sizes {c['hidden_sizes']}, η {c['lr']:.2e}, β1 ")
    assert ", num epochs 2" in trial.user_attrs["hyperparameters"]


def test_the_same_seed_gives_the_same_trials(small_dataset, tmp_path):
    run(settings_for(tmp_path / "a"), small_dataset, trials=2)
    run(settings_for(tmp_path / "b"), small_dataset, trials=2)
    a, b = trials_of(tmp_path / "a"), trials_of(tmp_path / "b")
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.intermediate_values for t in a] == [t.intermediate_values for t in b]


def test_the_pruner_stops_a_poor_trial_after_an_epoch(small_dataset, tmp_path):
    settings = settings_for(tmp_path, epochs="3", lr="1e-4,5e-3")
    settings.pruner = "median"
    run(settings, small_dataset, trials=8)
    pruned = [t for t in trials_of(tmp_path) if t.state.name == "PRUNED"]
    assert pruned, "the median pruner stopped nothing"
    for t in pruned:
        assert t.user_attrs["stop_reason"] == f"pruned after epoch {t.user_attrs['epochs_run']}"
        assert t.user_attrs["epochs_run"] < 3


def test_a_diverging_trial_is_pruned_with_its_reason_and_the_search_goes_on(small_dataset, tmp_path):
    _, out = run(settings_for(tmp_path, lr="1e30"), small_dataset, trials=2)
    trials = trials_of(tmp_path)
    assert states(trials) == ["PRUNED", "PRUNED"]  # the second trial ran after the first diverged
    for t in trials:
        assert t.user_attrs["stop_reason"].startswith("diverged: loss became")
        assert t.user_attrs["epochs_run"] == 0
    assert "(diverged: loss became" in out
    stored = stored_settings(open_storage(str(tmp_path / "s.db")), "small")
    run(settings_for(tmp_path, stored, lr="3e-3"), small_dataset, trials=1)
    assert states(trials_of(tmp_path)) == ["PRUNED", "PRUNED", "COMPLETE"]


# ----------------------------------------------------------------------------- resuming and retries

def test_resuming_adds_trials_with_the_studys_own_settings(small_dataset, tmp_path):
    run(settings_for(tmp_path, width="16"), small_dataset, trials=2)
    first = trials_of(tmp_path)
    stored = stored_settings(open_storage(str(tmp_path / "s.db")), "small")
    resumed = resolve_settings(stored, storage=str(tmp_path / "s.db"), study_name="small", dataset="small")
    _, out = run(resumed, small_dataset, trials=2)
    assert "resuming with 2 trials" in out
    trials = trials_of(tmp_path)
    assert [t.number for t in trials] == [0, 1, 2, 3] and states(trials) == ["COMPLETE"] * 4
    assert [t.params for t in trials[:2]] == [t.params for t in first]  # the old ones untouched
    assert trials[2].params not in (trials[0].params, trials[1].params)  # the sampler did not start over
    assert all(t.user_attrs["config"]["hidden_sizes"] == [16] for t in trials)


def test_resuming_with_another_subset_is_refused(tmp_path):
    stored = {"subset": 2000, "val_size": 5000, "dataset": "mnist"}
    with pytest.raises(ConfigError, match="was searched with subset 2000"):
        resolve_settings(stored, storage="x.db", study_name="mnist", subset=3000)


def test_an_interrupted_trial_is_marked_queued_again_and_run_first_by_the_next_search(small_dataset, tmp_path,
                                                                                     monkeypatch):
    real = Trainer.run_epoch

    def ctrl_c_in_epoch_3(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real(self)
    monkeypatch.setattr(Trainer, "run_epoch", ctrl_c_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(settings_for(tmp_path, epochs="4"), small_dataset)
    trials = trials_of(tmp_path)  # the storage is consistent: nothing left RUNNING
    assert states(trials) == ["FAIL", "WAITING"]
    cut, queued = trials
    assert cut.user_attrs["stop_reason"] == "interrupted during epoch 3; queued again"
    assert cut.intermediate_values.keys() == {1, 2} and cut.user_attrs["epochs_run"] == 2
    assert queued.params == cut.params and studymod.retried_number(queued) == 0
    assert "stop_reason" not in queued.user_attrs

    monkeypatch.setattr(Trainer, "run_epoch", real)
    run(settings_for(tmp_path, epochs="4"), small_dataset, trials=1)
    trials = trials_of(tmp_path)
    assert states(trials) == ["FAIL", "COMPLETE"]
    assert trials[1].params == cut.params
    assert trials[1].user_attrs["config"] == cut.user_attrs["config"]  # the same seed too
    assert trials[1].intermediate_values[2] == cut.intermediate_values[2]  # so the same run


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def lose_a_trial_on_another_machine(settings, dataset, monkeypatch):
    """After one complete trial, a worker on another machine starts a trial, sends one heartbeat, and
    is lost; returns the study, once that trial is stale (heartbeat every 1 s, grace period 1 s)."""
    monkeypatch.setattr(studymod, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(studymod, "GRACE_PERIOD", 1)
    run(settings, dataset, trials=1)
    storage = open_storage(settings.storage)
    study = optuna.load_study(study_name="small", storage=storage)
    trial = study.ask()
    settings.space_obj().suggest(trial)
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    return study


def test_a_trial_whose_worker_stopped_sending_heartbeats_is_run_again(small_dataset, tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    lose_a_trial_on_another_machine(settings, small_dataset, monkeypatch)
    run(settings, small_dataset, trials=1)
    trials = trials_of(tmp_path)
    assert states(trials) == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params and studymod.retried_number(trials[2]) == 1
    assert trials[2].user_attrs["config"]["seed"] == trial_seed(0, 1)


def test_a_lost_trial_is_marked_and_queued_again_only_under_the_studys_lock(small_dataset, tmp_path, monkeypatch):
    """Between marking a lost trial failed and queueing its retry the study looks one trial short; a
    worker counting places for --max-trials holds the lock, so both steps must happen inside it."""
    import threading
    settings = settings_for(tmp_path)
    study = lose_a_trial_on_another_machine(settings, small_dataset, monkeypatch)
    with studymod.storage_lock(settings.storage, "small"):
        checker = threading.Thread(target=studymod.fail_stale_trials, args=(study, settings.storage))
        checker.start()
        checker.join(1.0)
        assert checker.is_alive(), "the heartbeat check ran without the study's lock"
        assert states(trials_of(tmp_path)) == ["COMPLETE", "RUNNING"]
    checker.join(30)
    assert states(trials_of(tmp_path)) == ["COMPLETE", "FAIL", "WAITING"]


def test_the_time_budget_cuts_the_running_trial_and_queues_it_again(small_dataset, tmp_path, monkeypatch):
    real = Trainer.run_epoch

    def slow(self):
        time.sleep(0.3)
        return real(self)
    monkeypatch.setattr(Trainer, "run_epoch", slow)
    _, out = run(settings_for(tmp_path, epochs="50", batch_size="50"), small_dataset, timeout=1.5)
    trials = trials_of(tmp_path)
    assert states(trials)[-2:] == ["FAIL", "WAITING"]
    assert trials[-2].user_attrs["stop_reason"].startswith("time budget ran out after epoch")
    assert "left" in out


def test_max_trials_is_a_budget_for_the_whole_study_and_trials_one_for_this_run(small_dataset, tmp_path):
    settings = settings_for(tmp_path)
    run(settings, small_dataset, trials=2, max_trials=3)
    assert states(trials_of(tmp_path)) == ["COMPLETE"] * 2  # --trials came first
    _, out = run(settings, small_dataset, max_trials=3)
    assert states(trials_of(tmp_path)) == ["COMPLETE"] * 3
    _, out = run(settings, small_dataset, trials=5, max_trials=3)  # the study is full: nothing runs
    assert states(trials_of(tmp_path)) == ["COMPLETE"] * 3 and "the study stops at 3 finished trials" in out


def test_worker_processes_share_one_study(small_dataset, tmp_path):
    result, out = run(settings_for(tmp_path), small_dataset, trials=2, jobs=2)
    trials = trials_of(tmp_path)
    assert states(trials) == ["COMPLETE", "COMPLETE"] and not result.crashed
    assert "2 workers x 1 thread" in out
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # one trial in each process


# ----------------------------------------------------------------------------- the command

@pytest.mark.parametrize("files,args,fragment", [
    ({}, ["--space", "missing.toml"], "missing.toml: no such space file"),
    ({"bad.toml": "lr = [1e-3,"}, ["--space", "bad.toml"], "bad.toml: not valid TOML"),
    ({"bad.json": '{"lr": }'}, ["--space", "bad.json"], "bad.json: not valid JSON"),
    ({"odd.json": '{"momentum": 0.9}'}, ["--space", "odd.json"], "unknown hyperparameter 'momentum'"),
    ({}, ["--lr", "0:1e-3"], "flags: lr must be > 0"),
    ({}, ["--epochs", "2", "--min-epochs", "3"], "min_epochs 3 is above epochs 2"),
    ({}, ["--jobs", "0"], "--jobs must be >= 1"),
    ({}, ["--trials", "0"], "--trials must be >= 1"),
    ({}, ["--max-trials", "-1"], "--max-trials must be >= 1"),
    ({}, ["--status"], "no search storage here"),
    ({}, ["--timeout", "-5"], "--timeout must be a number of seconds in (0, 1e9)"),
    ({}, ["--pruner", "wild"], "invalid choice: 'wild'"),
])
def test_a_bad_space_file_or_flag_is_a_one_line_error_and_touches_no_storage(tmp_path, files, args, fragment):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = fastmlp("search", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: ") and fragment in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_print_space_writes_toml_that_reads_back(tmp_path):
    proc = fastmlp("search", "--print-space", "--lr", "1e-3", "--batch-size", "64,128", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "space.toml").write_text(proc.stdout)
    from fastmlp.search.space import Space, read_space_file
    space = read_space_file(tmp_path / "space.toml", Space.default())
    assert space.params["lr"].value == 1e-3 and space.params["batch_size"].choices == (64, 128)
    assert not (tmp_path / "runs").exists()


def test_a_recipe_search_runs_trials_with_dropout_weight_decay_and_warping(tmp_path):
    SyntheticDataset("mnist", arrays=learnable_arrays(300, 100)).write(tmp_path / "data" / "mnist")
    proc = fastmlp("search", "--space", "recipe", "--trials", "4", "--storage", "s.db", "--data-dir", "data",
                   "--no-verify", "--val-size", "100", "--width", "16,32", "--batch-size", "25,50", "--epochs", "2",
                   "--min-epochs", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trials = trials_of(tmp_path, "mnist")
    assert len(trials) == 4 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    for t in trials:
        c = t.user_attrs["config"]
        for name in ("dropout", "dropout_input", "weight_decay", "label_smoothing", "warmup"):
            assert c[name] == t.params[name]
        assert c["augment"] == t.params["augment"] in ("affine", "elastic") and c["aug_rotate"] == t.params["aug_rotate"]
        assert ("elastic_alpha" in t.params) == (c["augment"] == "elastic")  # drawn only where it warps
        assert c["ema"] == pytest.approx(1 - t.params["one_minus_ema"]) and c["lr_decay"] == 1.0
        assert "hidden dropout" in t.user_attrs["hyperparameters"]
    assert "elastic_alpha 8 to 34 when augment is elastic" in proc.stdout  # the space, as the search says it


TINY = ["--subset", "2000", "--epochs", "1", "--layers", "1", "--width", "16,32", "--batch-size", "25,50",
        "--lr", "1e-3:3e-3"]


def test_a_tiny_search_on_mnist_end_to_end(mnist, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert main(["search", "--storage", str(db), "--trials", "2", *TINY]) == 0
    out = capsys.readouterr().out
    trials = optuna.load_study(study_name="mnist", storage=f"sqlite:///{db}").get_trials()
    assert states(trials) == ["COMPLETE"] * 2 and all(0.3 < t.value <= 1 for t in trials)
    assert "training on first 2000 mnist images" in out and "best: trial" in out
    assert main(["search", "--storage", str(db), "--trials", "1", "--subset", "3000"]) == 2
    assert "was searched with subset 2000" in capsys.readouterr().err


# ----------------------------------------------------------------------------- machines sharing PostgreSQL

MACHINE = ["--subset", "2000", "--val-size", "500", "--epochs", "12", "--min-epochs", "12", "--layers", "1",
           "--width", "48,64", "--batch-size", "50", "--lr", "1e-3:3e-3", "--pruner", "none", "--threads", "1"]


def start_machine(url, *args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "FASTMLP_HEARTBEAT_INTERVAL": "1"}
    return subprocess.Popen([sys.executable, "-m", "fastmlp", "search", "--storage", url, *args, *MACHINE],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_machines_sharing_postgresql_finish_exactly_max_trials_and_lose_nothing_to_a_killed_one(
        mnist, postgres_url, tmp_path):
    """Three `fastmlp search` processes stand in for three machines; one is SIGKILLed mid-trial."""
    machines = [start_machine(postgres_url, "--max-trials", "6", cwd=tmp_path) for _ in range(3)]
    storage = open_storage(postgres_url, heartbeat=False)
    by_pid = {m.pid: m for m in machines}

    def a_trial_running_on_a_machine(pid=None):
        """(machine, trial) for a RUNNING trial that has reported an epoch, on machine ``pid`` or any."""
        try:
            running = optuna.load_study(study_name="mnist", storage=storage).get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the study is not there yet
            return None, None
        for trial in running:
            owner = int(trial.user_attrs.get("worker", ":0").rpartition(":")[2])
            if trial.intermediate_values and owner in by_pid and (pid is None or owner == pid):
                return by_pid[owner], trial
        return None, None

    victim, victim_trial, until = None, None, time.monotonic() + 90
    while victim_trial is None and time.monotonic() < until and any(m.poll() is None for m in machines):
        time.sleep(0.05)
        victim, victim_trial = a_trial_running_on_a_machine()
        if victim_trial is not None:  # stop that machine, then make sure its trial did not just end
            victim.send_signal(signal.SIGSTOP)
            _, still = a_trial_running_on_a_machine(victim.pid)
            if still is None or still.number != victim_trial.number:
                victim.send_signal(signal.SIGCONT)
                victim, victim_trial = None, None
    if victim_trial is None:
        for m in machines:
            m.kill()
        pytest.fail(f"no machine was ever seen mid-trial: {[m.communicate() for m in machines]}")
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    machines.remove(victim)
    outputs = [m.communicate(timeout=150) for m in machines]
    assert [m.returncode for m in machines] == [0, 0], outputs

    trials = optuna.load_study(study_name="mnist", storage=storage).get_trials()
    by_state = {s: [t for t in trials if t.state.name == s] for s in ("COMPLETE", "FAIL", "RUNNING", "WAITING")}
    assert len(by_state["COMPLETE"]) == 6 and len(trials) == 7  # exactly --max-trials, plus the lost one
    assert len({t.number for t in trials}) == len(trials)
    assert not by_state["RUNNING"] and not by_state["WAITING"]
    (lost,) = by_state["FAIL"]
    assert lost.number == victim_trial.number
    (retry,) = [t for t in trials if studymod.retried_number(t) == lost.number]
    assert retry.state.name == "COMPLETE" and retry.params == lost.params
    assert retry.user_attrs["config"]["seed"] == lost.user_attrs["config"]["seed"] == trial_seed(0, lost.number)

    status = fastmlp("search", "--storage", postgres_url, "--status", cwd=tmp_path)
    assert status.returncode == 0 and "7 trials (6 complete, 0 pruned, 1 failed)" in status.stdout
    assert "best: trial" in status.stdout

    # the report reads the same trial table from PostgreSQL as from a copy of the trials in SQLite
    optuna.copy_study(from_study_name="mnist", from_storage=storage, to_storage=f"sqlite:///{tmp_path / 'copy.db'}")
    tables = []
    for url, out in ((postgres_url, "pg"), (f"sqlite:///{tmp_path / 'copy.db'}", "lite")):
        proc = fastmlp("report", "--storage", url, "--no-retrain", "--no-pdf", "--out", str(tmp_path / out),
                       cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        md = (tmp_path / out / "report.md").read_text()
        assert "pg-test-secret" not in md + (tmp_path / out / "report.tex").read_text()
        tables.append(md[md.index("| # | state |"):])  # the appendix's table, the report's last
    assert tables[0] == tables[1] and "retry of #" in tables[0]


WORKER_START = """
import signal, sys, time
print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()), flush=True)
sys.stdin.readline()  # Ctrl-C arrives while the interpreter "starts"
from fastmlp.search.workers import _unblock_sigint
try:
    _unblock_sigint()
    time.sleep(30)
    print("went on")
except KeyboardInterrupt:
    print("interrupted where it can be handled")
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks here")
def test_a_ctrl_c_while_a_worker_starts_waits_until_the_worker_can_handle_it():
    """Workers start with SIGINT blocked: one that arrives during the interpreter's start-up (a traceback
    of the start-up, or a fatal error, before) is delivered once the worker unblocks it."""
    with search._sigint_blocked():
        child = subprocess.Popen([sys.executable, "-c", WORKER_START], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.stdout.readline().strip() == "True"
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate("\n", timeout=60)
    assert out.strip() == "interrupted where it can be handled"
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # this thread's mask is back


def test_two_workers_do_not_both_take_a_queued_retry_for_the_last_place(tmp_path, monkeypatch):
    """--max-trials 3 with 2 finished and 2 retries queued: the first worker takes a retry, the second
    waits (it took one too, and the study ended with 4)."""
    monkeypatch.setenv("FASTMLP_HEARTBEAT_INTERVAL", "1")
    db = str(tmp_path / "s.db")
    study = optuna.create_study(storage=open_storage(db), study_name="x", direction="maximize")
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for x in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=space, value=x))
    for x in (0.3, 0.4):
        study.enqueue_trial({"x": x})
    budget = search.StudyBudget(study, db, max_trials=3, log=lambda line: None)
    with contextlib.ExitStack() as held:
        assert budget.claim(held, search.InterruptGate(), None) == "run"
        assert study.ask(space).params == {"x": 0.3}  # the first queued retry starts
    with contextlib.ExitStack() as held:
        assert budget.claim(held, search.InterruptGate(), time.time() + 0.5) == "wait"
