"""The one error hierarchy of hermes-spark.

The CLI maps :class:`HermesError` subclasses that describe bad input or config to exit
code 2 with a one-paragraph message; anything else is an unexpected failure (exit 1).
"""

from __future__ import annotations

import re


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


#: Failures Spark reports (as JVM exceptions) that mean the user's storage or paths are
#: not usable: ``(pattern in the message, what to tell the user)``.
_STORAGE_FAILURES = (
    (
        re.compile(r"No FileSystem for scheme \"?(\w+)\"?|UnsupportedFileSystemException"),
        "Spark has no filesystem for this path's scheme: add the connector's jars "
        "(e.g. hadoop-aws for s3a://, hadoop-azure for abfss://) and its fs.* settings",
    ),
    (
        re.compile(r"NoSuchBucket|bucket does not exist|The specified bucket", re.IGNORECASE),
        "the bucket does not exist (or is not visible with these credentials)",
    ),
    (
        re.compile(
            r"AccessDenied|403 Forbidden|NoAuthWithAWSException|No AWS Credentials|"
            r"InvalidAccessKeyId|SignatureDoesNotMatch|AuthorizationPermissionMismatch",
        ),
        "the storage refused the credentials: set them for Spark (spark.hadoop.fs.* "
        "settings or the provider's environment variables) and for this driver",
    ),
)


def storage_error(exc: BaseException) -> UserError | None:
    """A :class:`InvalidInputError` for a Spark failure that means "your storage is not
    set up" (unknown scheme, missing bucket, refused credentials), else ``None``.

    Driver side: the CLI turns it into exit 2 with one paragraph instead of a JVM trace.
    """
    text = str(exc)
    for pattern, advice in _STORAGE_FAILURES:
        match = pattern.search(text)
        if match:
            where = re.search(
                r"(?:s3a?|abfss?|gs|hdfs|wasbs?|[a-z][a-z0-9+.-]*)://[^\s'\"`,;)]+", text
            )
            path = f" ({where.group(0)})" if where else ""
            return InvalidInputError(f"cannot use the storage{path}: {advice}")
    return None
