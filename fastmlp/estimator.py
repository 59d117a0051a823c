"""scikit-learn's ``MLPClassifier`` on fastmlp's engine: the same parameters, attributes and methods.

``fastmlp.MLPClassifier`` is a drop-in for ``sklearn.neural_network.MLPClassifier`` with
``solver="adam"`` and ``activation="relu"`` (the engine's only optimizer and hidden activation).
Training runs in :class:`fastmlp.train.Trainer`'s fused Numba kernels, so a step allocates
nothing and ``fit`` spends its time in the GEMMs. It needs scikit-learn (``pip install
'fastmlp[sklearn]'``); ``import fastmlp`` alone does not import it.

The network, for ``X`` (n, d) and ``K`` classes (``K = 2`` for a binary problem: a softmax over
two outputs, where scikit-learn uses one logistic output; the probabilities are the same
kind)::

    h_0 = X,   h_l = max(h_{l-1} @ coefs_[l-1] + intercepts_[l-1], 0)     (hidden layers)
    p   = softmax(h_{L-1} @ coefs_[L-1] + intercepts_[L-1])              (n, K)

``coefs_[l]`` is (n_l, n_{l+1}) as in scikit-learn: the transpose of the engine's ``W``
(n_{l+1}, n_l). Both ``coefs_`` and ``intercepts_`` are views into the one float32 parameter
buffer the engine trains and predicts with.

Each mini-batch of m rows minimises scikit-learn's loss::

    loss = -(1/m) sum_i ln p[i, y_i]  +  alpha / (2 m) * sum_l ||coefs_[l]||^2

whose weight gradient gains ``alpha / m * W`` (biases carry no penalty), then one Adam step
(Kingma & Ba, bias-corrected) with ``learning_rate_init * lr_decay ** (epoch - 1)``.
``loss_curve_`` holds each epoch's batch losses averaged over its rows, penalty included, as
scikit-learn's does; ``tol``, ``n_iter_no_change``, ``early_stopping`` and the
``ConvergenceWarning`` follow scikit-learn's rules exactly.

Data: ``X`` is converted once to a C-ordered float32 matrix (no copy when it already is one:
keep a float32 copy yourself to fit repeatedly without the conversion); the engine reads its
rows by index, so shuffling and the early-stopping split copy nothing. Labels may be any
sortable values (strings, non-contiguous integers): ``classes_`` holds them sorted, and the
engine sees their positions in it.
"""

from __future__ import annotations

import numbers
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .config import RULES, TrainConfig
from .errors import ConfigError
from .model import MLP, log_softmax
from .train import EvalSet, Trainer, TrainingDiverged

#: scikit-learn's name of each value the engine checks against :data:`fastmlp.config.RULES`.
_ENGINE_NAMES = {"learning_rate_init": "lr", "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps",
                 "alpha": "alpha", "lr_decay": "lr_decay"}

