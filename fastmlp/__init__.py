"""fastmlp: multi-layer perceptrons on MNIST-like data, trained fast on the CPU.

Floors, bottom up (a module imports only from floors below its own; pyproject.toml's
import-linter contract, checked by the tests, keeps it so):

1. ``errors``; ``config``, ``atomic``, ``threads``; ``kernels``, ``reference``, ``data``
2. ``model``, ``optim``, ``plots``
3. ``train`` (the ``Trainer``)
4. the search: ``space``, ``study``, ``search``
5. ``report``
6. ``cli`` and ``__main__``: every parser, every exit code
"""

__version__ = "0.1.0"
