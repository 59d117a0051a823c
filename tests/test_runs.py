"""Run folders: checked before training, never mixing two runs, strict JSON, and exact resumption,
also after a SIGKILL at any moment."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from helpers import small_config, synthetic_dataset, unlearnable_validation, without_timings

from fastmlp.errors import ConfigError, UsageError
from fastmlp.training.history import History
from fastmlp.training.runs import MARKER, RunFolder, interrupts_deferred, lost_interrupts_kept, raise_lost_interrupt
from fastmlp.training.train import TrainingDiverged, train


def test_a_new_run_replaces_every_file_of_the_previous_one(tmp_path):
    data = synthetic_dataset()
    train(small_config(epochs=2), data, out_dir=tmp_path)
    assert (tmp_path / "curves.png").exists()
    (tmp_path / ".model.npz.abc1_3xy.tmp.npz").write_bytes(b"left by a killed run")  # mkstemp: 8 characters
    with pytest.raises(TrainingDiverged):
        train(small_config(lr=1e12, epochs=2), data, out_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    # the diverged run's history only: no model or curves of the old run beside it, no stale temporaries
    assert names == [MARKER, "history.json"]
    assert json.loads((tmp_path / "history.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("make_target,fragment", [
    (lambda p: (p / "file").write_text("x") and p / "file", "a file of that name exists"),
    (lambda p: p / ("x" * 300), "cannot write the output folder"),
    (lambda p: __import__("pathlib").Path("/proc/fastmlp-run"), "cannot write the output folder"),
    (lambda p: __import__("pathlib").Path("/dev/null"), "cannot"),
])
def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path, make_target, fragment):
    with pytest.raises(UsageError, match=fragment):
        with RunFolder(make_target(tmp_path)):
            pass


def test_an_empty_test_set_gives_no_test_figures_and_strict_json(tmp_path):
    data = synthetic_dataset()
    empty = replace(data, test_images=data.test_images[:0], test_labels=data.test_labels[:0])
    result = train(small_config(), empty, out_dir=tmp_path)
    assert all(e["test_acc"] is None for e in result.history.epochs)
    text = (tmp_path / "history.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_a_loss_that_explodes_without_becoming_infinite_is_divergence():
    with pytest.raises(TrainingDiverged, match="mean over the epoch"):
        train(small_config(lr=1e6, epochs=2, eps=1e-8), synthetic_dataset())


def test_a_model_too_large_for_this_machine_is_refused_before_allocating():
    with pytest.raises(ConfigError, match=r"need .*TiB.*this machine has"):
        train(small_config(hidden_sizes=(100_000_000,)), synthetic_dataset())


def test_resuming_gives_the_history_of_an_uninterrupted_run(tmp_path):
    data = synthetic_dataset()
    whole = train(small_config(epochs=4), data, out_dir=tmp_path / "whole")
    train(small_config(epochs=2), data, out_dir=tmp_path / "cut")
    resumed = train(small_config(epochs=4), data, out_dir=tmp_path / "cut", resume=True)
    assert without_timings(resumed.history) == without_timings(whole.history)
    np.testing.assert_array_equal(resumed.model.params, whole.model.params)
    saved = History.from_json((tmp_path / "cut" / "history.json").read_text())
    assert without_timings(saved) == without_timings(whole.history)


def test_resuming_with_other_settings_or_without_a_checkpoint_is_refused(tmp_path):
    data = synthetic_dataset()
    with pytest.raises(UsageError, match="no checkpoint to resume from"):
        train(small_config(), data, out_dir=tmp_path / "nothing", resume=True)
    train(small_config(epochs=1), data, out_dir=tmp_path / "run")
    with pytest.raises(UsageError, match="other settings .*lr"):
        train(small_config(epochs=2, lr=5e-3), data, out_dir=tmp_path / "run", resume=True)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_a_schedule_over_the_whole_run_resumes_with_its_own_epochs_only(tmp_path, schedule):
    """Its rate at each step depends on the total: other --epochs would rewrite the epochs already run."""
    data = synthetic_dataset()
    config = small_config(epochs=3, schedule=schedule, warmup=1.0)
    train(replace(config, epochs=2), data, out_dir=tmp_path / "two")
    with pytest.raises(UsageError, match=f"the run's {schedule} schedule spans its 2 epochs; --epochs 3"):
        train(config, data, out_dir=tmp_path / "two", resume=True)


def test_a_run_resumed_on_other_unverified_data_is_refused(tmp_path, synthetic):
    """Unverified data files still name their content: .npy arrays of the same shape but other values differ."""
    from fastmlp.data.datasets import load_dataset
    for name, seed in (("d1", 0), ("d2", 1)):
        type(synthetic)("mnist", n_train=300, n_test=50, seed=seed).write(tmp_path / name / "mnist", "npy")
    first = load_dataset("mnist", tmp_path / "d1", verify=False)
    other = load_dataset("mnist", tmp_path / "d2", verify=False)
    config = small_config(epochs=2, val_size=50, batch_size=25)
    train(replace(config, epochs=1), first, out_dir=tmp_path / "run")
    with pytest.raises(UsageError, match="trained on other data files"):
        train(config, other, out_dir=tmp_path / "run", resume=True)
    assert len(train(config, first, out_dir=tmp_path / "run", resume=True).history.epochs) == 2


def test_a_run_that_stopped_early_resumes_only_when_a_larger_patience_allows_more(tmp_path):
    data = unlearnable_validation()
    config = small_config(epochs=30, lr=3e-3, patience=1)
    stopped = train(config, data, out_dir=tmp_path)
    assert stopped.history.status == "stopped early"
    expected = r"--patience 1 stops the run after epoch \d+: .*; give --patience above 1 \(or 0: off\)"
    with pytest.raises(UsageError, match=expected):
        train(config, data, out_dir=tmp_path, resume=True)
    resumed = train(replace(config, patience=3), data, out_dir=tmp_path, resume=True)
    straight = train(replace(config, patience=3), data)
    assert without_timings(resumed.history) == without_timings(straight.history)
    assert resumed.history.best_epoch == straight.history.best_epoch
    np.testing.assert_array_equal(resumed.model.params, straight.model.params)  # the best epoch's, restored


def test_a_completed_run_resumes_only_with_more_epochs(tmp_path):
    data = synthetic_dataset()
    train(small_config(epochs=2), data, out_dir=tmp_path)
    with pytest.raises(UsageError, match="has trained all its 2 epochs; give --epochs above 2 to continue it"):
        train(small_config(epochs=2), data, out_dir=tmp_path, resume=True)
    assert len(train(small_config(epochs=3), data, out_dir=tmp_path, resume=True).history.epochs) == 3


# ----------------------------------------------------------------------------- through the command line

def fastmlp(*args, **kw):
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], capture_output=True, text=True, **kw)


TINY = ["--hidden", "16", "--threads", "1", "--val-size", "1000"]


def epochs_done(folder) -> int:
    try:
        return len(json.loads((folder / "history.json").read_text())["epochs"])
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_a_run_killed_at_any_moment_resumes_to_the_uninterrupted_history(mnist_dir, tmp_path):
    env = {**os.environ, "FASTMLP_DATA_DIR": str(mnist_dir)}
    straight = fastmlp("train", *TINY, "--epochs", "4", "--out", str(tmp_path / "straight"), env=env)
    assert straight.returncode == 0, straight.stderr
    cut = tmp_path / "cut"
    for kill_after in (1, 2):  # killed during epoch 2, then during epoch 3 of the resumed run
        args = ["--resume", str(cut)] if kill_after > 1 else ["--out", str(cut)]
        proc = subprocess.Popen([sys.executable, "-m", "fastmlp", "train", *TINY, "--epochs", "4", *args],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while epochs_done(cut) < kill_after and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert epochs_done(cut) >= kill_after
    resumed = fastmlp("train", "--resume", str(cut), "--threads", "1", env=env)
    assert resumed.returncode == 0, resumed.stderr
    a = History.from_json((tmp_path / "straight" / "history.json").read_text())
    b = History.from_json((cut / "history.json").read_text())
    assert without_timings(a) == without_timings(b) and len(b.epochs) == 4
    assert not list(cut.glob(".*.tmp*"))


@pytest.mark.parametrize("env,args,fragment", [
    ({"NUMBA_NUM_THREADS": "0"}, ["train", "--epochs", "1"], "NUMBA_NUM_THREADS must be a positive integer"),
    ({}, ["train", "--hidden", "100000000"], "this machine has"),
    ({}, ["train", "--resume", "/nonexistent/run"], "no checkpoint to resume from"),
])
def test_bad_settings_end_in_one_line_before_any_work(env, args, fragment, tmp_path):
    proc = fastmlp(*args, env={**os.environ, **env}, cwd=tmp_path, timeout=60)  # no epoch runs in a minute
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error:") and fragment in lines[0], proc.stderr


def test_a_closed_pipe_ends_the_output_quietly(tmp_path):
    """``fastmlp gradcheck | head -1``: no BrokenPipeError traceback."""
    proc = subprocess.run(f"{sys.executable} -m fastmlp gradcheck | head -1", shell=True, capture_output=True,
                          text=True)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_a_full_disk_mid_run_is_one_error_and_the_last_complete_epoch_stays(tmp_path, monkeypatch):
    import errno

    import fastmlp.training.train as train_module
    data = synthetic_dataset()
    real_write = train_module.write_text
    calls = {"n": 0}

    def write_until_full(path, text):
        calls["n"] += 1
        if calls["n"] > 1:  # epoch 1's history is written; the disk is full from epoch 2 on
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, text)

    monkeypatch.setattr(train_module, "write_text", write_until_full)
    with pytest.raises(UsageError, match="cannot write the run's files .No space left on device.*intact"):
        train(small_config(epochs=3), data, out_dir=tmp_path)
    monkeypatch.setattr(train_module, "write_text", real_write)
    kept = History.from_json((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in kept.epochs] == [1]
    resumed = train(small_config(epochs=3), data, out_dir=tmp_path, resume=True)
    whole = train(small_config(epochs=3), data)
    assert without_timings(resumed.history) == without_timings(whole.history)


def test_ctrl_c_while_an_epochs_files_are_written_waits_until_they_all_are():
    written = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            written.append("checkpoint.npz")  # the block goes on after the signal ...
            written.append("history.json")
    assert written == ["checkpoint.npz", "history.json"]  # ... and the interrupt comes after it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back


def ctrl_c_in_a_c_callback() -> None:
    """A KeyboardInterrupt raised in a ctypes callback, as Ctrl-C lands while the JIT's cache loader
    calls back into Python: Python reports it as unraisable and the caller goes on."""
    import ctypes

    def interrupted():
        raise KeyboardInterrupt

    ctypes.CFUNCTYPE(None)(interrupted)()


def test_a_ctrl_c_lost_in_a_c_callback_is_raised_at_the_next_safe_point(capsys):
    hook = sys.unraisablehook
    with lost_interrupts_kept():
        ctrl_c_in_a_c_callback()  # the caller goes on ...
        with pytest.raises(KeyboardInterrupt):
            raise_lost_interrupt()  # ... until it asks
        raise_lost_interrupt()  # raised once
    assert "Exception ignored" not in capsys.readouterr().err
    assert sys.unraisablehook is hook


def test_a_ctrl_c_lost_while_the_kernels_load_stops_the_run_before_it_touches_the_folder(tmp_path, monkeypatch):
    from fastmlp.training.train import RunInterrupted, Trainer
    (tmp_path / "history.json").write_text("a person's own file")
    real = Trainer.for_dataset.__func__

    def loading(cls, *args, **kwargs):
        ctrl_c_in_a_c_callback()
        return real(cls, *args, **kwargs)
    monkeypatch.setattr(Trainer, "for_dataset", classmethod(loading))
    with pytest.raises(RunInterrupted) as stopped:
        train(small_config(epochs=2), synthetic_dataset(), out_dir=tmp_path / "run")
    assert (stopped.value.saved, stopped.value.begun) == (0, False)
    assert not (tmp_path / "run" / "history.json").exists()


class Killed(BaseException):
    """The process dying at this point (nothing after it runs, no handler catches it)."""


def test_a_run_killed_between_its_checkpoint_and_its_model_file_resumes_with_the_checkpoints_model(
        tmp_path, monkeypatch):
    from fastmlp.training.model import MLP
    from fastmlp.training.train import RunFiles, Trainer
    data = synthetic_dataset()
    train(small_config(epochs=2), data, out_dir=tmp_path / "two")  # epoch 2's model, as it should be kept
    real_save = RunFiles._save_model

    def dies_before_epoch_2s_model(self, model, name, epoch=None):
        if name == "model.npz" and self.trainer.epoch == 2:
            raise Killed
        return real_save(self, model, name, epoch)
    monkeypatch.setattr(RunFiles, "_save_model", dies_before_epoch_2s_model)
    with pytest.raises(Killed):
        train(small_config(epochs=4), data, out_dir=tmp_path / "cut")  # epoch 2 checkpointed, model.npz of epoch 1
    monkeypatch.setattr(RunFiles, "_save_model", real_save)

    def dies_at_once(self):
        raise Killed
    monkeypatch.setattr(Trainer, "run_epoch", dies_at_once)
    with pytest.raises(Killed):
        train(small_config(epochs=4), data, out_dir=tmp_path / "cut", resume=True)
    (kept, meta), (expected, _) = MLP.load(tmp_path / "cut" / "model.npz"), MLP.load(tmp_path / "two" / "model.npz")
    assert meta["epoch"] == 2 and np.array_equal(kept.params, expected.params)


def test_a_run_killed_while_it_draws_its_curves_has_not_ended_and_a_resume_finishes_it(tmp_path, monkeypatch):
    import fastmlp.training.curves as curves
    data = synthetic_dataset()
    real_plot = curves.plot_curves

    def dies(*args, **kwargs):
        raise Killed
    monkeypatch.setattr(curves, "plot_curves", dies)
    with pytest.raises(Killed):
        train(small_config(epochs=2), data, out_dir=tmp_path)
    assert History.from_json((tmp_path / "history.json").read_text()).status == "running"
    monkeypatch.setattr(curves, "plot_curves", real_plot)
    finished = train(small_config(epochs=2), data, out_dir=tmp_path, resume=True)
    assert finished.history.status == "completed" and (tmp_path / "curves.png").exists()
    assert without_timings(finished.history) == without_timings(train(small_config(epochs=2), data).history)
