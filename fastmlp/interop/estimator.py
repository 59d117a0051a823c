"""scikit-learn's multi-layer perceptrons on fastmlp's engine: what ``MLPClassifier`` and ``MLPRegressor`` share.

:class:`MLPBase` holds scikit-learn's parameters (the same names, defaults and meanings), its
epoch loop (``tol``, ``n_iter_no_change``, ``early_stopping``, ``warm_start``, ``partial_fit``,
the ``ConvergenceWarning``), sample weights, and the model's one file format and ONNX export.
:mod:`fastmlp.interop.classifier` and :mod:`fastmlp.interop.regressor` add what differs: the targets, the output
(softmax or identity), the validation score. Training runs in :class:`fastmlp.training.train.Trainer`'s
kernels, so a step allocates nothing and ``fit`` spends its time in the GEMMs. It needs
scikit-learn (``pip install 'fastmlp[sklearn]'``); ``import fastmlp`` alone does not import it.

The network, for ``X`` (n, d) and K outputs::

    h_0 = X s,   h_l = max(h_{l-1} @ coefs_[l-1] + intercepts_[l-1], 0)     (hidden layers)
    out = h_{L-1} @ coefs_[L-1] + intercepts_[L-1]                          (n, K)

``s`` is the model's input scale: 1 for a model fitted here, 1/255 for one trained by ``fastmlp
train`` on pixels (:func:`fastmlp.interop.persist.load`). ``coefs_[l]`` is (n_l, n_{l+1}) as in scikit-learn: the
transpose of the engine's ``W``; ``coefs_`` and ``intercepts_`` are views into the one float32
parameter buffer the engine trains and predicts with, so editing them in place, or assigning
new arrays of the same shapes to them or to their items (copied into the buffer as float32),
changes what the estimator predicts, saves and exports (:class:`LayerArrays`). Each mini-batch of m rows with weights
``w_i`` (1 without ``sample_weight``) minimises scikit-learn's loss, ``sum_i w_i l_i / sum w +
alpha / (2 sum w) * sum_l ||coefs_[l]||^2``, then takes one Adam step with
``learning_rate_init * lr_decay ** (epoch - 1)``.
"""

from __future__ import annotations

import json
import numbers
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..config import RULES, TrainConfig
from ..errors import ConfigError, ModelError
from ..training.model import MLP
from ..training.train import Trainer, TrainingDiverged

#: scikit-learn's name of each value the engine checks against :data:`fastmlp.config.RULES`.
_ENGINE_NAMES = {"learning_rate_init": "lr", "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps",
                 "alpha": "alpha", "lr_decay": "lr_decay"}

#: The fitted attributes a model file keeps besides the parameters (:meth:`MLPBase.save`).
_SAVED_ATTRIBUTES = ("n_iter_", "t_", "loss_", "loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_", "_no_improvement_count")


def glorot_init(model: MLP, rng: np.random.Generator) -> None:
    """scikit-learn's initialisation for ReLU networks (Glorot & Bengio 2010, uniform), in place:
    every weight and bias of a layer with fan-in a and fan-out b drawn from U(-c, c),
    ``c = sqrt(6 / (a + b))``, layer by layer, weights (as scikit-learn's (a, b) ``coefs_``) first."""
    for W, b in model.layers():
        fan_out, fan_in = W.shape
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        W[...] = rng.uniform(-bound, bound, (fan_in, fan_out)).T
        b[...] = rng.uniform(-bound, bound, fan_out)


class LayerArrays(list):
    """``coefs_`` or ``intercepts_`` of a fitted estimator: one array a layer, each a view into the
    estimator's flat float32 parameter buffer.

    Editing an array in place (``clf.coefs_[0][:] = 0``) edits the network. Assigning to an
    item (``clf.coefs_[0] = W``, also a slice) copies the new array into the buffer, after the
    checks of :func:`checked_layer`; the list keeps its views. Its length is the network's
    depth: ``append``, ``del`` and the like raise ``TypeError``. A copy or a pickle of it is a
    plain list.
    """

    def __init__(self, views: list[np.ndarray], name: str):
        super().__init__(views)
        self.name = name

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            positions = range(len(self))[index]
            values = list(value)
            if len(values) != len(positions):
                raise ModelError(f"{self.name}: {len(values)} arrays given for {len(positions)} layers; the "
                                 f"fitted network's depth is fixed")
            checked = [checked_layer(v, list.__getitem__(self, i).shape, f"{self.name}[{i}]")
                       for i, v in zip(positions, values)]
            for i, v in zip(positions, checked):
                np.copyto(list.__getitem__(self, i), v)
            return
        view = list.__getitem__(self, index)
        i = range(len(self))[index]
        np.copyto(view, checked_layer(value, view.shape, f"{self.name}[{i}]"))

    def _fixed_length(self, *args, **kwargs):
        raise TypeError(f"{self.name} holds one array per layer of the fitted network; its length cannot change")

    append = extend = insert = pop = remove = clear = sort = reverse = _fixed_length
    __delitem__ = __iadd__ = __imul__ = _fixed_length

    def __reduce__(self):
        return list, (list(self),)


