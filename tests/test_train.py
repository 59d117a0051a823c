"""Training: configuration checks, reproducibility, agreement with the reference loop,
outputs on disk, divergence and early stops, and the default configuration on real MNIST."""

import json
from dataclasses import replace

import numpy as np
import pytest
from helpers import small_config, synthetic_dataset, unlearnable_validation, without_timings

from fastmlp import reference as ref
from fastmlp.config import TrainConfig
from fastmlp.data.datasets import validation_split
from fastmlp.errors import ConfigError, DataError
from fastmlp.training.history import History, format_epoch
from fastmlp.training.model import MLP
from fastmlp.training.train import Trainer, TrainingDiverged, train


@pytest.mark.parametrize("field,value,message", [
    ("lr", 0.0, "lr must be > 0"),
    ("lr", -1e-3, "lr must be > 0"),
    ("lr", float("nan"), "lr must be finite"),
    ("beta1", 1.0, r"beta1 must be in \[0, 1\)"),
    ("beta1", -0.1, r"beta1 must be in \[0, 1\)"),
    ("beta1", 0.999999999, r"beta1 must be in \[0, 1\); got 1 \(it is 1 in float32"),
    ("beta2", 1.5, r"beta2 must be in \[0, 1\)"),
    ("beta2", 0.9999999999, r"beta2 must be in \[0, 1\).*float32"),
    ("eps", 0.0, "eps must be > 0"),
    ("eps", 1e-50, r"eps must be > 0; got 1e-50 \(it is 0 in float32"),
    ("hidden_sizes", (), "hidden_sizes must be one or more positive integers"),
    ("hidden_sizes", (64, 0), "hidden_sizes must be positive integers"),
    ("batch_size", 0, "batch_size must be >= 1"),
    ("batch_size", 2.5, "batch_size must be an integer"),
    ("epochs", 0, "epochs must be >= 1"),
    ("seed", -1, "seed must be >= 0"),
    ("val_size", -1, "val_size must be >= 0"),
    ("lr_decay", 0.0, r"lr_decay must be in \(0, 1\]"),
    ("lr_decay", 1.5, r"lr_decay must be in \(0, 1\]"),
    ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
    ("dropout_input", -0.1, r"dropout_input must be in \[0, 1\)"),
    ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\)"),
    ("ema", 1.0, r"ema must be in \[0, 1\)"),
    ("weight_decay", -1e-4, "weight_decay must be >= 0"),
    ("warmup", -1, "warmup must be >= 0"),
    ("elastic_sigma", 0.5, r"elastic_sigma must be in \[1, 28\]"),
    ("augment", "mirror", "augment must be one of none, affine, elastic; got 'mirror'"),
    ("schedule", "step", "schedule must be one of decay, cosine, onecycle"),
])
def test_invalid_hyperparameters_are_rejected_with_a_message_naming_them(field, value, message):
    with pytest.raises(ConfigError, match=message):
        replace(TrainConfig(), **{field: value}).validate()


def test_a_batch_larger_than_the_training_set_is_rejected():
    with pytest.raises(ConfigError, match="batch_size 600 is larger than the training set"):
        train(small_config(batch_size=600), synthetic_dataset())


def test_the_same_seed_gives_the_same_history_and_parameters():
    data = synthetic_dataset()
    a, b = train(small_config(), data), train(small_config(), data)
    assert without_timings(a.history) == without_timings(b.history)
    np.testing.assert_array_equal(a.model.params, b.model.params)
    c = train(small_config(seed=4), data)
    assert without_timings(c.history) != without_timings(a.history)


def test_training_learns_the_synthetic_task():
    result = train(small_config(epochs=6, lr=3e-3), synthetic_dataset())
    last = result.history.epochs[-1]
    assert last["val_acc"] > 0.9 and last["test_acc"] > 0.9
    assert result.history.status == "completed"


