"""The optional extras: a package a command needs that ``pip install fastmlp`` alone does not bring.

``pip install fastmlp`` trains, evaluates, predicts on arrays and writes the curves. The search
(``fastmlp search``, ``report``) needs ``fastmlp[search]`` (Optuna, SQLAlchemy); reading image
files (``fastmlp predict``) needs ``fastmlp[images]`` (Pillow); the dashboard, the ONNX export
and the scikit-learn estimators their own. :func:`require` imports such a package, or says in
one :class:`~fastmlp.errors.UsageError` line which extra to install.
"""

from __future__ import annotations

import importlib

from .errors import UsageError

#: The name a package is installed by, where it differs from the module's.
PACKAGES = {"PIL": "Pillow", "optuna_dashboard": "optuna-dashboard", "sklearn": "scikit-learn"}


def require(module: str, extra: str, needed_by: str):
    """The module ``module``, imported; or ``{needed_by} needs {package}: pip install 'fastmlp[{extra}]'``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = PACKAGES.get(module, module)
        raise UsageError(f"{needed_by} needs {package}: pip install 'fastmlp[{extra}]'") from None