def glorot_init(model: MLP, rng: np.random.Generator) -> None:
    """scikit-learn's initialisation for ReLU networks (Glorot & Bengio 2010, uniform), in place:
    every weight and bias of a layer with fan-in a and fan-out b drawn from U(-c, c),
    ``c = sqrt(6 / (a + b))``, layer by layer, weights (as scikit-learn's (a, b) ``coefs_``) first."""
    for W, b in model.layers():
        fan_out, fan_in = W.shape
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        W[...] = rng.uniform(-bound, bound, (fan_in, fan_out)).T
        b[...] = rng.uniform(-bound, bound, fan_out)


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained with Adam on fastmlp's Numba engine.

    Parameters have scikit-learn's names, defaults and meanings.

    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer (at least one).
    activation : {'relu'}, default='relu'
        Hidden activation. The engine has ReLU only; scikit-learn's other values raise ValueError.
    solver : {'adam'}, default='adam'
        The engine trains with Adam only; 'sgd' and 'lbfgs' raise ValueError.
    alpha : float >= 0, default=1e-4
        L2 penalty: ``alpha / (2 m) * sum ||W||^2`` per batch of m rows (weights, not biases).
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
        the same fitted model, bit for bit, every time (for a given BLAS thread count).
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

    Attributes (after ``fit``): ``classes_``, ``n_features_in_``, ``feature_names_in_`` (for
    DataFrames with string column names), ``coefs_``, ``intercepts_``, ``n_layers_``,
    ``n_outputs_`` (output units: the number of classes), ``out_activation_`` ('softmax'),
    ``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
    ``best_validation_score_``, ``n_iter_`` (epochs of the last fit), ``t_`` (training rows
    seen by the optimizer).
    """

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

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y):
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,); returns self.

        Up to ``max_iter`` epochs; stops earlier when the training loss (or, with
        ``early_stopping``, the validation accuracy) has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and warns ``ConvergenceWarning`` when ``max_iter`` ends
        the run instead. ``warm_start=True`` continues from the current weights.
        """
        return self._fit(X, y, incremental=False)

    def _partial_fit_available(self) -> bool:
        if self.early_stopping:
            raise AttributeError("partial_fit does not support early_stopping=True")
        return True

    @available_if(_partial_fit_available)
    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X``, ``y``, continuing the weights and the Adam state; returns self.

        ``classes`` (every label that will ever be seen) is required on the first call, as in
        scikit-learn. With ``early_stopping=True`` there is no ``partial_fit`` (scikit-learn
        refuses the call; here ``hasattr(clf, "partial_fit")`` says so up front).
        """
        return self._fit(X, y, incremental=True, classes=classes)

    def _fit(self, X, y, *, incremental: bool, classes=None):
        self._validate_params()
        self._check_engine_support()
        hidden = self._hidden_sizes()
        fitted = hasattr(self, "_params")
        first_pass = not fitted or (not self.warm_start and not incremental)
        if incremental and not fitted and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")

        X, y = validate_data(self, X, y, dtype=np.float32, order="C", reset=first_pass)
        check_classification_targets(y)
        classes_ = self._target_classes(y, first_pass, incremental, classes)
        y_codes = np.searchsorted(classes_, y).astype(np.int64)
        sizes = [X.shape[1], *hidden, len(classes_)]
        if not first_pass and sizes != self._sizes:
            raise ValueError(f"hidden_layer_sizes {hidden} do not match the fitted network {self._sizes[1:-1]}: "
                             f"warm_start and partial_fit continue the same network")

        seed = self._seed()
        rows = np.arange(len(y_codes), dtype=np.int64)
        eval_sets = {}
        if self.early_stopping:
            rows, val_rows = self._validation_split(rows, y_codes, seed)
            eval_sets["val"] = EvalSet(X, y_codes, val_rows)
        n_train = len(rows)
        if self.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if self.batch_size > n_train:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_train))
        config = TrainConfig(hidden_sizes=tuple(hidden), batch_size=batch_size, lr=self.learning_rate_init,
                             beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon, epochs=self.max_iter,
                             lr_decay=self.lr_decay, seed=seed, val_size=0, alpha=self.alpha)
        trainer = Trainer(config, X, y_codes, num_classes=len(classes_), fit_rows=rows, eval_sets=eval_sets)

        state = self._start_state(trainer, first_pass, incremental)
        try:
            self._epochs(trainer, state, incremental)
        except TrainingDiverged as err:
            err.args = (f"loss became {err.loss} at epoch {err.epoch}, step {err.step}: training diverged "
                        f"(try a smaller learning_rate_init, or scale the features, e.g. with StandardScaler); "
                        f"the estimator is left as it was before this call",)
            raise
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        # Commit: everything above worked on the trainer and ``state``; the estimator changes here.
        if self.early_stopping:
            np.copyto(trainer.model.params, state.pop("best_params"))
        else:
            state.pop("best_params", None)
        self.classes_ = classes_
        self._sizes = sizes
        self._params = trainer.model.params
        self._adam_m, self._adam_v, self._adam_t = trainer.adam.m, trainer.adam.v, trainer.adam.t
        for name, value in state.items():
            setattr(self, name, value)
        self.n_layers_ = len(sizes)
        self.n_outputs_ = len(classes_)
        self.out_activation_ = "softmax"
        self._set_views()
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
                     "_no_improvement_count": self._no_improvement_count, "_adam_epochs": 0,
                     "best_loss_": self.best_loss_, "validation_scores_": self.validation_scores_,
                     "best_validation_score_": self.best_validation_score_}
            if self.early_stopping:
                if state["validation_scores_"] is None:  # earlier fits ran without early stopping
                    state.update(validation_scores_=[], best_validation_score_=-np.inf, best_loss_=None)
                else:
                    state["validation_scores_"] = list(state["validation_scores_"])
            elif state["best_loss_"] is None:
                state.update(best_loss_=np.inf, validation_scores_=None, best_validation_score_=None)
            if incremental:
                np.copyto(trainer.adam.m, self._adam_m)
                np.copyto(trainer.adam.v, self._adam_v)
                trainer.adam.t = self._adam_t
                state["_adam_epochs"] = self._adam_epochs
        if self.early_stopping:
            state["best_params"] = trainer.model.params.copy()
        return state

    def _epochs(self, trainer: Trainer, state: dict, incremental: bool) -> None:
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
                print("Iteration %d, loss = %.8f" % (state["n_iter_"], state["loss_"]))
            self._update_no_improvement_count(trainer, state)
            if state["_no_improvement_count"] > self.n_iter_no_change:
                if self.verbose:
                    what = "Validation score" if self.early_stopping else "Training loss"
                    print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                          f"consecutive epochs. Stopping.")
                break
            if incremental:
                break
            if state["n_iter_"] == self.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                              "hasn't converged yet." % self.max_iter, ConvergenceWarning)

    def _update_no_improvement_count(self, trainer: Trainer, state: dict) -> None:
        """scikit-learn's rule: an epoch improves when it beats the best so far by more than ``tol``."""
        if self.early_stopping:
            score = trainer.evaluate("val")[1]
            state["validation_scores_"].append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < state["best_validation_score_"] + self.tol:
                state["_no_improvement_count"] += 1
            else:
                state["_no_improvement_count"] = 0
            if score > state["best_validation_score_"]:
                state["best_validation_score_"] = score
                np.copyto(state["best_params"], trainer.model.params)
        else:
            loss = state["loss_curve_"][-1]
            if loss > state["best_loss_"] - self.tol:
                state["_no_improvement_count"] += 1
            else:
                state["_no_improvement_count"] = 0
            if loss < state["best_loss_"]:
                state["best_loss_"] = loss

    # ------------------------------------------------------------------ checks

    def _check_engine_support(self) -> None:
        if self.solver != "adam":
            raise ValueError(f"solver={self.solver!r} is not supported: fastmlp's engine trains with Adam only "
                             f"(solver='adam'); use sklearn.neural_network.MLPClassifier for {self.solver!r}")
        if self.activation != "relu":
            raise ValueError(f"activation={self.activation!r} is not supported: fastmlp's engine has ReLU hidden "
                             f"layers only (activation='relu'); use sklearn.neural_network.MLPClassifier for "
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

    def _target_classes(self, y: np.ndarray, first_pass: bool, incremental: bool, classes) -> np.ndarray:
        """``classes_`` for this call; raises when ``y`` brings labels the network has no output for."""
        if incremental:
            if first_pass:
                return unique_labels(classes)
            if classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(f"`classes={np.asarray(classes)!r}` is not the same as on last call to partial_fit, "
                                 f"was: {self.classes_!r}")
            unseen = np.setdiff1d(y, self.classes_)
            if unseen.size:
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {unique_labels(y)}.")
            return self.classes_
        labels = unique_labels(y)
        if not first_pass and not np.array_equal(labels, self.classes_):
            raise ValueError(f"warm_start can only be used where `y` has the same classes as in the previous call "
                             f"to fit. Previously got {self.classes_}, `y` has {labels}")
        return labels

    def _seed(self) -> int:
        """The engine's seed: ``random_state`` itself when it is an int, else one drawn from it."""
        rs = check_random_state(self.random_state)  # also rejects ints outside [0, 2**32 - 1]
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(rs.randint(0, np.iinfo(np.int32).max))

    def _validation_split(self, rows: np.ndarray, y_codes: np.ndarray, seed: int):
        """Stratified ``validation_fraction`` of the rows, as scikit-learn's early stopping holds out."""
        train_rows, val_rows = train_test_split(rows, random_state=seed, test_size=self.validation_fraction,
                                                stratify=y_codes)
        if len(val_rows) < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your "
                             "dataset.")
        return np.sort(train_rows), np.sort(val_rows)

    # ------------------------------------------------------------------ predicting

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

    def _logits(self, X) -> np.ndarray:
        """The output layer's logits (n_samples, n_classes) float32 of the validated ``X``; each row's
        the same bits wherever it sits in ``X`` (:mod:`fastmlp.engine.infer`)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return MLP(self._sizes, self._params).rows_logits(X)

    # ------------------------------------------------------------------ state

    def _set_views(self) -> None:
        layers = MLP(self._sizes, self._params).layers()
        self.coefs_ = [W.T for W, _ in layers]
        self.intercepts_ = [b for _, b in layers]

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("coefs_", None)  # views into _params: rebuilt on load, so they stay views
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_params" in state:
            self._set_views()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags
