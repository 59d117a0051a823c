"""fastmlp.MLPClassifier and MLPRegressor are scikit-learn estimators: every common check passes, they
compose with pipelines and model selection, follow scikit-learn's training rules (sample weights
included), train exactly what the engine trains, and keep fastmlp's one model format."""

import json
import pickle
import re
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the estimator needs scikit-learn: pip install 'fastmlp[sklearn]'")

import joblib
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmlp import reference as ref
from fastmlp.interop.classifier import MLPClassifier
from fastmlp.interop.estimator import glorot_init
from fastmlp.interop.regressor import MLPRegressor
from fastmlp.training.model import MLP
from fastmlp.training.train import TrainingDiverged


def check_instances():
    """Each estimator by default and with early stopping; max_iter=60 keeps the checks quick.

    The checks' datasets have 10 to 30 rows; early stopping holds out a stratified
    ``validation_fraction``, which needs at least one row per class (scikit-learn's own split
    says so otherwise), hence 0.5 there.
    """
    return [MLPClassifier(max_iter=60), MLPClassifier(max_iter=60, early_stopping=True, validation_fraction=0.5),
            MLPRegressor(max_iter=200), MLPRegressor(max_iter=200, early_stopping=True, validation_fraction=0.5)]


def expected_failures(estimator) -> dict:
    """The one check that stochastic mini-batch training cannot pass: fitting with integer weights
    equals fitting on the rows repeated only when every epoch is one full batch in a fixed order
    (scikit-learn's own MLPs run it with lbfgs or tuned sgd). The equivalence that holds, a step
    on weighted rows against a step on repeated rows, is tested below and in test_engine_step."""
    return {"check_sample_weight_equivalence_on_dense_data":
            "shuffled mini-batches of Adam: weighted rows and repeated rows make other batches"}


