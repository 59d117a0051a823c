"""fastmlp: multi-layer perceptrons on MNIST-like data, trained fast on the CPU.

Floors, bottom up (a module imports only from floors below its own; pyproject.toml's
import-linter contract, checked by the tests, keeps it so):

1. ``errors``, ``version``; ``layout``, ``config``, ``atomic``, ``threads``, ``document``; ``update_kernels``,
   ``augment``, ``idxfile``; ``kernels``, ``reference``, ``data``, ``runs``
2. ``model``, ``optim``, ``plots``, ``step_kernels`` (the parallel training step)
3. ``train`` (the ``Trainer``); beside it, using it: ``estimator`` (``MLPClassifier``),
   ``imageprep`` (pictures to MNIST's input), ``export`` (ONNX)
4. the search: ``space``, ``study``, ``search``
5. ``report``
6. ``cli`` and ``__main__``: every parser, every exit code

``fastmlp.MLPClassifier``, ``fastmlp.MLPRegressor`` (scikit-learn's estimator API) and
``fastmlp.load`` (a model file as a fitted estimator) are loaded on first use, so ``import
fastmlp`` imports neither scikit-learn nor the engine.
"""

from .version import __version__

__all__ = ["MLPClassifier", "MLPRegressor", "load", "__version__"]

_LAZY = {"MLPClassifier": "classifier", "MLPRegressor": "regressor", "load": "persist"}


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
