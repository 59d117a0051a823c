"""fastmlp: multi-layer perceptrons on MNIST-like data, trained fast on the CPU.

Packages, bottom up (a module imports only from floors below its own; pyproject.toml's
import-linter contracts, checked by the tests, keep it so):

1. ``errors``, ``version``; ``config`` (the one table of hyperparameter rules), ``atomic``, ``extras``
2. ``engine`` (the Numba kernels), ``reference`` (the homework in plain NumPy), ``figures``
3. ``data``: datasets, IDX files, pictures of digits
4. ``training``: the model, Adam, the ``Trainer`` and a run's files
5. ``interop`` (scikit-learn estimators, model files, ONNX) beside ``search`` (Optuna)
6. ``report``: the search report
7. ``cli_train``, ``cli`` and ``__main__``: every parser, every exit code

``fastmlp.MLPClassifier``, ``fastmlp.MLPRegressor`` (scikit-learn's estimator API) and
``fastmlp.load`` (a model file as a fitted estimator) are loaded on first use, so ``import
fastmlp`` imports neither scikit-learn nor the engine.
"""

from .version import __version__

__all__ = ["MLPClassifier", "MLPRegressor", "load", "__version__"]

_LAZY = {"MLPClassifier": "interop.classifier", "MLPRegressor": "interop.regressor", "load": "interop.persist"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        try:
            module = importlib.import_module(f".{_LAZY[name]}", __name__)
        except ModuleNotFoundError as err:
            if err.name is None or not err.name.startswith("sklearn"):
                raise
            raise ImportError(f"fastmlp.{name} needs scikit-learn: pip install 'fastmlp[sklearn]'") from err
        return getattr(module, name)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")