@parametrize_with_checks(check_instances(), expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    """600 rows, 12 features, 4 well separated classes: learnable in a few epochs."""
    X, y = make_classification(n_samples=600, n_features=12, n_informative=8, n_classes=4, class_sep=2.5,
                               random_state=0)
    return X.astype(np.float32), y


def quick(**kw) -> MLPClassifier:
    params = dict(hidden_layer_sizes=(32,), batch_size=50, max_iter=20, random_state=0)
    return MLPClassifier(**{**params, **kw})


def fit_quietly(clf, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


# ----------------------------------------------------------------------------- the API

def test_import_fastmlp_does_not_import_scikit_learn():
    code = "import sys, fastmlp; assert 'sklearn' not in sys.modules; fastmlp.MLPClassifier; " \
           "assert 'sklearn' in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_fitted_attributes_have_scikit_learn_names_shapes_and_orientation(blobs):
    X, y = blobs
    clf = fit_quietly(quick(hidden_layer_sizes=(16, 8), max_iter=3), X, y)
    assert [c.shape for c in clf.coefs_] == [(12, 16), (16, 8), (8, 4)]   # (n_in, n_out): W.T
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (4,)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 4 and clf.out_activation_ == "softmax"
    assert clf.n_features_in_ == 12 and list(clf.classes_) == [0, 1, 2, 3]
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3 and clf.t_ == 3 * 600
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.loss_ == clf.loss_curve_[-1]
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    # coefs_ are the network the engine predicts with: the forward pass in NumPy agrees.
    h = X.astype(np.float64)
    for i, (W, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        h = h @ W + b
        if i < 2:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(clf.predict_proba(X), ref.softmax(h), rtol=1e-4, atol=1e-6)


def test_arbitrary_labels_are_encoded_and_given_back(blobs):
    X, y = blobs
    names = np.array(["cat", "dog", "eel", "fox"])[y]
    odd = np.array([-7, 3, 100, 42])[y]
    for labels in (names, odd):
        clf = fit_quietly(quick(), X, labels)
        assert list(clf.classes_) == sorted(set(labels))
        assert set(clf.predict(X)) <= set(labels)
        assert clf.score(X, labels) > 0.8
        assert clf.predict_proba(X).shape == (600, 4)


def test_a_binary_problem_has_two_softmax_outputs(blobs):
    X, y = blobs
    yb = np.where(y % 2 == 0, "even", "odd")
    clf = fit_quietly(quick(), X, yb)
    proba = clf.predict_proba(X)
    assert proba.shape == (600, 2) and clf.coefs_[-1].shape == (32, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-9, atol=1e-12)


def test_predict_before_fit_raises_not_fitted(blobs):
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(blobs[0])


@pytest.mark.parametrize("params,message", [
    ({"solver": "sgd"}, r"solver='sgd' is not supported: fastmlp's engine trains with Adam only"),
    ({"solver": "lbfgs"}, r"solver='lbfgs' is not supported"),
    ({"activation": "tanh"}, r"activation='tanh' is not supported: fastmlp's engine has ReLU hidden layers only"),
    ({"hidden_layer_sizes": ()}, r"no hidden layer\) is not supported"),
    ({"hidden_layer_sizes": (8, 0)}, r"hidden_layer_sizes must be positive integers"),
    ({"beta_2": 0.9999999999}, r"beta_2=0.9999999999 cannot be used: .*float32"),
    ({"learning_rate_init": -1.0}, r"The 'learning_rate_init' parameter of MLPClassifier must be"),
    ({"solver": "newton"}, r"The 'solver' parameter of MLPClassifier must be"),
])
def test_what_the_engine_cannot_do_is_a_clear_value_error(blobs, params, message):
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**params).fit(*blobs)


@pytest.mark.parametrize("bad,message", [(np.nan, "Input X contains NaN"), (np.inf, "Input X contains infinity")])
def test_nan_and_infinity_are_rejected_with_scikit_learns_messages(blobs, bad, message):
    X = blobs[0].copy()
    X[5, 3] = bad
    with pytest.raises(ValueError, match=message):
        MLPClassifier().fit(X, blobs[1])
    clf = fit_quietly(quick(max_iter=1), *blobs)
    with pytest.raises(ValueError, match=message):
        clf.predict(X)


def test_feature_names_are_recorded_from_a_dataframe(blobs):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(blobs[0], columns=[f"f{i}" for i in range(12)])
    clf = fit_quietly(quick(max_iter=1), frame, blobs[1])
    assert list(clf.feature_names_in_) == [f"f{i}" for i in range(12)]
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.predict(blobs[0])
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit"):
        clf.predict(frame.rename(columns={"f0": "g0"}))


# ----------------------------------------------------------------------------- scikit-learn's training rules

def test_max_iter_without_convergence_warns_convergence_warning(blobs):
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\) reached"):
        quick(max_iter=2).fit(*blobs)


def test_training_stops_when_the_loss_stops_improving_by_tol(blobs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # stopping early is convergence: no warning
        clf = quick(max_iter=500, tol=1.0, n_iter_no_change=2).fit(*blobs)
    # tol=1: only the first epoch improves (on an infinite best loss); epochs 2, 3, 4 do not, and
    # the count 3 > n_iter_no_change stops the run after epoch 4, as in scikit-learn.
    assert clf.n_iter_ == 4


def test_early_stopping_keeps_the_weights_of_the_best_validation_score(blobs):
    X, y = blobs
    clf = quick(max_iter=40, early_stopping=True, n_iter_no_change=3, validation_fraction=0.2, tol=0.5).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ == 5  # tol=0.5: only epoch 1 improves
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    # The kept weights score best_validation_score_ on the held-out rows: rebuild the split.
    _, val = train_test_split(np.arange(len(y)), random_state=0, test_size=0.2, stratify=y)
    assert clf.score(X[val], y[val]) == pytest.approx(clf.best_validation_score_)


def test_the_same_random_state_gives_the_same_model_bit_for_bit(blobs):
    a = fit_quietly(quick(), *blobs)
    b = fit_quietly(quick(), *blobs)
    assert all(np.array_equal(u, v) for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))
    assert a.loss_curve_ == b.loss_curve_
    c = fit_quietly(quick(random_state=1), *blobs)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_warm_start_continues_from_the_fitted_weights(blobs):
    clf = fit_quietly(quick(max_iter=3, warm_start=True), *blobs)
    first = clf.coefs_[0].copy()
    fit_quietly(clf, *blobs)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 6 and clf.t_ == 6 * 600
    assert clf.loss_curve_[3] < clf.loss_curve_[0]           # it went on, it did not start over
    assert not np.array_equal(first, clf.coefs_[0])
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        clf.fit(blobs[0], blobs[1] % 3)


def test_partial_fit_trains_one_epoch_per_call_over_declared_classes(blobs):
    X, y = blobs
    clf = quick()
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:300], y[:300], classes=[0, 1, 2, 3, 4])  # class 4 never appears: an output all the same
    for _ in range(5):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 6 and clf.t_ == 300 + 5 * 600
    assert list(clf.classes_) == [0, 1, 2, 3, 4] and clf.predict_proba(X).shape == (600, 5)
    assert clf.score(X, y) > 0.7
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        clf.partial_fit(X, y + 10)
    with pytest.raises(ValueError, match="X has 5 features, but MLPClassifier is expecting 12"):
        clf.partial_fit(X[:, :5], y)
    assert not hasattr(MLPClassifier(early_stopping=True), "partial_fit")