def checked_layer(value, shape: tuple, name: str) -> np.ndarray:
    """``value`` as a fresh float32 array for a layer array of ``shape``; :class:`ModelError` (one
    line naming ``name``) when it is not real numbers of exactly that shape, finite in float32."""
    try:
        a = np.asarray(value)
    except ValueError:
        raise ModelError(f"{name} must be an array of shape {shape}; got a ragged sequence") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ModelError(f"{name} must hold real numbers (integers or floats); got {a.dtype}")
    if a.shape != tuple(shape):
        raise ModelError(f"{name} must have shape {tuple(shape)}, the fitted network's; got {a.shape}")
    with np.errstate(over="ignore"):
        out = np.array(a, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ModelError(f"{name} has values that are NaN or infinite (or beyond float32's range)")
    return out


class MLPBase(BaseEstimator):
    """The parameters and the training loop of :class:`~fastmlp.interop.classifier.MLPClassifier` and
    :class:`~fastmlp.interop.regressor.MLPRegressor` (see their docstrings for the parameters)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "lr_decay": [Interval(Real, 0, 1, closed="right")],
    }

    #: the output layer's activation, as scikit-learn names it (set by the subclasses)
    _out_activation = ""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, lr_decay=1.0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.lr_decay = lr_decay

    # ------------------------------------------------------------------ what the subclasses say

    def _validate_xy(self, X, y, reset: bool):
        """``(X, y)`` validated by scikit-learn's rules for this kind of estimator (X float32, C order)."""
        raise NotImplementedError

    def _engine_targets(self, y, first_pass: bool, incremental: bool, classes) -> tuple[np.ndarray, dict]:
        """The engine's targets for ``y`` (class codes, or float32 rows) and the attributes they fix."""
        raise NotImplementedError

    def _split(self, rows: np.ndarray, targets: np.ndarray, seed: int):
        """``(train rows, validation rows)`` of ``rows`` for early stopping (``targets``: theirs)."""
        raise NotImplementedError

    def _validation_score(self, out: np.ndarray, targets: np.ndarray, weights) -> float:
        """The score of outputs ``out`` (logits) against the engine's ``targets``, weighted."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fitting

    def _partial_fit_available(self) -> bool:
        if self.early_stopping:
            raise AttributeError("partial_fit does not support early_stopping=True")
        return True

    def _fit(self, X, y, *, incremental: bool, sample_weight=None, classes=None):
        self._validate_params()
        self._check_engine_support()
        hidden = self._hidden_sizes()
        fitted = hasattr(self, "_params")
        first_pass = not fitted or (not self.warm_start and not incremental)
        X, y = self._validate_xy(X, y, first_pass)
        targets, fixed = self._engine_targets(y, first_pass, incremental, classes)
        weights = None if sample_weight is None else _engine_weights(sample_weight, X)
        n_outputs = targets.shape[1] if targets.ndim == 2 else len(fixed["classes_"])
        sizes = [X.shape[1], *hidden, n_outputs]
        if not first_pass and sizes[1:-1] != self._sizes[1:-1]:
            raise ValueError(f"hidden_layer_sizes {hidden} do not match the fitted network {self._sizes[1:-1]}: "
                             f"warm_start and partial_fit continue the same network")
        if not first_pass and sizes[-1] != self._sizes[-1]:
            raise ValueError(f"y has {n_outputs} targets, but the network was fitted with {self._sizes[-1]}: "
                             f"warm_start and partial_fit continue the same network")
        if not first_pass and getattr(self, "_input_scale", 1.0) != 1.0:
            X = X * np.float32(self._input_scale)  # a model trained on pixels goes on from pixels
        fixed["_input_scale"] = self._input_scale if not first_pass else 1.0  # a new fit learns from X as given

        seed = self._seed()
        # a row of weight 0 is left out, exactly as if it were not in X (scikit-learn's rule for weights)
        rows = np.arange(len(targets), dtype=np.int64) if weights is None else np.flatnonzero(weights).astype(np.int64)
        val_rows = None
        if self.early_stopping:
            rows, val_rows = self._split(rows, targets[rows], seed)
            if len(val_rows) < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
        n_train = len(rows)
        if self.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if self.batch_size > n_train:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                              stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n_train))
        config = TrainConfig(hidden_sizes=tuple(hidden), batch_size=batch_size, lr=self.learning_rate_init,
                             beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon, epochs=self.max_iter,
                             lr_decay=self.lr_decay, seed=seed, val_size=0, alpha=self.alpha)
        trainer = Trainer(config, X, targets, num_classes=n_outputs, fit_rows=rows, sample_weight=weights)

        state = self._start_state(trainer, first_pass, incremental)
        try:
            self._epochs(trainer, state, incremental, X, targets, val_rows, weights)
        except TrainingDiverged as err:
            err.args = (f"loss became {err.loss} at epoch {err.epoch}, step {err.step}: training diverged "
                        f"(try a smaller learning_rate_init, or scale the features, e.g. with StandardScaler); "
                        f"the estimator is left as it was before this call",)
            raise
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=2)

        # Commit: everything above worked on the trainer and ``state``; the estimator changes here.
        if self.early_stopping:
            np.copyto(trainer.model.params, state.pop("best_params"))
        else:
            state.pop("best_params", None)
        for name, value in fixed.items():
            setattr(self, name, value)
        self._sizes = sizes
        self._params = trainer.model.params
        self._adam_m, self._adam_v, self._adam_t = trainer.adam.m, trainer.adam.v, trainer.adam.t
        for name, value in state.items():
            setattr(self, name, value)
        self._set_fitted_shape()
        return self

    def _start_state(self, trainer: Trainer, first_pass: bool, incremental: bool) -> dict:
        """The run's bookkeeping, continued from the estimator's unless this is a first pass.

        A first pass draws fresh weights as scikit-learn does (:func:`glorot_init`); otherwise the
        fitted weights are copied in. ``partial_fit`` also continues Adam's moments and step count
        (a fit, warm or not, starts a fresh Adam, as scikit-learn's does).
        """
        if first_pass:
            glorot_init(trainer.model, np.random.default_rng(trainer.config.seed))
            state = {"t_": 0, "loss_curve_": [], "_no_improvement_count": 0, "_adam_epochs": 0}
            if self.early_stopping:
                state.update(validation_scores_=[], best_validation_score_=-np.inf, best_loss_=None)
            else:
                state.update(best_loss_=np.inf, validation_scores_=None, best_validation_score_=None)
        else:
            np.copyto(trainer.model.params, self._params)
            state = {"t_": self.t_, "loss_curve_": list(self.loss_curve_),
                     "_no_improvement_count": getattr(self, "_no_improvement_count", 0), "_adam_epochs": 0,
                     "best_loss_": self.best_loss_, "validation_scores_": self.validation_scores_,
                     "best_validation_score_": self.best_validation_score_}
            if self.early_stopping:
                if state["validation_scores_"] is None:  # earlier fits ran without early stopping
                    state.update(validation_scores_=[], best_validation_score_=-np.inf, best_loss_=None)
                else:
                    state["validation_scores_"] = list(state["validation_scores_"])
            elif state["best_loss_"] is None:
                state.update(best_loss_=np.inf, validation_scores_=None, best_validation_score_=None)
            if incremental and hasattr(self, "_adam_m"):
                np.copyto(trainer.adam.m, self._adam_m)
                np.copyto(trainer.adam.v, self._adam_v)
                trainer.adam.t = self._adam_t
                state["_adam_epochs"] = getattr(self, "_adam_epochs", 0)
        if self.early_stopping:
            state["best_params"] = trainer.model.params.copy()
        return state

    def _epochs(self, trainer: Trainer, state: dict, incremental: bool, X, targets, val_rows, weights) -> None:
        """scikit-learn's epoch loop (``_fit_stochastic``) over the engine's fused steps."""
        n_train = len(trainer.sampler)
        state["n_iter_"] = 0
        for _ in range(self.max_iter):
            order = trainer.sampler.epoch_order() if self.shuffle else trainer.sampler.rows
            lr = self.learning_rate_init * self.lr_decay ** state["_adam_epochs"]
            loss_sum, _ = trainer.train_order(order, lr, state["n_iter_"] + 1)
            state["_adam_epochs"] += 1
            state["n_iter_"] += 1
            state["loss_"] = loss_sum / n_train
            state["t_"] += n_train
            state["loss_curve_"].append(state["loss_"])
            if self.verbose:
                print(f"Iteration {state['n_iter_']}, loss = {state['loss_']:.8f}")
            if self.early_stopping:
                out = trainer.model.rows_logits(X, val_rows, trainer.threads.current)
                score = self._validation_score(out, targets[val_rows], None if weights is None else weights[val_rows])
                self._count_validation(score, trainer, state)
            else:
                self._count_loss(state)
            if state["_no_improvement_count"] > self.n_iter_no_change:
                if self.verbose:
                    what = "Validation score" if self.early_stopping else "Training loss"
                    print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                          f"consecutive epochs. Stopping.")
                break
            if incremental:
                break
            if state["n_iter_"] == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                              "hasn't converged yet.", ConvergenceWarning, stacklevel=3)

    def _count_validation(self, score: float, trainer: Trainer, state: dict) -> None:
        """scikit-learn's rule with early stopping: an epoch improves when its validation score beats the
        best so far by more than ``tol``; the best epoch's weights are kept."""
        state["validation_scores_"].append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if score < state["best_validation_score_"] + self.tol:
            state["_no_improvement_count"] += 1
        else:
            state["_no_improvement_count"] = 0
        if score > state["best_validation_score_"]:
            state["best_validation_score_"] = score
            np.copyto(state["best_params"], trainer.model.params)

    def _count_loss(self, state: dict) -> None:
        """scikit-learn's rule without: an epoch improves when its loss beats the best by more than ``tol``."""
        loss = state["loss_curve_"][-1]
        if loss > state["best_loss_"] - self.tol:
            state["_no_improvement_count"] += 1
        else:
            state["_no_improvement_count"] = 0
        if loss < state["best_loss_"]:
            state["best_loss_"] = loss

    # ------------------------------------------------------------------ checks

    def _check_engine_support(self) -> None:
        name = type(self).__name__
        if self.solver != "adam":
            raise ValueError(f"solver={self.solver!r} is not supported: fastmlp's engine trains with Adam only "
                             f"(solver='adam'); use sklearn.neural_network.{name} for {self.solver!r}")
        if self.activation != "relu":
            raise ValueError(f"activation={self.activation!r} is not supported: fastmlp's engine has ReLU hidden "
                             f"layers only (activation='relu'); use sklearn.neural_network.{name} for "
                             f"{self.activation!r}")
        for sk_name, rule_name in _ENGINE_NAMES.items():
            value = getattr(self, sk_name)
            try:
                RULES[rule_name].check(value)
            except ConfigError as err:
                raise ValueError(f"{sk_name}={value!r} cannot be used: {err}") from None

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if not hasattr(sizes, "__iter__") else list(sizes)
        if not sizes:
            raise ValueError("hidden_layer_sizes=() (no hidden layer) is not supported: fastmlp's engine trains "
                             "networks with at least one hidden layer")
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers; got {self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _seed(self) -> int:
        """The engine's seed: ``random_state`` itself when it is an int, else one drawn from it."""
        rs = check_random_state(self.random_state)  # also rejects ints outside [0, 2**32 - 1]
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(rs.randint(0, np.iinfo(np.int32).max))

    # ------------------------------------------------------------------ predicting

    def _logits(self, X) -> np.ndarray:
        """The output layer (n_samples, n_outputs) float32 of the validated ``X``; each row's the same
        bits wherever it sits in ``X`` (:mod:`fastmlp.engine.infer`)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        if self._input_scale != 1.0:
            X = X * np.float32(self._input_scale)
        return self.network_.rows_logits(X)

    @property
    def coefs_(self) -> LayerArrays:
        """The weights, ``coefs_[l]`` (n_l, n_{l+1}): views into the parameter buffer (:class:`LayerArrays`)."""
        return self._layer_arrays("coefs_")

    @coefs_.setter
    def coefs_(self, value) -> None:
        self._assign_layers("coefs_", value)

    @property
    def intercepts_(self) -> LayerArrays:
        """The biases, ``intercepts_[l]`` (n_{l+1},): views into the parameter buffer (:class:`LayerArrays`)."""
        return self._layer_arrays("intercepts_")

    @intercepts_.setter
    def intercepts_(self, value) -> None:
        self._assign_layers("intercepts_", value)

    def _layer_arrays(self, name: str) -> LayerArrays:
        if "_params" not in vars(self):  # unfitted: no such attribute, as scikit-learn has it
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        layers = MLP(self._sizes, self._params).layers()
        return LayerArrays([W.T for W, _ in layers] if name == "coefs_" else [b for _, b in layers], name)

    def _assign_layers(self, name: str, value) -> None:
        """Copy a new list of arrays into the buffer, all checked before any is written."""
        if "_params" not in vars(self):
            raise ModelError(f"{name} can be assigned on a fitted estimator only (its arrays are copied into the "
                             f"network's parameters): fit it, or load a model file, first")
        current = self._layer_arrays(name)
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            got = f"{len(value)} arrays" if isinstance(value, (list, tuple)) else type(value).__name__
            raise ModelError(f"{name} must be a list of {len(current)} arrays, one a layer; got {got}")
        current[:] = value

    @property
    def network_(self) -> MLP:
        """The fitted network as the engine holds it (its parameters are ``coefs_`` and ``intercepts_``)."""
        check_is_fitted(self)
        return MLP(self._sizes, self._params)

    # ------------------------------------------------------------------ the model file, ONNX

    def save(self, path) -> None:
        """Write the fitted model to ``path`` in fastmlp's one model format (``model.npz``, as
        ``fastmlp train`` writes it): the parameters, and the estimator's kind, parameters and
        fitted attributes as metadata. :func:`fastmlp.interop.persist.load` reads it back; ``fastmlp evaluate``,
        ``predict`` and ``export`` read it too."""
        check_is_fitted(self)
        attrs = {name: _json_value(getattr(self, name, None)) for name in _SAVED_ATTRIBUTES}
        params = {k: _json_value(v) for k, v in self.get_params().items()}
        params["hidden_layer_sizes"] = list(self._sizes[1:-1])  # an int, a range or a set: the layers it made
        estimator = {"kind": self._out_activation, "class": type(self).__name__, "params": params,
                     "input_scale": self._input_scale, "attributes": attrs, **self._saved_targets()}
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            estimator["feature_names_in"] = [str(n) for n in names]
        try:
            json.dumps(estimator)
        except (TypeError, ValueError) as err:  # labels of a kind JSON has no spelling for
            raise ValueError(f"cannot save this estimator: the model file keeps its metadata as JSON, and {err}; "
                             f"nothing was written") from None
        self.network_.save(path, estimator=estimator, input_scale=self._input_scale)

    def _saved_targets(self) -> dict:
        """What the subclass keeps of its targets in a model file (the classes, the targets' shape)."""
        raise NotImplementedError

    def _restore_targets(self, saved: dict) -> None:
        """Set what :meth:`_saved_targets` kept."""
        raise NotImplementedError

    def to_onnx(self, path=None):
        """The fitted model as ONNX (:func:`fastmlp.interop.onnx.to_onnx`): input ``x`` float32
        (N, n_features) times the input scale (1 for a model fitted here), outputs the logits and,
        for a classifier, the probabilities. Written to ``path`` when given; returns the
        ``onnx.ModelProto``."""
        from .onnx import save_onnx, to_onnx
        meta = {"estimator": type(self).__name__, "input_scale": self._input_scale}
        probabilities = self._out_activation == "softmax"
        if path is not None:
            save_onnx(self.network_, path, meta, probabilities=probabilities)
        return to_onnx(self.network_, meta, probabilities=probabilities)

    # ------------------------------------------------------------------ state

    def _set_fitted_shape(self) -> None:
        """The shape attributes that follow from ``_sizes`` (``coefs_`` and ``intercepts_`` are views
        made when asked for)."""
        MLP(self._sizes, self._params)  # checks that the buffer fits the sizes
        self.n_layers_ = len(self._sizes)
        self.n_outputs_ = self._sizes[-1]
        self.out_activation_ = self._out_activation
        if not hasattr(self, "_input_scale"):
            self._input_scale = 1.0

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("coefs_", None)  # views into _params, made when asked for
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        state = {k: v for k, v in state.items() if k not in ("coefs_", "intercepts_")}  # an older pickle's lists
        super().__setstate__(state)
        if "_params" in state:
            self._set_fitted_shape()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


def _engine_weights(sample_weight, X) -> np.ndarray:
    """``sample_weight`` checked by scikit-learn's rules, as the float32 weights the engine reads.

    A weight below float32's smallest normal number (about 1.2e-38) is 0: the kernels read such
    numbers as 0, and a batch of them would have no total weight to divide by.
    """
    weights = _check_sample_weight(sample_weight, X, dtype=np.float32, ensure_non_negative=True)
    weights = np.where(weights < np.finfo(np.float32).tiny, np.float32(0), weights)
    if not weights.any():
        raise ValueError("sample_weight is 0 for every sample (or below 1.2e-38, float32's smallest normal "
                         "number): no sample is left to fit")
    return np.ascontiguousarray(weights, dtype=np.float32)


def _json_value(value):
    """``value`` as JSON can hold it (NumPy scalars and arrays, tuples, infinities as strings)."""
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)  # a RandomState or the like: kept for the record, not restored


def from_json(value):
    """A value :func:`_json_value` wrote, read back (infinities and NaN from their strings)."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return value
