"""The one error hierarchy of hermes-spark.

The CLI maps :class:`HermesError` subclasses that describe bad input or config to exit
code 2 with a one-paragraph message; anything else is an unexpected failure (exit 1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

#: ``{section.key}`` (a config key) or ``{argument}`` (a library argument without one) in
#: a message: a setting, named as the caller gave it.
_SETTING = re.compile(r"\{([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)?)\}")


class HermesError(Exception):
    """Base class of every error hermes-spark raises on purpose.

    Errors name settings the way the caller gave them. ``key`` (a config key such as
    ``sample.budget_tokens``) or ``param`` (a library argument) is the setting the error
    is about; ``{sample.max_epochs}`` or ``{allow_shortfall}`` in the message is another
    one it mentions. ``str()``
    names them as library arguments (``budget_tokens``) with the config key; the CLI names
    its flags instead (:meth:`naming`), so a notebook user is never told about
    ``--budget-tokens``.
    """

    exit_code: int = 1

    def __init__(self, message: str = "", *, key: str | None = None, param: str | None = None):
        self.template = message
        self.key = key
        self.param = param if param is not None else (key.rsplit(".", 1)[-1] if key else None)
        super().__init__(self.naming())

    def naming(self, flag_of: Callable[[str], str | None] | None = None) -> str:
        """The message with every setting named by ``flag_of`` (setting → CLI flag), else
        (no flag) as the library argument, the setting of the error first."""

        def name(setting: str) -> str:
            flag = flag_of(setting) if flag_of else None
            return flag or setting.rsplit(".", 1)[-1]

        text = _SETTING.sub(lambda m: name(m.group(1)), self.template)
        subject = self.key or self.param
        if subject is None:
            return text
        flag = flag_of(subject) if flag_of else None
        where = f" (config {self.key})" if self.key else ""
        return f"{flag or self.param}{where}: {text}"


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


class InvariantError(HermesError):
    """Raised when a check of hermes' own invariants fails: a bug, or the data changed under
    a running job (exit code 1, like any unexpected failure, but named)."""


#: Failures Spark reports (as JVM exceptions) that mean the user's storage or paths are
#: not usable: ``(pattern in the message, what to tell the user)``.
_STORAGE_FAILURES = (
    (
        re.compile(
            r"No FileSystem for scheme \"?(\w+)\"?|UnsupportedFileSystemException|"
            r"ClassNotFoundException: Class org\.apache\.hadoop\.fs\.\S+ not found"
        ),
        "Spark has no filesystem for this path's scheme: add the connector's jars "
        "(e.g. hadoop-aws for s3a://, hadoop-azure for abfss://, gcs-connector for gs://) "
        "and its fs.* settings",
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
        "the storage refused the credentials or found none: set them for Spark "
        "(spark.hadoop.fs.* settings or the provider's environment variables) and for "
        "this driver",
    ),
)

#: Hadoop connector classes (as named in a ClassNotFoundException) → the scheme they serve.
_CONNECTOR_SCHEMES = (
    ("fs.azurebfs.", "abfss"),
    ("fs.azure.", "wasbs"),
    ("fs.gs.", "gs"),
    ("fs.s3a.", "s3a"),
)
_URI = re.compile(r"(?:[a-z][a-z0-9+.-]*)://[^\s'\"`,;)]+")


def _named_paths(text: str, candidates: Sequence[str]) -> list[str]:
    """The paths a storage failure is about: from its message, else the command's own
    remote paths (of the failing scheme when the message names a connector class)."""
    found = _URI.search(text)
    if found:
        return [found.group(0)]
    scheme = re.search(r"No FileSystem for scheme \"?(\w+)", text)
    wanted = scheme.group(1) if scheme else None
    for marker, name in _CONNECTOR_SCHEMES:
        if wanted is None and f"org.apache.hadoop.{marker}" in text:
            wanted = name
    remote = [c for c in candidates if _URI.fullmatch(c) and not c.startswith("file:")]
    if wanted:
        remote = [c for c in remote if c.split("://", 1)[0].rstrip("s") == wanted.rstrip("s")]
    return remote


def storage_error(exc: BaseException, candidates: Sequence[str] = ()) -> UserError | None:
    """A :class:`InvalidInputError` for a Spark failure that means "your storage is not
    set up" (unknown scheme, missing connector, missing bucket, refused or missing
    credentials), else ``None``.

    ``candidates`` are the command's arguments: a JVM message that names no path (a
    missing connector class) is reported with the command's paths of that scheme.
    Driver side: the CLI turns it into exit 2 with one paragraph instead of a JVM trace.
    """
    text = str(exc)
    for pattern, advice in _STORAGE_FAILURES:
        if pattern.search(text):
            paths = _named_paths(text, candidates)
            where = f" ({', '.join(paths)})" if paths else ""
            return InvalidInputError(f"cannot use the storage{where}: {advice}")
    return None


_TYPE_MISMATCH = re.compile(
    r"PARQUET_COLUMN_DATA_TYPE_MISMATCH\].*?reading file (\S+?)\.? Data type mismatches when "
    r"reading Parquet column (\S+?)\. Expected Spark type (\S+?), actual Parquet type (\S+?)\.",
    re.DOTALL,
)
_UNREADABLE = re.compile(
    r"\[(?:FAILED_READ_FILE\.\w+|CANNOT_READ_FILE_FOOTER)\][^\n]*?(?:file:?|footer for file:)"
    r" ?(\S+?)\.?(?:\s|$)",
)


def read_error(exc: BaseException) -> UserError | None:
    """A :class:`InvalidInputError` naming the file (and column) for a Spark failure
    that means "one of your input files cannot be read as the others" (a corrupt or
    truncated file, a column whose type differs between files), else ``None``."""
    text = str(exc)
    mismatch = _TYPE_MISMATCH.search(text)
    if mismatch:
        path, column, expected, actual = mismatch.groups()
        return InvalidInputError(
            f"input file {path}: column {column.strip('[]`')} is {actual.strip(chr(34))} "
            f"there but {expected.strip(chr(34))} in the other files; every file must give "
            "a column the same type (rewrite that file, or leave it out of {corpus.input})"
        )
    unreadable = _UNREADABLE.search(text)
    if unreadable:
        return InvalidInputError(
            f"input file {unreadable.group(1)} cannot be read (corrupt or truncated?): "
            "repair or remove it, or leave it out of {corpus.input}; nothing was committed for "
            "the files read with it"
        )
    return None