@pytest.mark.parametrize("classes,fragment", [
    ([0, 1, 2, 9], "`y` has classes not in `self.classes_`"),   # 3 is not declared: it would train as 9
    ([5, 6, 7, 8], "`y` has classes not in `self.classes_`"),
    (["a", "b", "c", "d"], "Mix of label input types (string and number)"),
])
def test_the_first_partial_fit_refuses_labels_that_classes_does_not_declare(blobs, classes, fragment):
    clf = quick()
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        clf.partial_fit(*blobs, classes=classes)
    assert not hasattr(clf, "classes_")


def test_partial_fit_epochs_equal_fit_epochs_without_shuffling(blobs):
    """Adam's state carries over between partial_fit calls exactly as between a fit's epochs."""
    X, y = blobs
    fitted = fit_quietly(quick(max_iter=4, shuffle=False), X, y)
    stepped = quick(shuffle=False)
    for _ in range(4):
        stepped.partial_fit(X, y, classes=np.unique(y))
    for u, v in zip(fitted.coefs_, stepped.coefs_):
        np.testing.assert_array_equal(u, v)
    assert fitted.loss_curve_ == stepped.loss_curve_


def test_a_diverging_fit_raises_and_leaves_the_estimator_as_it_was(blobs):
    X = blobs[0]
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=1e37, random_state=0)
    with pytest.raises(TrainingDiverged, match="training diverged .*learning_rate_init"):
        clf.fit(X, blobs[1])
    assert not hasattr(clf, "coefs_")


def test_batch_size_larger_than_the_data_is_clipped_with_a_warning(blobs):
    with pytest.warns(UserWarning, match="It is going to be clipped"):
        fit_quietly(quick(batch_size=5000, max_iter=1), *blobs)


# ----------------------------------------------------------------------------- the L2 penalty

def test_alpha_is_scikit_learns_l2_penalty_in_the_loss_curve(blobs):
    """One epoch over one batch: loss_curve_[0] is the cross-entropy at the initial weights plus
    alpha/(2n) * sum ||W||^2 of those weights (the reference's twin of the kernel)."""
    X, y = blobs
    alpha = 3.0
    plain = quick(max_iter=1, batch_size=600, alpha=0.0, shuffle=False)
    penal = quick(max_iter=1, batch_size=600, alpha=alpha, shuffle=False)
    fit_quietly(plain, X, y)
    fit_quietly(penal, X, y)
    start = MLP.initialized([12, 32, 4], np.random.default_rng(0))
    glorot_init(start, np.random.default_rng(0))  # seed 0's start, drawn as scikit-learn draws it
    weights = [W for W, _ in start.layers()]
    penalty, _ = ref.l2_penalty(weights, alpha, 600)
    assert penal.loss_curve_[0] == pytest.approx(plain.loss_curve_[0] + penalty, rel=1e-5)


