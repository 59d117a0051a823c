"""fastmlp's version, in one place: the package, ``fastmlp --version``, exported models and the build read it."""

__version__ = "0.1.0"
