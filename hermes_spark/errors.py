"""The one error hierarchy of hermes-spark.

The CLI maps :class:`HermesError` subclasses that describe bad input or config to exit
code 2 with a one-paragraph message; anything else is an unexpected failure (exit 1).
"""

from __future__ import annotations


class HermesError(Exception):
    """Base class of every error hermes-spark raises on purpose."""

    exit_code: int = 1


class UserError(HermesError):
    """Raised when the user's input or configuration cannot be used (exit code 2)."""

    exit_code = 2


class InvalidConfigError(UserError):
    """Raised when a config file or flag is unknown, missing or out of range."""


class InvalidInputError(UserError):
    """Raised when a corpus, table or weights file lacks columns or has wrong types."""


class ArtifactError(UserError):
    """Raised when a codebook artifact is missing, corrupt or incompatible."""


class VersionMismatchError(UserError):
    """Raised when tables of different codebook versions would be mixed."""


class BudgetError(UserError):
    """Raised when a sampling budget or weight vector cannot be satisfied or is invalid."""


class ConflictError(HermesError):
    """Raised when a concurrent writer committed conflicting data to the same table."""

    exit_code = 1
