"""``MLPRegressor``: scikit-learn's multi-layer perceptron regressor on fastmlp's engine.

A drop-in for ``sklearn.neural_network.MLPRegressor`` with ``solver="adam"`` and
``activation="relu"``; the shared machinery is :class:`fastmlp.interop.estimator.MLPBase`. The output
layer is the identity over K targets (one or many), trained on scikit-learn's squared error::

    loss = 1/2 sum_i w_i ||out_i - y_i||^2 / (K sum w)  +  alpha / (2 sum w) * sum ||W||^2

(scikit-learn reports this mean over the outputs and steps along ``sum_i w_i (out_i - y_i) /
sum w``, K times its gradient; the engine does the same, so the two train alike).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d, validate_data

from .estimator import MLPBase


class MLPRegressor(RegressorMixin, MLPBase):
    """Multi-layer perceptron regressor trained with Adam on fastmlp's Numba engine.

    The parameters are :class:`~fastmlp.interop.classifier.MLPClassifier`'s (scikit-learn's names,
    defaults and meanings); ``early_stopping`` holds out a random ``validation_fraction`` and
    scores it by R^2, as scikit-learn does. ``fit(X, y, sample_weight=None)`` takes ``y`` of
    shape (n_samples,) or (n_samples, n_targets) and weighs each row's error.

    Attributes (after ``fit``): ``n_features_in_``, ``feature_names_in_``, ``coefs_``,
    ``intercepts_``, ``n_layers_``, ``n_outputs_`` (the targets), ``out_activation_``
    ('identity'), ``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
    ``best_validation_score_``, ``n_iter_``, ``t_``.
    """

    _out_activation = "identity"

    def fit(self, X, y, sample_weight=None):
        """Train on ``X`` (n_samples, n_features) and targets ``y``; returns self (see
        :meth:`fastmlp.interop.classifier.MLPClassifier.fit` for the stopping rules)."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @available_if(MLPBase._partial_fit_available)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X``, ``y``, continuing the weights and the Adam state; returns self."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X) -> np.ndarray:
        """The network's output: (n_samples,) when fitted on a 1-D ``y``, else (n_samples, n_targets)."""
        out = self._logits(X).astype(np.float64)
        return out[:, 0] if self._y_1d else out

    # ------------------------------------------------------------------ MLPBase's hooks

    def _validate_xy(self, X, y, reset: bool):
        return validate_data(self, X, y, dtype=np.float32, order="C", reset=reset, multi_output=True,
                             y_numeric=True)

    def _engine_targets(self, y, first_pass: bool, incremental: bool, classes):
        """The targets as float32 rows (n, K); a 1-D ``y`` is one target, and ``predict`` gives 1-D back."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:  # scikit-learn's rule: one column is one target, said with a warning
            y = column_or_1d(y, warn=True)
        one_d = y.ndim == 1
        targets = np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.float32)
        if not np.isfinite(targets).all():
            raise ValueError("Input y contains NaN or infinity.")
        if not first_pass and one_d != self._y_1d:
            raise ValueError(f"y has {'1' if one_d else '2'} dimensions, but the network was fitted with "
                             f"{'1' if self._y_1d else '2'}: warm_start and partial_fit continue the same network")
        return targets, {"_y_1d": one_d}

    def _split(self, rows: np.ndarray, targets: np.ndarray, seed: int):
        """A random ``validation_fraction`` of the rows, as scikit-learn's early stopping holds out."""
        train, val = train_test_split(rows, random_state=seed, test_size=self.validation_fraction)
        return np.sort(train), np.sort(val)

    def _validation_score(self, out: np.ndarray, targets: np.ndarray, weights) -> float:
        return float(r2_score(targets, out.astype(np.float64), sample_weight=weights))

    def _saved_targets(self) -> dict:
        return {"targets_1d": bool(self._y_1d)}

    def _restore_targets(self, saved: dict) -> None:
        self._y_1d = bool(saved.get("targets_1d", True))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
