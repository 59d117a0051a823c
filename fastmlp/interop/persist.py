"""A model file as a fitted estimator: :func:`load`, fastmlp's one model format read back.

``model.npz`` (:meth:`fastmlp.training.model.MLP.save`) is written by ``fastmlp train`` and by an
estimator's ``save``; :func:`load` turns either into a fitted scikit-learn estimator, and
``fastmlp evaluate``, ``predict`` and ``export`` read either.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..training.model import MLP, PIXEL_SCALE
from .classifier import MLPClassifier
from .estimator import MLPBase, from_json
from .regressor import MLPRegressor


def load(path) -> MLPBase:
    """The fitted estimator in a model file: one that :meth:`MLPBase.save` wrote (an
    :class:`~fastmlp.interop.classifier.MLPClassifier` or :class:`~fastmlp.interop.regressor.MLPRegressor`, as it
    was), or one that ``fastmlp train`` wrote (an ``MLPClassifier`` over classes 0..K-1 that takes
    the images' pixels, 0 to 255, as its features). Predictions are those of the engine, bit for bit.
    The file keeps the weights, the parameters (an int ``random_state`` too) and what fitting
    recorded, not Adam's moments: ``partial_fit`` on a loaded estimator starts a fresh Adam (and
    ``lr_decay``'s count), where a pickled one goes on exactly."""
    model, meta = MLP.load(path)
    saved = meta.get("estimator")
    if saved is None:  # a run of fastmlp train: trained on pixels / 255
        est = MLPClassifier(hidden_layer_sizes=tuple(model.sizes[1:-1]))
        est.classes_ = np.arange(model.sizes[-1])
        est._input_scale = float(meta.get("input_scale", PIXEL_SCALE))
        est.loss_curve_, est.n_iter_ = [], int(meta.get("epoch", 0))
        est.t_, est.loss_, est.best_loss_ = 0, None, None
        est.validation_scores_ = est.best_validation_score_ = None
    else:
        cls = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}.get(saved.get("class"))
        if cls is None:
            raise ModelError(f"{path}: an estimator of unknown kind {saved.get('class')!r}")
        params = {k: (tuple(v) if k == "hidden_layer_sizes" and isinstance(v, list) else from_json(v))
                  for k, v in saved.get("params", {}).items() if k in cls().get_params()}
        if not isinstance(params.get("random_state"), int) or isinstance(params.get("random_state"), bool):
            params.pop("random_state", None)  # a RandomState was saved as its repr: not restored
        est = cls(**params)
        est._input_scale = float(saved.get("input_scale", 1.0))
        est._restore_targets(saved)
        for name, value in saved.get("attributes", {}).items():
            setattr(est, name, from_json(value))
        if "feature_names_in" in saved:
            est.feature_names_in_ = np.array(saved["feature_names_in"], dtype=object)
    est.n_features_in_ = model.sizes[0]
    est._sizes, est._params = model.sizes, model.params
    est._set_fitted_shape()
    return est
