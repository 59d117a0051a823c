"""Training: configuration checks, reproducibility, agreement with the reference loop,
outputs on disk, divergence and early stops, and the default configuration on real MNIST."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fastmlp import reference as ref
from fastmlp.data import Dataset, validation_split
from fastmlp.model import MLP
from fastmlp.train import ConfigError, History, TrainConfig, TrainingDiverged, TrainingStopped, train

TIMING_KEYS = {"train_seconds", "samples_per_s", "elapsed_s"}


def synthetic_dataset(n_train=600, n_test=200, n_in=784, seed=0) -> Dataset:
    """Random images whose label is the brightest of ten fixed pixel groups: learnable."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(n_in)[:10 * 8].reshape(10, 8)

    def make(n):
        images = rng.integers(0, 40, (n, n_in), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for i, y in enumerate(labels):
            images[i, groups[y]] = 255
        return images, labels

    (tri, trl), (tei, tel) = make(n_train), make(n_test)
    return Dataset("synthetic", tri, trl, tei, tel, source=Path("memory"), checksums={})


def small_config(**kw) -> TrainConfig:
    base = TrainConfig(hidden_sizes=(32, 16), batch_size=50, lr=1e-3, lr_decay=1.0, epochs=2, val_size=100, seed=3)
    return replace(base, **kw)


def without_timings(history: History) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in history.epochs]


@pytest.mark.parametrize("field,value,message", [
    ("lr", 0.0, "lr must be a positive number"),
    ("lr", -1e-3, "lr must be a positive number"),
    ("lr", float("nan"), "lr must be a positive number"),
    ("beta1", 1.0, r"beta1 must be in \[0, 1\)"),
    ("beta1", -0.1, r"beta1 must be in \[0, 1\)"),
    ("beta2", 1.5, r"beta2 must be in \[0, 1\)"),
    ("eps", 0.0, "eps must be a positive number"),
    ("hidden_sizes", (), "hidden_sizes must be one or more positive integers"),
    ("hidden_sizes", (64, 0), "hidden_sizes must be one or more positive integers"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("epochs", 0, "epochs must be an integer >= 1"),
    ("val_size", -1, "val_size must be >= 0"),
    ("lr_decay", 0.0, r"lr_decay must be in \(0, 1\]"),
    ("lr_decay", 1.5, r"lr_decay must be in \(0, 1\]"),
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


def test_outputs_are_written_atomically_into_the_run_folder(tmp_path):
    out = tmp_path / "runs" / "demo"
    result = train(small_config(), synthetic_dataset(), out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "history.json", "model.npz"]
    saved = History.from_json((out / "history.json").read_text())
    assert saved.status == "completed" and len(saved.epochs) == 2
    assert saved.config["hidden_sizes"] == [32, 16]
    model, meta = MLP.load(out / "model.npz")
    np.testing.assert_array_equal(model.params, result.model.params)
    assert meta["config"]["seed"] == 3 and meta["epoch"] == 2
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_its_history(tmp_path):
    with pytest.raises(TrainingDiverged, match="training diverged") as info:
        train(small_config(lr=1e12, epochs=3), synthetic_dataset(), out_dir=tmp_path)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["status"] == "diverged" and "loss became" in saved["message"]
    assert info.value.epoch >= 1


def test_an_on_epoch_callback_can_stop_training_early():
    seen = []

    def stop_after_first(rec):
        seen.append(rec["epoch"])
        raise TrainingStopped("enough")

    result = train(small_config(epochs=5), synthetic_dataset(), on_epoch=stop_after_first)
    assert seen == [1] and len(result.history.epochs) == 1
    assert result.history.status == "stopped"


def test_training_on_a_subset_and_without_the_test_set():
    result = train(small_config(), synthetic_dataset(), train_rows=np.arange(200), evaluate_test=False)
    assert result.history.dataset["train_rows"] == 200
    assert all(e["test_acc"] is None for e in result.history.epochs)


@pytest.mark.slow
def test_the_default_configuration_reaches_97_5_percent_on_mnist_in_two_epochs(mnist):
    result = train(replace(TrainConfig(), epochs=2), mnist)
    assert result.history.epochs[-1]["test_acc"] >= 0.975