def test_a_first_fit_starts_from_scikit_learns_glorot_uniform_weights():
    """Weights and biases of a layer with fan-in a and fan-out b start in U(-c, c), c = sqrt(6 / (a + b)),
    as scikit-learn's do; the same seed draws the same start."""
    a = MLP.initialized([300, 200, 10], np.random.default_rng(0))
    b = MLP.initialized([300, 200, 10], np.random.default_rng(1))
    glorot_init(a, np.random.default_rng(5))
    glorot_init(b, np.random.default_rng(5))
    np.testing.assert_array_equal(a.params, b.params)
    for (W, bias), (fan_in, fan_out) in zip(a.layers(), [(300, 200), (200, 10)]):
        c = np.sqrt(6 / (fan_in + fan_out))
        for p in (W, bias):
            assert np.abs(p).max() <= c and np.abs(p).max() > 0.9 * c
            assert abs(p.mean()) < 4 * c / np.sqrt(3 * p.size)  # four standard errors of U(-c, c)


def test_alpha_shrinks_the_weights(blobs):
    small = fit_quietly(quick(alpha=0.0, max_iter=60), *blobs)
    large = fit_quietly(quick(alpha=10.0, max_iter=60), *blobs)
    assert sum(np.sum(W ** 2) for W in large.coefs_) < 0.5 * sum(np.sum(W ** 2) for W in small.coefs_)


# ----------------------------------------------------------------------------- data handling

def test_float32_c_ordered_input_is_used_without_a_copy():
    """The training matrix is read in place: fitting a 16 MB float32 matrix allocates far less than
    one copy of it (the gather copies a batch at a time)."""
    X, y = make_classification(n_samples=40_000, n_features=100, n_classes=3, n_informative=10, random_state=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    clf = quick(max_iter=1, batch_size=256)
    fit_quietly(clf, X[:500], y[:500])  # compile and warm up outside the measurement
    tracemalloc.start()
    fit_quietly(clf, X, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.2 * X.nbytes, f"fit allocated {peak} bytes at its peak for a {X.nbytes}-byte X"


def test_pickle_and_joblib_round_trips_are_exact(blobs, tmp_path):
    X, y = blobs
    clf = fit_quietly(quick(), X, np.array(["a", "b", "c", "d"])[y])
    for loaded in (pickle.loads(pickle.dumps(clf)), joblib.load(joblib.dump(clf, tmp_path / "clf.joblib")[0])):
        np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
        assert loaded.loss_curve_ == clf.loss_curve_ and loaded.get_params() == clf.get_params()
        assert all(np.shares_memory(W, loaded._params) for W in loaded.coefs_)  # still views of one buffer
        loaded.partial_fit(X, np.array(["a", "b", "c", "d"])[y])  # and training goes on from there


# ----------------------------------------------------------------------------- scikit-learn's tools

def test_clone_gives_an_unfitted_estimator_with_the_same_parameters(blobs):
    clf = fit_quietly(quick(alpha=0.01, lr_decay=0.9), *blobs)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "coefs_")


def test_works_inside_a_pipeline_with_a_scaler():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), quick(batch_size=16, max_iter=200))
    assert pipe.fit(X, y).score(X, y) > 0.95


