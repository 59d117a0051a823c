"""What a run records: the best epoch and the early-stopping rule, the epoch line, metrics.csv."""

import json

import pytest

from fastmlp.training.history import BestEpoch, History, format_epoch


def observed(accs, patience=0, min_delta=0.0) -> tuple[BestEpoch, list[bool]]:
    best = BestEpoch(patience, min_delta)
    return best, [best.observe(epoch, acc) for epoch, acc in enumerate(accs, 1)]


def test_the_best_epoch_is_the_highest_validation_accuracy_and_the_first_of_equals():
    best, news = observed([0.90, 0.95, 0.95, 0.93])
    assert (best.epoch, best.val_acc) == (2, 0.95)
    assert news == [True, True, False, False]


def test_without_a_validation_set_every_epoch_is_the_best_and_the_run_never_stops():
    best, news = observed([None, None, None], patience=1)
    assert best.epoch == 3 and all(news) and not best.stop


def test_the_run_stops_after_patience_epochs_without_an_improvement():
    best, _ = observed([0.90, 0.95, 0.94, 0.95], patience=2)
    assert best.stale == 2 and best.stop
    assert "has not improved for 2 epochs (best 95.00% at epoch 2)" in best.reason()
    assert not observed([0.90, 0.95, 0.94, 0.95], patience=3)[0].stop
    assert not observed([0.90, 0.95, 0.94, 0.95], patience=0)[0].stop  # 0: off


def test_a_rise_of_min_delta_or_less_keeps_the_best_but_is_not_an_improvement():
    best, news = observed([0.900, 0.905, 0.908], patience=2, min_delta=0.01)
    assert news == [True, True, True] and best.epoch == 3  # the kept model is still the highest
    assert best.stale == 2 and best.stop
    assert "by more than 0.01" in best.reason()
    best, _ = observed([0.900, 0.920], patience=1, min_delta=0.01)
    assert best.stale == 0


def test_replaying_a_history_gives_the_state_of_observing_it():
    accs = [0.9, 0.92, 0.91, 0.95, 0.94]
    records = [{"epoch": e, "val_acc": a} for e, a in enumerate(accs, 1)]
    assert BestEpoch.replay(2, 0.0, records) == observed(accs, patience=2)[0]


def test_the_epoch_line_shows_training_and_validation_figures_but_not_the_test_set():
    record = {"epoch": 3, "lr": 1e-3, "train_loss": 0.2, "train_acc": 0.95, "val_loss": 0.25, "val_acc": 0.93,
              "test_loss": 0.24, "test_acc": 0.94, "samples_per_s": 12000.0, "elapsed_s": 4.5}
    line = format_epoch(record)
    assert "train  95.00%" in line and "val loss 0.2500" in line and "val  93.00%" in line
    assert "test" not in line and "94.00" not in line


def test_metrics_csv_leaves_a_value_that_was_not_measured_empty():
    record = {"epoch": 1, "lr": 0.001, "train_loss": 0.5, "train_acc": 0.8, "val_loss": None, "val_acc": None,
              "test_loss": 0.4, "test_acc": 0.85, "samples_per_s": 1000.5, "elapsed_s": 2.25}
    assert History(config={}, epochs=[record]).metrics_csv().splitlines() == [
        "epoch,lr,train_loss,train_acc,val_loss,val_acc,samples_per_s,elapsed_s",
        "1,0.001,0.5,0.8,,,1000.5,2.25"]


def test_a_history_written_before_best_epochs_and_notes_still_loads():
    old = {"config": {}, "epochs": [], "status": "completed", "dataset": {}, "message": ""}
    history = History.from_json(json.dumps(old))
    assert history.best_epoch is None and history.test_acc is None and history.notes == []


@pytest.mark.parametrize("accs,stale", [([0.5], 0), ([0.5, 0.4, 0.3], 2), ([0.5, 0.4, 0.6], 0)])
def test_stale_counts_the_epochs_since_the_last_improvement(accs, stale):
    assert observed(accs)[0].stale == stale
