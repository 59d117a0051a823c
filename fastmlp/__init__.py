"""fastmlp: multi-layer perceptrons on MNIST-like data, trained fast on the CPU.

Floors, bottom up: ``data`` and ``reference`` and ``kernels``; ``model`` and ``optim``;
``train`` and ``estimator``; ``search``; ``report``; ``cli``. Lower floors never import higher ones.

``fastmlp.MLPClassifier`` (scikit-learn's estimator API, :mod:`fastmlp.estimator`) is loaded on
first use, so ``import fastmlp`` imports neither scikit-learn nor the engine.
"""

__version__ = "0.1.0"

__all__ = ["MLPClassifier", "__version__"]


def __getattr__(name):
    if name == "MLPClassifier":
        try:
            from .estimator import MLPClassifier
        except ModuleNotFoundError as err:
            if err.name is None or not err.name.startswith("sklearn"):
                raise
            raise ImportError("fastmlp.MLPClassifier needs scikit-learn: pip install 'fastmlp[sklearn]'") from err
        return MLPClassifier
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")