def test_lr_decay_multiplies_eta_after_every_epoch():
    result = train(small_config(epochs=3, lr=2e-3, lr_decay=0.5), synthetic_dataset())
    assert [e["lr"] for e in result.history.epochs] == pytest.approx([2e-3, 1e-3, 5e-4])


def test_the_engine_loop_follows_the_reference_loop_batch_for_batch():
    """Same seed, same rows: the reference (float64) and the engine draw the same initial
    weights and the same permutations, so after two epochs their parameters agree."""
    data = synthetic_dataset(n_train=430)
    config = small_config(batch_size=32)  # 330 training rows: the last batch of each epoch is short
    engine = train(config, data)
    fit_idx, _ = validation_split(len(data.train_images), config.val_size)
    net = ref.train_reference(data.train_images[fit_idx], data.train_labels[fit_idx], config.hidden_sizes,
                              batch_size=config.batch_size, lr=config.lr, epochs=config.epochs,
                              seed=config.seed, dtype=np.float64)
    for got, want in zip([a for pair in engine.model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=5e-5)


@pytest.mark.parametrize("hidden,batch_size", [((32, 16), 50), ((100,), 32)])  # row shards, column split
def test_the_trainers_flat_buffers_start_on_a_page(hidden, batch_size):
    """Parameters, gradients, Adam's moments and the workspace start on BUFFER_ALIGNMENT-byte
    boundaries, so a step's speed does not depend on where the allocator put them."""
    from fastmlp.engine.layout import BUFFER_ALIGNMENT
    ds = synthetic_dataset()
    trainer = Trainer(small_config(hidden_sizes=hidden, batch_size=batch_size, ema=0.9), ds.train_images,
                      ds.train_labels, num_classes=10)
    work = trainer.work
    assert trainer.adam.ema.size == trainer.model.num_parameters
    for buf in (trainer.model.params, work.grads, trainer.adam.m, trainer.adam.v, trainer.adam.ema,
                work.x, work.z, work.h, work.d):
        assert buf.ctypes.data % BUFFER_ALIGNMENT == 0


def test_the_column_split_cuts_its_products_for_the_blas_small_matrix_kernels_where_it_has_them():
    """A property of the process (the BLAS it calls), like the split a property of the shape: row
    shards never cut their products."""
    from fastmlp.engine.blas import small_gemm_limit
    ds = synthetic_dataset()
    columns = Trainer(small_config(hidden_sizes=(100,), batch_size=32), ds.train_images, ds.train_labels,
                      num_classes=10)
    rows = Trainer(small_config(batch_size=100), ds.train_images, ds.train_labels, num_classes=10)
    assert columns.columns and not rows.columns
    assert columns.small_gemm == small_gemm_limit() and rows.small_gemm == 0


def test_trials_of_a_thread_count_are_short_calls_and_the_incumbent_runs_whole_ones():
    """While the chooser tries a count (the start's turns, a probe) the trainer calls the kernel for a
    quarter of its usual steps, so trying the slower count costs little; the chosen count runs whole
    calls."""
    from fastmlp.training.threads import ThreadChooser
    ds = synthetic_dataset(n_train=2000)
    trainer = Trainer(small_config(batch_size=10, val_size=0), ds.train_images, ds.train_labels, num_classes=10)
    trainer.threads = ThreadChooser(2, probe_seconds=1e9)  # two counts to choose from, no probe by time
    calls, steps = [], trainer.steps

    def recording(order, first, n_steps, lr, epoch=0):
        calls.append((trainer.threads.trying, n_steps))
        return steps(order, first, n_steps, lr, epoch)

    trainer.steps = recording
    trainer.train_order(trainer.sampler.epoch_order(), 1e-3)
    per_call = -(-200 // 20)  # 200 steps in about 20 calls
    assert calls[:6] == [(True, per_call // 4)] * 6  # the start: a warm-up and two counted calls per count
    assert all(n == (per_call // 4 if trying else per_call) for trying, n in calls[:-1])  # the last: what is left
    assert sum(n for _, n in calls) == 200 and any(not trying for trying, _ in calls)


def test_outputs_are_written_atomically_into_the_run_folder(tmp_path):
    out = tmp_path / "runs" / "demo"
    result = train(small_config(), synthetic_dataset(), out_dir=out)
    names = sorted(p.name for p in out.iterdir())
    assert set(names) - {"last.npz"} == {".fastmlp-run", "checkpoint.npz", "curves.png", "history.json", "metrics.csv",
                                         "model.npz"}
    saved = History.from_json((out / "history.json").read_text())
    assert saved.status == "completed" and len(saved.epochs) == 2
    assert saved.config["hidden_sizes"] == [32, 16]
    model, meta = MLP.load(out / "model.npz")
    np.testing.assert_array_equal(model.params, result.model.params)
    assert meta["config"]["seed"] == 3 and meta["epoch"] == saved.best_epoch
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_its_history(tmp_path):
    with pytest.raises(TrainingDiverged, match="training diverged") as info:
        train(small_config(lr=1e12, epochs=3), synthetic_dataset(), out_dir=tmp_path)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["status"] == "diverged" and "loss became" in saved["message"]
    assert info.value.epoch >= 1


@pytest.mark.parametrize("targets", [1, 3])
def test_a_regression_trainer_runs_its_epochs_whatever_its_squared_error(targets):
    """The exploded-loss rule compares with a uniform guess over classes (ln k): a regression has none."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = np.ascontiguousarray(np.repeat(10 * X[:, :1], targets, axis=1), dtype=np.float32)
    trainer = Trainer(small_config(hidden_sizes=(8,), batch_size=20, epochs=3, val_size=0), X, y, num_classes=targets)
    losses = [record.train_loss for record in trainer.epochs()]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_the_trainer_yields_one_record_per_epoch_and_a_caller_may_stop_between_them():
    data = synthetic_dataset()
    trainer = Trainer.for_dataset(small_config(epochs=5, val_size=0), data)
    seen = []
    for record in trainer.epochs():
        seen.append(record.epoch)
        if record.epoch == 2:
            break
    assert seen == [1, 2] and trainer.epoch == 2
    assert trainer.adam.t == 2 * trainer.steps_per_epoch  # Adam counts the fused kernel's updates
    # the same two epochs through train() give the same numbers (without a hold-out it keeps the last epoch)
    whole = train(small_config(epochs=2, val_size=0), data)
    np.testing.assert_array_equal(trainer.model.params, whole.model.params)


def test_labels_outside_the_classes_are_refused_before_any_kernel_runs():
    data = synthetic_dataset()
    labels = data.train_labels.copy()
    labels[7] = 10
    bad = replace(data, train_labels=labels)
    with pytest.raises(DataError, match=r"training labels must be in \[0, 9\]; found 0 to 10"):
        train(small_config(), bad)


@pytest.mark.parametrize("images,message", [
    (np.zeros((600, 784), np.float64), "uint8 or float32"),
    (np.zeros((600, 28, 28), np.uint8), "uint8 or float32"),
    (np.full((600, 784), np.nan, np.float32), "NaN or infinity"),
])
def test_images_the_kernels_cannot_read_are_refused(images, message):
    with pytest.raises(DataError, match=message):
        train(small_config(), replace(synthetic_dataset(), train_images=images))


def test_float32_features_train_as_given_and_uint8_pixels_as_pixels_over_255():
    data = synthetic_dataset()
    as_float = replace(data, train_images=data.train_images.astype(np.float32) / np.float32(255),
                       test_images=data.test_images.astype(np.float32) / np.float32(255))
    a, b = train(small_config(), data), train(small_config(), as_float)
    np.testing.assert_allclose(a.model.params, b.model.params, rtol=1e-4, atol=1e-6)


def test_training_on_a_subset_and_without_the_test_set():
    result = train(small_config(), synthetic_dataset(), train_rows=np.arange(200), evaluate_test=False)
    assert result.history.dataset["train_rows"] == 200
    assert all(e["test_acc"] is None for e in result.history.epochs)


@pytest.mark.slow
def test_the_default_configuration_reaches_97_5_percent_on_mnist_in_two_epochs(mnist):
    result = train(replace(TrainConfig(), epochs=2), mnist)
    assert result.history.epochs[-1]["test_acc"] >= 0.975


def test_with_an_l2_penalty_the_engine_loop_follows_the_reference_loop():
    """alpha (scikit-learn's L2 penalty) in the config reaches every step the way the reference adds it."""
    data = synthetic_dataset(n_train=330)
    config = small_config(batch_size=32, alpha=0.3)
    engine = train(config, data)
    fit_idx, _ = validation_split(len(data.train_images), config.val_size)
    net = ref.train_reference(data.train_images[fit_idx], data.train_labels[fit_idx], config.hidden_sizes,
                              batch_size=config.batch_size, lr=config.lr, epochs=config.epochs,
                              seed=config.seed, dtype=np.float64, alpha=config.alpha)
    for got, want in zip([a for pair in engine.model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=5e-5)
    plain = train(small_config(batch_size=32), data)
    norm = lambda model: sum(float(np.sum(W.astype(np.float64) ** 2)) for W, _ in model.layers())  # noqa: E731
    assert norm(engine.model) < norm(plain.model)


# ----------------------------------------------------------------------------- the training recipe

RECIPE = dict(schedule="onecycle", warmup=0.5, lr_floor=0.01, weight_decay=1e-3, max_norm=4.0, dropout_input=0.1,
              dropout=0.2, label_smoothing=0.05, ema=0.9)


def test_presets_are_named_configurations_and_overrides_win():
    assert TrainConfig.preset("fast") == TrainConfig()
    best = TrainConfig.preset("best", epochs=2)
    assert best.epochs == 2 and best.val_size == 0 and best.augment != "none"
    with pytest.raises(ConfigError, match="preset must be one of fast, best"):
        TrainConfig.preset("huge")


def test_an_old_configuration_and_history_load_with_every_new_option_off():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in RECIPE and k != "augment"}
    assert TrainConfig.from_dict(old) == TrainConfig()
    record = {"epoch": 1, "lr": 1e-3, "train_loss": 0.3, "train_acc": 0.9, "val_loss": None, "val_acc": None,
              "test_loss": 0.2, "test_acc": 0.95, "train_seconds": 1.0, "samples_per_s": 1.0, "elapsed_s": 1.0}
    history = History.from_json(json.dumps({"config": old, "epochs": [record], "status": "completed"}))
    assert "train  90.00%" in format_epoch(history.epochs[0])


def test_the_recipe_learns_the_synthetic_task_and_labels_its_training_accuracy(tmp_path):
    result = train(small_config(epochs=6, lr=3e-3, **RECIPE), synthetic_dataset(), out_dir=tmp_path)
    last = result.history.epochs[-1]
    assert last["val_acc"] > 0.9 and last["test_acc"] > 0.9
    assert last["train_on"] == "dropout" and "train* " in format_epoch(last)
    assert [e["lr"] for e in result.history.epochs][-1] == pytest.approx(3e-5)  # one-cycle's floor
    assert train(small_config(), synthetic_dataset()).history.epochs[0]["train_on"] == "plain"


def test_with_weight_averaging_the_average_is_evaluated_and_saved(tmp_path):
    data = synthetic_dataset()
    trainer = Trainer.for_dataset(small_config(ema=0.9), data)
    record = next(trainer.epochs())
    assert not np.array_equal(trainer.adam.ema, trainer.model.params)
    averaged = MLP(trainer.model.sizes, trainer.adam.ema.copy())
    fit_idx, val_idx = validation_split(len(data.train_images), 100)
    assert record.val_acc == averaged.evaluate(data.train_images, data.train_labels, val_idx)[1]
    result = train(small_config(ema=0.9), data, out_dir=tmp_path)
    model, meta = MLP.load(tmp_path / "model.npz")
    assert meta["weights"] == "ema"
    np.testing.assert_array_equal(model.params, result.model.params)


def test_augmentation_needs_square_images():
    data = synthetic_dataset(n_in=90)
    with pytest.raises(ConfigError, match="needs square images; the inputs have 90 features"):
        train(small_config(augment="affine"), data)


@pytest.mark.parametrize("hidden,batch,columns", [((64, 16), 25, True), ((32, 16), 128, False)],
                         ids=["column split", "row shards"])
def test_the_whole_recipe_is_reproducible_and_the_thread_count_changes_nothing(hidden, batch, columns):
    """Random numbers are keyed by (seed, epoch, example), and every batch is cut into the same parts
    (by the shape: units for 25 rows, rows for 128) whichever thread runs each: the same seed gives
    the same history, bit for bit, on one thread as on two (``--threads 1`` and ``--threads 2``) and
    when the trainer picks the count itself."""
    from fastmlp.training.threads import limit_threads
    data = synthetic_dataset()
    config = small_config(augment="elastic", hidden_sizes=hidden, batch_size=batch, **RECIPE)
    assert Trainer.for_dataset(config, data).columns is columns
    first = train(config, data)
    assert without_timings(train(config, data).history) == without_timings(first.history)
    for threads in (1, 2):
        with limit_threads(threads):
            run = train(config, data)
        assert without_timings(run.history) == without_timings(first.history), threads
        np.testing.assert_array_equal(run.model.params, first.model.params)
    assert first.history.epochs[0]["train_on"] == "augmented+dropout"


@pytest.mark.parametrize("per_call", [1, 7, 1000])
def test_the_epoch_loss_is_the_same_bits_however_the_steps_are_grouped_into_calls(monkeypatch, per_call):
    """The thread policy and the machine's load decide how many steps each kernel call runs; the
    epoch's loss sum must not show it, to the last bit: each step's loss is added in step order."""
    import fastmlp.training.train as train_module
    data = synthetic_dataset()
    trainer = Trainer(small_config(batch_size=7, val_size=0), data.train_images, data.train_labels, num_classes=10)
    step_losses = np.random.default_rng(0).uniform(0.01, 3.0, 100)  # full float64 mantissas: rounding shows

    def fake_steps(order, first, n_steps, lr, epoch=0):
        trainer.losses = step_losses[first:first + n_steps].copy()
        return 0

    monkeypatch.setattr(trainer, "steps", fake_steps)
    order = np.arange(600)  # 86 steps of 7 rows, the last of 5
    monkeypatch.setattr(train_module, "steps_per_call", lambda n_steps, calls=20: min(n_steps, per_call))
    loss_sum, _ = trainer.train_order(order, 1e-3)
    expected = 0.0
    for i in range(86):
        expected += step_losses[i] * (7 if i < 85 else 5)
    assert loss_sum == expected


@pytest.mark.parametrize("rows,message", [
    (np.array([0, 1, 600]), r"fit_rows must be in \[0, 599\] \(the data has 600 rows\); found 0 to 600"),
    (np.array([-1, 2, 3]), r"fit_rows must be in \[0, 599\]"),
    (np.array([0.0, 1.0]), "fit_rows must be a 1-D array of integer row indices"),
    (np.zeros((2, 2), np.int64), "fit_rows must be a 1-D array of integer row indices"),
])
def test_training_rows_outside_the_data_are_refused_where_they_enter(rows, message):
    data = synthetic_dataset()
    with pytest.raises(DataError, match=message):
        Trainer(small_config(batch_size=2), data.train_images, data.train_labels, num_classes=10, fit_rows=rows)


def test_evaluation_rows_outside_their_data_are_refused_where_they_enter():
    from fastmlp.training.train import EvalSet
    data = synthetic_dataset()
    evals = {"val": EvalSet(data.test_images, data.test_labels, np.array([5, 200]))}
    with pytest.raises(DataError, match=r"val rows must be in \[0, 199\]"):
        Trainer(small_config(), data.train_images, data.train_labels, num_classes=10, eval_sets=evals)


# ----------------------------------------------------------------------------- the kept model and early stopping

def first_best(history) -> int:
    accs = [e["val_acc"] for e in history.epochs]
    return accs.index(max(accs)) + 1


def test_model_npz_holds_the_best_validation_epoch_and_last_npz_the_last(tmp_path):
    result = train(small_config(epochs=6, lr=3e-3), unlearnable_validation(), out_dir=tmp_path)
    history = History.from_json((tmp_path / "history.json").read_text())
    assert history.best_epoch == first_best(history) < 6  # the highest validation accuracy, the first of equals
    best, meta = MLP.load(tmp_path / "model.npz")
    assert meta["epoch"] == history.best_epoch and meta["chosen"] == "best validation accuracy"
    np.testing.assert_array_equal(best.params, result.model.params)
    last, meta = MLP.load(tmp_path / "last.npz")
    assert meta["epoch"] == 6 and meta["chosen"] == "last epoch"
    assert not np.array_equal(last.params, best.params)
    assert history.status == "completed" and result.history.best_epoch == history.best_epoch


def test_the_test_set_is_measured_once_on_the_kept_model(tmp_path):
    data = unlearnable_validation()
    result = train(small_config(epochs=6, lr=3e-3), data, out_dir=tmp_path)
    h = result.history
    assert (h.test_loss, h.test_acc) == result.model.evaluate(data.test_images, data.test_labels)
    assert h.test_acc == h.epochs[h.best_epoch - 1]["test_acc"]  # the same model as that epoch's
    assert any("nothing is chosen by them" in note for note in h.notes)


def test_without_a_validation_hold_out_the_last_epoch_is_kept_and_there_is_no_last_npz(tmp_path):
    result = train(small_config(epochs=3, val_size=0), synthetic_dataset(), out_dir=tmp_path)
    assert result.history.best_epoch == 3 and not (tmp_path / "last.npz").exists()
    model, meta = MLP.load(tmp_path / "model.npz")
    assert meta["epoch"] == 3 and meta["chosen"] == "last epoch"


def test_patience_stops_the_run_once_the_validation_accuracy_stalls(tmp_path):
    result = train(small_config(epochs=30, lr=3e-3, patience=2), unlearnable_validation(), out_dir=tmp_path)
    h = History.from_json((tmp_path / "history.json").read_text())
    assert h.status == "stopped early" and len(h.epochs) < 30
    assert len(h.epochs) == h.best_epoch + 2 and "has not improved for 2 epochs" in h.message
    assert h.best_epoch == first_best(h) and result.history.best_epoch == h.best_epoch


def test_an_improvement_smaller_than_min_delta_does_not_count():
    result = train(small_config(epochs=10, lr=3e-3, patience=1, min_delta=0.5), synthetic_dataset())
    assert len(result.history.epochs) == 2  # epoch 1 sets the mark; no epoch beats it by 50 points
    assert "by more than 0.5" in result.history.message


def test_patience_without_a_validation_hold_out_is_refused():
    with pytest.raises(ConfigError, match="patience 3 needs a validation hold-out, but val_size is 0"):
        train(small_config(patience=3, val_size=0), synthetic_dataset())


def test_metrics_csv_has_one_row_per_epoch_with_the_training_and_validation_figures(tmp_path):
    import csv
    result = train(small_config(epochs=3), synthetic_dataset(), out_dir=tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "samples_per_s",
                             "elapsed_s"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, record in zip(rows, result.history.epochs):
        assert {k: float(v) for k, v in row.items()} == {k: record[k] for k in row}  # every digit kept
