"""What a user can get wrong: the one family of exceptions the command line reports as one line.

Every error a person can fix by changing what they typed or gave (a hyperparameter, a data
file, a model file, a storage URL, a command's arguments) is a :class:`UserError`. Its message
is one line naming the problem. ``fastmlp.cli`` alone turns it into ``fastmlp: error: ...`` and
exit status 2; library callers catch it like any exception. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input. The message is one line."""

    kind = "usage"


class ConfigError(UserError, ValueError):
    """An invalid hyperparameter or setting."""

    kind = "config"


class DataError(UserError):
    """A dataset is missing, corrupt, or not what it claims to be."""

    kind = "data"


class ModelError(UserError, ValueError):
    """A model file or shape that cannot be used."""

    kind = "model"


class StorageError(UserError):
    """A search storage that cannot be opened or does not hold what was asked for."""

    kind = "storage"


class UsageError(UserError):
    """Arguments that do not fit together, or a file the command cannot write."""

    kind = "usage"