def test_cross_val_score_runs_every_fold():
    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(make_pipeline(StandardScaler(), quick(batch_size=16, max_iter=200)), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_grid_search_with_two_worker_processes(blobs):
    X, y = blobs
    search = GridSearchCV(quick(max_iter=15), {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(8,), (32,)]},
                          cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert search.best_params_["hidden_layer_sizes"] in [(8,), (32,)]
    assert search.best_estimator_.score(X, y) > 0.7
    assert len(search.cv_results_["mean_test_score"]) == 4


def test_verbose_prints_scikit_learns_lines(blobs, capsys):
    fit_quietly(quick(max_iter=2, verbose=True, early_stopping=True), *blobs)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Iteration 1, loss = ") and out[1].startswith("Validation score: ")


# ----------------------------------------------------------------------------- sample weights

def test_sample_weights_of_one_are_no_weights_bit_for_bit(blobs):
    X, y = blobs
    plain = fit_quietly(quick(max_iter=3), X, y)
    ones = quick(max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ones.fit(X, y, sample_weight=np.ones(len(y)))
    for u, v in zip(plain.coefs_ + plain.intercepts_, ones.coefs_ + ones.intercepts_):
        np.testing.assert_array_equal(u, v)
    assert plain.loss_curve_ == ones.loss_curve_


def test_integer_weights_train_as_the_rows_repeated_in_one_full_batch(blobs):
    """One epoch of one full batch in a fixed order: weights 0, 1, 2 equal dropping, keeping and
    doubling the rows, to float32 round-off (the batch's sums are taken in another order)."""
    X, y = blobs[0][:120], blobs[1][:120]
    w = np.tile([0, 1, 2], 40)
    weighted = quick(max_iter=1, batch_size=200, shuffle=False)
    repeated = quick(max_iter=1, batch_size=200, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted.fit(X, y, sample_weight=w)
        repeated.fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    for u, v in zip(weighted.coefs_ + weighted.intercepts_, repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)


def test_balanced_weights_raise_a_rare_class_recall(blobs):
    from sklearn.metrics import recall_score
    from sklearn.utils.class_weight import compute_sample_weight
    X, y = blobs
    keep = (y != 3) | (np.arange(len(y)) % 10 == 0)  # class 3 cut to a tenth
    X, y = X[keep], y[keep]
    plain = fit_quietly(quick(max_iter=10, hidden_layer_sizes=(8,)), X, y)
    balanced = quick(max_iter=10, hidden_layer_sizes=(8,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        balanced.fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    rare = lambda clf: recall_score(y, clf.predict(X), labels=[3], average=None)[0]  # noqa: E731
    assert rare(balanced) >= rare(plain)


@pytest.mark.parametrize("shuffle", [False, True])
def test_rows_of_weight_zero_train_exactly_as_if_they_were_not_there(blobs, shuffle):
    """scikit-learn's rule for weights, bit for bit: even a mini-batch that would hold only rows of
    weight 0 (here the first 200 rows, batches of 50, unshuffled) is never formed."""
    X, y = blobs
    w = np.r_[np.zeros(200), np.ones(400)]
    weighted = quick(max_iter=4, shuffle=shuffle)
    dropped = quick(max_iter=4, shuffle=shuffle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted.fit(X, y, sample_weight=w)
        dropped.fit(X[200:], y[200:])
    for u, v in zip(weighted.coefs_ + weighted.intercepts_, dropped.coefs_ + dropped.intercepts_):
        np.testing.assert_array_equal(u, v)
    assert weighted.loss_curve_ == dropped.loss_curve_ and weighted.t_ == dropped.t_ == 4 * 400


def test_weights_that_are_all_zero_or_below_float32s_normal_range_are_one_error(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero number"):
        quick().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="below 1.2e-38, float32's smallest normal number"):
        quick().fit(X, y, sample_weight=np.full(len(y), 1e-40))
    tiny = fit_quietly(quick(max_iter=2, alpha=0.0), X, y[:, None].ravel())  # the same fit with weights 1e-37:
    scaled = quick(max_iter=2, alpha=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scaled.fit(X, y, sample_weight=np.full(len(y), 1e-37))
    np.testing.assert_allclose(scaled.coefs_[0], tiny.coefs_[0], rtol=1e-3, atol=1e-5)  # uniform weights: no weights


def test_hyperparameters_may_be_numpy_numbers_as_in_a_grid_search(blobs):
    X, y = blobs
    grid = GridSearchCV(quick(max_iter=2), {"alpha": np.arange(2), "max_iter": np.array([1, 2])}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
        clf = quick(learning_rate_init=np.float32(0.01), beta_1=np.float16(0.5), epsilon=np.float64(1e-7),
                    max_iter=np.int64(2)).fit(X, y)
    assert grid.best_params_["alpha"] in (0, 1) and clf.n_iter_ == 2


def test_negative_sample_weights_are_refused(blobs):
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        quick().fit(*blobs, sample_weight=-np.ones(len(blobs[1])))


# ----------------------------------------------------------------------------- the regressor

@pytest.fixture(scope="module")
def waves():
    """800 rows, 6 features, two smooth targets."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (800, 6)).astype(np.float32)
    y = np.stack([np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2, X[:, 2] * X[:, 3]], axis=1)
    return X, y


def test_the_regressor_fits_one_or_many_targets_with_scikit_learns_attributes(waves):
    X, y = waves
    reg = MLPRegressor(hidden_layer_sizes=(64,), max_iter=200, random_state=0).fit(X, y)
    assert reg.score(X, y) > 0.9 and reg.predict(X).shape == (800, 2)
    assert reg.out_activation_ == "identity" and reg.n_outputs_ == 2 and [c.shape for c in reg.coefs_] == [(6, 64),
                                                                                                        (64, 2)]
    one = MLPRegressor(hidden_layer_sizes=(64,), max_iter=100, random_state=0).fit(X, y[:, 0])
    assert one.predict(X).shape == (800,) and one.score(X, y[:, 0]) > 0.9


def test_one_target_in_a_column_is_one_target_as_in_scikit_learn(waves):
    from sklearn.exceptions import DataConversionWarning
    X, y = waves
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(DataConversionWarning):
            reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y[:, :1])
    assert reg.predict(X).shape == (800,)  # not (800, 1): `pred - y` would broadcast to (800, 800)


def test_partial_fit_on_another_number_of_targets_says_so(waves):
    X, y = waves
    reg = MLPRegressor(hidden_layer_sizes=(8,)).partial_fit(X, y)
    with pytest.raises(ValueError, match="y has 3 targets, but the network was fitted with 2"):
        reg.partial_fit(X, np.c_[y, y[:, 0]])


def test_the_regressors_loss_curve_is_scikit_learns_squared_error(waves):
    """One epoch of one batch, no shuffling: loss_curve_[0] is 1/2 the mean squared error over rows and
    targets at the initial weights, plus the L2 penalty."""
    X, y = waves
    alpha = 0.5
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=1, batch_size=800, shuffle=False, alpha=alpha,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    start = MLP.initialized([6, 16, 2], np.random.default_rng(0))
    glorot_init(start, np.random.default_rng(0))
    (W1, b1), (W2, b2) = [(W.astype(np.float64), b.astype(np.float64)) for W, b in start.layers()]
    out = np.maximum(X @ W1.T + b1, 0) @ W2.T + b2
    penalty, _ = ref.l2_penalty([W1, W2], alpha, 800)
    assert reg.loss_curve_[0] == pytest.approx(0.5 * ((out - y) ** 2).mean() + penalty, rel=1e-5)


def test_the_regressor_stops_early_on_its_validation_r2(waves):
    X, y = waves
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, early_stopping=True, n_iter_no_change=3, tol=1e-3,
                       random_state=0).fit(X, y)
    assert reg.n_iter_ < 300 and len(reg.validation_scores_) == reg.n_iter_
    assert reg.best_validation_score_ == max(reg.validation_scores_) and reg.best_validation_score_ > 0.5


# ----------------------------------------------------------------------------- one model format

def test_an_estimator_saved_and_loaded_predicts_the_same_bits(blobs, waves, tmp_path):
    import fastmlp
    X, y = blobs
    clf = fit_quietly(quick(), X, np.array(["a", "b", "c", "d"])[y])
    clf.save(tmp_path / "clf.npz")
    back = fastmlp.load(tmp_path / "clf.npz")
    assert type(back) is MLPClassifier and back.get_params() == clf.get_params()  # random_state 0 too
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    assert back.loss_curve_ == clf.loss_curve_ and back.n_iter_ == clf.n_iter_
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(*waves)
    reg.save(tmp_path / "reg.npz")
    np.testing.assert_array_equal(fastmlp.load(tmp_path / "reg.npz").predict(waves[0]), reg.predict(waves[0]))


def test_a_model_trained_by_the_command_is_a_classifier_of_pixels(tmp_path):
    """``fastmlp train``'s model.npz loads as an MLPClassifier over classes 0..9 that takes uint8 pixels
    (0 to 255) as features: it predicts what the model predicts, bit for bit."""
    import fastmlp
    from fastmlp.config import TrainConfig
    from fastmlp.data.datasets import Dataset
    from fastmlp.training.train import train
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 64), dtype=np.uint8)
    labels = (images[:, :8].sum(axis=1) % 10).astype(np.uint8)
    ds = Dataset("toy", images[:240], labels[:240], images[240:], labels[240:], source="memory", checksums={})
    result = train(TrainConfig(hidden_sizes=(16,), batch_size=20, epochs=2, val_size=40), ds, out_dir=tmp_path / "run")
    clf = fastmlp.load(tmp_path / "run" / "model.npz")
    assert list(clf.classes_) == list(range(10)) and clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.predict(images), result.model.predict(images))
    np.testing.assert_array_equal(clf.predict(images.astype(np.float64)), result.model.predict(images))


@pytest.mark.parametrize("hidden,layers", [(7, (7,)), (np.int64(7), (7,)), (range(5, 7), (5, 6)), ({9}, (9,))])
def test_a_saved_estimator_loads_with_the_layers_its_hidden_layer_sizes_made(blobs, tmp_path, hidden, layers):
    import fastmlp
    X, y = blobs
    fit_quietly(quick(hidden_layer_sizes=hidden, max_iter=1, n_iter_no_change=np.inf), X, y).save(tmp_path / "m.npz")
    back = fastmlp.load(tmp_path / "m.npz")
    assert back.hidden_layer_sizes == layers and back.n_iter_no_change == np.inf
    assert fit_quietly(back, X, y).n_iter_ == 1  # its parameters pass scikit-learn's validation again


def test_a_loaded_estimator_continues_a_warm_start_by_scikit_learns_stopping_count(blobs, tmp_path):
    """The count of epochs without improvement is kept: a warm fit of an estimator that stopped on
    n_iter_no_change stops after one epoch, loaded or not (Adam's moments are not kept; see load)."""
    import fastmlp
    X, y = blobs
    stopped = fit_quietly(quick(max_iter=200, n_iter_no_change=2, tol=10.0), X, y)  # no epoch improves by 10
    stopped.save(tmp_path / "m.npz")
    back = fastmlp.load(tmp_path / "m.npz")
    assert back.random_state == 0 and back._no_improvement_count == stopped._no_improvement_count == 3
    for est in (stopped, back):
        fit_quietly(est.set_params(warm_start=True), X, y)
    assert stopped.n_iter_ == back.n_iter_ == 1


@pytest.mark.parametrize("labels", [np.array(["2020-01-01", "2021-06-01", "2022-01-01", "2023-03-04"], "M8[D]"),
                                    np.array([1, 3, 5, 7], "m8[s]")])
def test_dates_and_durations_as_labels_are_saved_and_loaded(blobs, tmp_path, labels):
    import fastmlp
    X, y = blobs
    clf = fit_quietly(quick(max_iter=1), X, labels[y])
    clf.save(tmp_path / "m.npz")
    back = fastmlp.load(tmp_path / "m.npz")
    assert back.classes_.dtype == labels.dtype and np.array_equal(back.predict(X), clf.predict(X))


def test_labels_that_a_model_file_cannot_keep_are_one_error_and_no_file(blobs, tmp_path):
    from decimal import Decimal
    X, y = blobs
    clf = fit_quietly(quick(max_iter=1), X, y)
    clf.classes_ = np.array([Decimal(i) for i in range(4)], dtype=object)  # no label scikit-learn takes fails so
    with pytest.raises(ValueError, match="cannot save this estimator: the model file keeps its metadata as JSON"):
        clf.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def test_a_new_fit_of_a_loaded_command_model_learns_from_the_features_as_given(tmp_path):
    """A model file of ``fastmlp train`` takes pixels (its input scale is 1/255); a fit, not warm,
    starts over on the X it is given, and predicts from that X as a new estimator does."""
    import fastmlp
    rng = np.random.default_rng(0)
    MLP.initialized([2, 32, 2], rng).save(tmp_path / "cli.npz")
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    params = dict(max_iter=30, random_state=0, learning_rate_init=0.01)
    refit = fit_quietly(fastmlp.load(tmp_path / "cli.npz").set_params(**params), X, y)
    fresh = fit_quietly(MLPClassifier(hidden_layer_sizes=(32,), **params), X, y)
    np.testing.assert_array_equal(refit.predict_proba(X), fresh.predict_proba(X))


def test_the_commands_read_an_estimators_model_file_at_its_own_input_scale(tmp_path):
    """An estimator fitted on raw pixels (0 to 255: input scale 1) is evaluated and asked to predict by
    the commands as it predicts itself, not on pixels / 255 as a model of ``fastmlp train`` is."""
    from helpers import run
    from PIL import Image
    from synthetic import SyntheticDataset, learnable_arrays
    arrays = learnable_arrays(600, 200)
    SyntheticDataset("mnist", arrays=arrays).write(tmp_path / "data" / "mnist")
    X, y = arrays["train_images"].reshape(600, -1), arrays["train_labels"]
    clf = fit_quietly(quick(max_iter=5), X, y)
    clf.save(tmp_path / "clf.npz")
    test = arrays["test_images"].reshape(200, -1)
    out = run("evaluate", tmp_path / "clf.npz", "--data-dir", tmp_path / "data", "--no-verify").stdout
    shown = float(re.search(r"^\s+test\s+loss \S+\s+accuracy\s+([\d.]+)%$", out, re.M).group(1))
    assert shown == pytest.approx(100 * clf.score(test, arrays["test_labels"]), abs=0.005)
    stroke = np.zeros((28, 28), np.uint8)
    stroke[4:24, 12:16] = 255  # a "1" as a person draws it
    Image.fromarray(stroke).save(tmp_path / "digit.png")
    said = run("predict", tmp_path / "clf.npz", tmp_path / "digit.png", "--json").stdout
    from fastmlp.data.images import load_digit
    pixels = load_digit(tmp_path / "digit.png").reshape(1, -1) * 255
    assert json.loads(said)[0]["class"] == clf.predict(pixels)[0]
    assert json.loads(said)[0]["probability"] == round(float(clf.predict_proba(pixels).max()), 6)


def test_the_commands_name_an_estimators_classes_and_refuse_a_regressors_model(tmp_path, waves):
    from helpers import assert_one_line_error, run
    from PIL import Image
    from synthetic import learnable_arrays
    arrays = learnable_arrays(300, 10)
    X, y = arrays["train_images"], arrays["train_labels"]
    keep = np.isin(y, [3, 5, 8])
    clf = fit_quietly(quick(max_iter=3), X[keep], np.array(["three", "five", "eight"])[(y[keep] == 5) + 2 * (y[keep] == 8)])
    clf.save(tmp_path / "words.npz")
    stroke = np.zeros((28, 28), np.uint8)
    stroke[4:24, 12:16] = 255
    Image.fromarray(stroke).save(tmp_path / "digit.png")
    said = json.loads(run("predict", tmp_path / "words.npz", tmp_path / "digit.png", "--json").stdout)[0]
    from fastmlp.data.images import load_digit
    pixels = load_digit(tmp_path / "digit.png")
    assert said["class"] == clf.predict(pixels.reshape(1, -1) * 255)[0] and said["class"] in clf.classes_
    assert_one_line_error(run("evaluate", tmp_path / "words.npz"), "the model's classes are ['eight', 'five', 'three']")
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(np.tile(waves[0], (1, 131))[:, :784], waves[1])
    reg.save(tmp_path / "reg.npz")
    for command in (["predict", tmp_path / "reg.npz", tmp_path / "digit.png"], ["evaluate", tmp_path / "reg.npz"]):
        assert_one_line_error(run(*command), "a regressor's model (MLPRegressor): its outputs are numbers")
    exported = run("export", tmp_path / "reg.npz", "--onnx", tmp_path / "reg.onnx")
    assert exported.returncode == 0 and "outputs logits float32 [N, 2]" in exported.stdout


def test_an_estimator_exports_to_onnx_and_onnxruntime_agrees(blobs, waves, onnxruntime):
    X, y = blobs
    clf = fit_quietly(quick(), X, y)
    session = onnxruntime.InferenceSession(clf.to_onnx().SerializeToString())
    logits, proba = session.run(None, {"x": X})
    np.testing.assert_array_equal(proba.argmax(axis=1), clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-4, atol=1e-6)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(*waves)
    session = onnxruntime.InferenceSession(reg.to_onnx().SerializeToString())
    assert [o.name for o in session.get_outputs()] == ["logits"]
    np.testing.assert_allclose(session.run(None, {"x": waves[0]})[0], reg.predict(waves[0]), rtol=1e-4, atol=1e-5)
