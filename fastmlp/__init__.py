"""fastmlp: multi-layer perceptrons on MNIST-like data, trained fast on the CPU.

Floors, bottom up: ``data`` and ``reference`` and ``kernels``; ``model`` and ``optim``;
``train``; ``search``; ``report``; ``cli``. Lower floors never import higher ones.
"""

__version__ = "0.1.0"
