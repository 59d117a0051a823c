"""``MLPClassifier``: scikit-learn's multi-layer perceptron classifier on fastmlp's engine.

A drop-in for ``sklearn.neural_network.MLPClassifier`` with ``solver="adam"`` and
``activation="relu"`` (the engine's only optimizer and hidden activation); the shared machinery
is :class:`fastmlp.interop.estimator.MLPBase`. The output is a softmax over K classes (``K = 2`` for a
binary problem: a softmax over two outputs, where scikit-learn uses one logistic output; the
probabilities are the same kind)::

    p = softmax(out)     (n, K)        loss_i = -ln p[i, y_i]

Labels may be any sortable values (strings, non-contiguous integers): ``classes_`` holds them
sorted, and the engine sees their positions in it.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import validate_data

from ..training.model import log_softmax
from .estimator import MLPBase


class MLPClassifier(ClassifierMixin, MLPBase):
    """Multi-layer perceptron classifier trained with Adam on fastmlp's Numba engine.

    Parameters have scikit-learn's names, defaults and meanings.

    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer (at least one).
    activation : {'relu'}, default='relu'
        Hidden activation. The engine has ReLU only; scikit-learn's other values raise ValueError.
    solver : {'adam'}, default='adam'
        The engine trains with Adam only; 'sgd' and 'lbfgs' raise ValueError.
    alpha : float >= 0, default=1e-4
        L2 penalty: ``alpha / (2 sum w) * sum ||W||^2`` per batch (weights, not biases).
    batch_size : int or 'auto', default='auto'
        Rows per mini-batch; 'auto' is ``min(200, n_samples)``. Larger than the training set:
        clipped to it, with a warning (as scikit-learn).
    learning_rate_init : float > 0, default=1e-3
        Adam's step size eta.
    max_iter : int >= 1, default=200
        Epochs (passes over the training rows) at most.
    shuffle : bool, default=True
        A fresh permutation of the training rows every epoch; False keeps their order.
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the permutations and the early-stopping split. An int gives
        the same fitted model, bit for bit, every time, whatever the thread count.
    tol : float >= 0, default=1e-4
        Improvement below which an epoch counts as not improving (training loss, or validation
        accuracy with ``early_stopping``).
    verbose : bool, default=False
        Print the loss (and validation score) of every epoch.
    warm_start : bool, default=False
        ``fit`` continues from the current weights (with a fresh Adam state, as scikit-learn).
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the rows and stop when its accuracy has
        not improved by ``tol`` for ``n_iter_no_change`` epochs; the best weights are kept.
    validation_fraction : float in [0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's moment decay rates.
    epsilon : float > 0, default=1e-8
        Adam's epsilon.
    n_iter_no_change : int >= 1 or inf, default=10
    lr_decay : float in (0, 1], default=1.0
        fastmlp's own: eta is multiplied by it after every epoch (1 keeps it constant).
    learning_rate, power_t, momentum, nesterovs_momentum, max_fun
        Accepted so that scikit-learn code runs unchanged; as in scikit-learn they have no
        effect with ``solver='adam'``.

    ``fit(X, y, sample_weight=None)``: each row's loss weighs ``sample_weight[i]`` (scikit-learn's
    weighted mean: a row of weight 0, or below float32's smallest normal number, is left out as if
    it were not in X, an integer weight counts a row that many times, and
    ``compute_sample_weight("balanced", y)`` balances the classes).

    Attributes (after ``fit``): ``classes_``, ``n_features_in_``, ``feature_names_in_`` (for
    DataFrames with string column names), ``coefs_``, ``intercepts_``, ``n_layers_``,
    ``n_outputs_`` (output units: the number of classes), ``out_activation_`` ('softmax'),
    ``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
    ``best_validation_score_``, ``n_iter_`` (epochs of the last fit), ``t_`` (training rows
    seen by the optimizer). ``save(path)`` and :func:`fastmlp.load` keep it in fastmlp's model
    file; ``to_onnx()`` exports it.
    """

    _out_activation = "softmax"

    def fit(self, X, y, sample_weight=None):
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,); returns self.

        Up to ``max_iter`` epochs; stops earlier when the training loss (or, with
        ``early_stopping``, the validation accuracy) has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and warns ``ConvergenceWarning`` when ``max_iter`` ends
        the run instead. ``warm_start=True`` continues from the current weights.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @available_if(MLPBase._partial_fit_available)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``X``, ``y``, continuing the weights and the Adam state; returns self.

        ``classes`` (every label that will ever be seen) is required on the first call, as in
        scikit-learn. With ``early_stopping=True`` there is no ``partial_fit`` (scikit-learn
        refuses the call; here ``hasattr(clf, "partial_fit")`` says so up front).
        """
        if not hasattr(self, "_params") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, incremental=True, sample_weight=sample_weight, classes=classes)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row of ``X`` (n_samples, n_features): (n_samples,)."""
        codes = self._logits(X).argmax(axis=1)
        return self.classes_[codes]

    def predict_proba(self, X) -> np.ndarray:
        """``softmax`` of the output layer: (n_samples, n_classes) float64, columns in ``classes_`` order."""
        return np.exp(self.predict_log_proba(X))

    def predict_log_proba(self, X) -> np.ndarray:
        """``ln predict_proba(X)``, computed as a log-softmax (finite where the probability underflows)."""
        return log_softmax(self._logits(X))

    # ------------------------------------------------------------------ MLPBase's hooks

    def _validate_xy(self, X, y, reset: bool):
        X, y = validate_data(self, X, y, dtype=np.float32, order="C", reset=reset)
        check_classification_targets(y)
        return X, y

    def _engine_targets(self, y, first_pass: bool, incremental: bool, classes):
        """Class codes (positions in ``classes_``, int64) and ``classes_``; raises when ``y`` brings
        labels the network has no output for."""
        if incremental and not first_pass:
            if classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(f"`classes={np.asarray(classes)!r}` is not the same as on last call to partial_fit, "
                                 f"was: {self.classes_!r}")
            labels = self.classes_
        elif incremental:
            labels = unique_labels(classes)
        else:
            labels = unique_labels(y)
            if not first_pass and not np.array_equal(labels, self.classes_):
                raise ValueError(f"warm_start can only be used where `y` has the same classes as in the previous call "
                                 f"to fit. Previously got {self.classes_}, `y` has {labels}")
        if incremental:  # the first call too: `classes` must name every label of y
            unique_labels(y, labels)  # scikit-learn's error for labels of two kinds (strings and numbers)
            if np.setdiff1d(y, labels).size:
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {labels}. "
                                 f"'y' has {unique_labels(y)}.")
        return np.searchsorted(labels, y).astype(np.int64), {"classes_": labels}

    def _split(self, rows: np.ndarray, targets: np.ndarray, seed: int):
        """Stratified ``validation_fraction`` of the rows, as scikit-learn's early stopping holds out."""
        train, val = train_test_split(rows, random_state=seed, test_size=self.validation_fraction, stratify=targets)
        return np.sort(train), np.sort(val)

    def _validation_score(self, out: np.ndarray, targets: np.ndarray, weights) -> float:
        return float(accuracy_score(targets, out.argmax(axis=1), sample_weight=weights))

    def _saved_targets(self) -> dict:
        classes = self.classes_
        if classes.dtype.kind in "mM":  # dates and durations as their integer counts, which JSON holds
            classes = classes.astype(np.int64)
        return {"classes": classes.tolist(), "classes_dtype": self.classes_.dtype.str}

    def _restore_targets(self, saved: dict) -> None:
        self.classes_ = np.array(saved["classes"], dtype=np.dtype(saved["classes_dtype"]))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
