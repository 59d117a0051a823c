"""``python -m fastmlp``: the same command as ``fastmlp`` (see :mod:`fastmlp.cli`)."""

import sys

from .cli import main

sys.exit(main())
