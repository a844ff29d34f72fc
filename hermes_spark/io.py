"""Every user path: URIs, listings and small files (artifacts, reports, plans, weights).

Driver side. One module understands local paths, ``file:``, ``/Volumes/...``, ``dbfs:/``,
``s3a://``/``s3://``, ``abfss://``, ``gs://`` and ``hdfs://``; nothing else in the
project touches a user path with ``pathlib`` or ``open``.

Why pyarrow.fs: it is already a hard dependency (Spark's Arrow path, Parquet footers,
the embedded Delta writer), it speaks every scheme above natively, and it works the same
with or without a JVM, so the same code runs under Spark Connect (no ``_jvm`` Hadoop
FileSystem) and in unit tests. Spark's own ``fs.s3a.*`` settings are read into a
:class:`Storage` value (:func:`storage_from_conf`) that callers pass to every function
here, so one set of credentials serves both; no setting lives in this module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow.fs as pafs

from hermes_spark.errors import InvalidInputError

log = logging.getLogger(__name__)

#: Schemes pyarrow opens itself, and the Spark/Hadoop spelling of each.
_SPARK_SCHEME = {"s3": "s3a", "s3a": "s3a", "s3n": "s3a", "gs": "gs", "hdfs": "hdfs"}
_AZURE = ("abfs", "abfss")


@dataclass(frozen=True)
class FileEntry:
    """One listed file: its URI (as the user's scheme spells it), size and mtime (ns)."""

    uri: str
    size: int
    mtime_ns: int


def scheme(uri: str) -> str:
    """The URI scheme in lower case (``""`` for a plain local path)."""
    if len(uri) > 1 and uri[1] == ":" and uri[0].isalpha():  # a Windows drive, not a scheme
        return ""
    parsed = urlparse(uri)
    return parsed.scheme.lower() if parsed.scheme and "/" not in parsed.scheme else ""


def is_local(uri: str) -> bool:
    """True for plain paths, ``file:`` URIs, ``/Volumes`` and ``dbfs:/`` (a FUSE mount)."""
    return scheme(uri) in ("", "file", "dbfs")


def local_path(uri: str) -> str:
    """The local filesystem path of a local URI (``dbfs:/x`` is ``/dbfs/x`` on Databricks)."""
    s = scheme(uri)
    if s == "file":
        path = urlparse(uri).path or uri.removeprefix("file:")
    elif s == "dbfs":
        path = "/dbfs/" + uri.split(":", 1)[1].lstrip("/")
    elif s == "":
        path = uri
    else:
        raise InvalidInputError(f"{uri} is not a local path")
    return os.path.abspath(os.path.expanduser(path))


@dataclass(frozen=True)
class Storage:
    """How to reach the object stores: the S3 settings of one Spark session, as a value.

    Frozen and picklable, so executor closures can carry it. ``Storage()`` (or ``None``
    wherever a function takes one) means pyarrow's own defaults: environment variables,
    the instance profile, i.e. what a driver with no ``fs.s3a.*`` settings has. Build it
    from Spark settings with :func:`storage_from_conf`.
    """

    s3_endpoint: str | None = None  # host[:port], no scheme
    s3_scheme: str | None = None  # "http" or "https" (with an endpoint)
    s3_access_key: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)
    s3_session_token: str | None = field(default=None, repr=False)
    s3_region: str | None = None
    s3_path_style: bool = False

    def s3_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`pyarrow.fs.S3FileSystem` these settings give."""
        options: dict[str, Any] = {
            name: value
            for name, value in (
                ("access_key", self.s3_access_key),
                ("secret_key", self.s3_secret_key),
                ("session_token", self.s3_session_token),
                ("region", self.s3_region),
                ("endpoint_override", self.s3_endpoint),
                ("scheme", self.s3_scheme),
            )
            if value
        }
        if self.s3_path_style:
            options["force_virtual_addressing"] = False
        return options


def storage_from_conf(conf: Mapping[str, str]) -> Storage:
    """The :class:`Storage` of Spark's ``spark.hadoop.fs.s3a.*`` settings.

    ``conf`` is any mapping of Spark settings (e.g. read with ``spark.conf.get``); missing
    keys leave pyarrow's own defaults (environment variables, instance profile).
    """
    keys = {
        "s3_endpoint": "spark.hadoop.fs.s3a.endpoint",
        "s3_access_key": "spark.hadoop.fs.s3a.access.key",
        "s3_secret_key": "spark.hadoop.fs.s3a.secret.key",
        "s3_session_token": "spark.hadoop.fs.s3a.session.token",
        "s3_region": "spark.hadoop.fs.s3a.endpoint.region",
    }
    options: dict[str, Any] = {}
    for option, key in keys.items():
        value = conf.get(key)
        if value:
            options[option] = value
    endpoint = options.pop("s3_endpoint", None)
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        options["s3_endpoint"] = parsed.netloc
        options["s3_scheme"] = parsed.scheme or "http"
        ssl = conf.get("spark.hadoop.fs.s3a.connection.ssl.enabled")
        if ssl is not None and ssl.lower() == "false":
            options["s3_scheme"] = "http"
    if conf.get("spark.hadoop.fs.s3a.path.style.access", "").lower() == "true":
        options["s3_path_style"] = True
    return Storage(**options)


def filesystem(uri: str, storage: Storage | None = None) -> tuple[pafs.FileSystem, str]:
    """``(pyarrow filesystem, path inside it)`` for any supported URI, reached with
    ``storage`` (``None``: pyarrow's own defaults)."""
    s = scheme(uri)
    if is_local(uri):
        return pafs.LocalFileSystem(), local_path(uri)
    parsed = urlparse(uri)
    try:
        if s in ("s3", "s3a", "s3n"):
            options = (storage or Storage()).s3_options()
            if "region" not in options and not os.environ.get("AWS_REGION"):
                options["region"] = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
            fs: pafs.FileSystem = pafs.S3FileSystem(**options)
            return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")
        if s in ("gs", "gcs", "hdfs", "viewfs", *_AZURE):
            fs, path = pafs.FileSystem.from_uri(uri.replace("gcs://", "gs://", 1))
            return fs, path.rstrip("/")
    except (OSError, ValueError, TypeError, ImportError) as exc:
        raise InvalidInputError(
            f"cannot open {uri}: {exc}. Configure the {s}:// filesystem (credentials, "
            "endpoint) for both Spark (spark.hadoop.fs.* settings) and this driver "
            "(the same settings, or the provider's standard environment variables)"
        ) from None
    raise InvalidInputError(
        f"{uri}: no filesystem is configured for the scheme {s}:// (supported: local paths, "
        "file:, /Volumes, dbfs:/, s3a://, s3://, abfss://, gs://, hdfs://)"
    )


def spark_path(uri: str) -> str:
    """The spelling Spark's readers and writers want for ``uri`` (``s3://`` → ``s3a://``,
    local paths absolute ``file:`` URIs, ``dbfs:/`` and other schemes unchanged)."""
    s = scheme(uri)
    if s in ("", "file"):
        return "file://" + local_path(uri)
    if s in _SPARK_SCHEME and _SPARK_SCHEME[s] != s:
        return _SPARK_SCHEME[s] + uri[len(s) :]
    return uri


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for any URI (``os.path`` rules only for plain local paths)."""
    if scheme(base) == "":
        return os.path.join(base, *parts)
    return posixpath.join(base.rstrip("/"), *parts)


def parent(uri: str) -> str:
    """The directory holding ``uri``."""
    if scheme(uri) == "":
        return os.path.dirname(os.path.abspath(uri))
    return uri.rstrip("/").rsplit("/", 1)[0]


def basename(uri: str) -> str:
    """The last component of ``uri``."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _info(uri: str, storage: Storage | None) -> tuple[pafs.FileSystem, str, pafs.FileInfo]:
    fs, path = filesystem(uri, storage)
    try:
        return fs, path, fs.get_file_info(path)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read {uri}: {exc}. Check the path and the credentials for it"
        ) from None


def exists(uri: str, *, storage: Storage | None = None) -> bool:
    """True when a file or directory exists at ``uri``."""
    return bool(_info(uri, storage)[2].type != pafs.FileType.NotFound)


def is_dir(uri: str, *, storage: Storage | None = None) -> bool:
    """True when ``uri`` is a directory (an S3 prefix with objects under it counts)."""
    return bool(_info(uri, storage)[2].type == pafs.FileType.Directory)


def is_file(uri: str, *, storage: Storage | None = None) -> bool:
    """True when ``uri`` is a regular file."""
    return bool(_info(uri, storage)[2].type == pafs.FileType.File)


def makedirs(uri: str, *, storage: Storage | None = None) -> None:
    """Create ``uri`` and its parents (a no-op on object stores without directories)."""
    fs, path = filesystem(uri, storage)
    fs.create_dir(path, recursive=True)


def read_bytes(uri: str, *, storage: Storage | None = None) -> bytes:
    """The whole content of a small file."""
    fs, path, info = _info(uri, storage)
    if info.type != pafs.FileType.File:
        raise InvalidInputError(f"{uri} does not exist or is not a file")
    with fs.open_input_stream(path) as f:
        data: bytes = f.read()
    return data


def read_text(uri: str, *, storage: Storage | None = None) -> str:
    """A small UTF-8 text file."""
    return read_bytes(uri, storage=storage).decode("utf-8")


def write_bytes(uri: str, data: bytes, *, storage: Storage | None = None) -> None:
    """Write a small file, creating parent directories (replaces an existing file)."""
    fs, path = filesystem(uri, storage)
    fs.create_dir(posixpath.dirname(path) if not is_local(uri) else os.path.dirname(path))
    if is_local(uri):
        # write-then-rename so a reader never sees half a file
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
        return
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_text(uri: str, text: str, *, storage: Storage | None = None) -> None:
    """Write a small UTF-8 text file (see :func:`write_bytes`)."""
    write_bytes(uri, text.encode("utf-8"), storage=storage)


def write_json(uri: str, obj: Any, *, storage: Storage | None = None) -> None:
    """Write ``obj`` as indented JSON (numpy scalars and NaN made JSON-safe)."""
    write_text(uri, json.dumps(jsonable(obj), indent=2) + "\n", storage=storage)


def read_json(uri: str, *, storage: Storage | None = None) -> Any:
    """Parse a small JSON file; a malformed one is an :class:`InvalidInputError`."""
    text = read_text(uri, storage=storage)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{uri} is not valid JSON: {exc}") from None


def delete(uri: str, *, storage: Storage | None = None) -> None:
    """Remove a file or a whole directory tree (missing is fine)."""
    fs, path, info = _info(uri, storage)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def list_files(
    uri: str, suffixes: Sequence[str] = (), *, storage: Storage | None = None
) -> list[FileEntry]:
    """Data files under ``uri`` (recursively; hidden ``_``/``.`` names skipped), sorted.

    A file URI lists as itself. Sizes and mtimes come with the listing (one call per
    directory level on local disks, one paged listing on object stores).
    """
    fs, path, info = _info(uri, storage)
    if info.type == pafs.FileType.File:
        return [FileEntry(uri, int(info.size or 0), int(info.mtime_ns or 0))]
    if info.type != pafs.FileType.Directory:
        raise InvalidInputError(f"{uri} does not exist")
    entries = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    out: list[FileEntry] = []
    root = uri.rstrip("/")
    for entry in entries:
        if entry.type != pafs.FileType.File:
            continue
        relative = entry.path[len(path) :].lstrip("/")
        if _hidden(relative) or (suffixes and not entry.base_name.endswith(tuple(suffixes))):
            continue
        out.append(
            FileEntry(
                local_path(join(root, relative)) if is_local(uri) else f"{root}/{relative}",
                int(entry.size or 0),
                int(entry.mtime_ns or 0),
            )
        )
    return sorted(out, key=lambda e: e.uri)


def upload_dir(local_dir: str, uri: str, *, storage: Storage | None = None) -> None:
    """Copy a local directory tree to ``uri`` (any scheme)."""
    if is_local(uri) and os.path.abspath(local_dir) == local_path(uri):
        return
    fs, path = filesystem(uri, storage)
    for root, _, names in os.walk(local_dir):
        relative = os.path.relpath(root, local_dir)
        target = path if relative == "." else f"{path}/{relative.replace(os.sep, '/')}"
        fs.create_dir(target, recursive=True)
        for name in names:
            with (
                open(os.path.join(root, name), "rb") as src,
                fs.open_output_stream(f"{target}/{name}") as dst,
            ):
                dst.write(src.read())


def download_dir(uri: str, local_dir: str, *, storage: Storage | None = None) -> str:
    """Copy the tree at ``uri`` into ``local_dir``; return the local directory to read."""
    if is_local(uri):
        return local_path(uri)
    fs, path, info = _info(uri, storage)
    if info.type != pafs.FileType.Directory:
        raise InvalidInputError(f"{uri} does not exist or is not a directory")
    os.makedirs(local_dir, exist_ok=True)  # object stores may hold no directory marker
    pafs.copy_files(
        path, local_dir, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
    )
    return local_dir


class staged_dir:
    """A local directory whose content is uploaded to ``uri`` on a clean exit.

    Lets code that writes a directory of files (the codebook artifact) target any URI.
    """

    def __init__(self, uri: str, *, storage: Storage | None = None) -> None:
        self.uri = uri
        self.storage = storage
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        if is_local(self.uri):
            path = local_path(self.uri)
            os.makedirs(path, exist_ok=True)
            return path
        self._tmp = tempfile.TemporaryDirectory(prefix="hermes-stage-")
        return self._tmp.name

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self._tmp is None:
            return
        try:
            if exc_type is None:
                upload_dir(self._tmp.name, self.uri, storage=self.storage)
        finally:
            self._tmp.cleanup()


def report_path_for(table: str, suffix: str = "_report.json") -> str:
    """Where the JSON report of a table goes: beside it, ``<table><suffix>``.

    A catalog name (no scheme, no slash) has no directory: its report goes to the
    current working directory under the name.
    """
    return f"{table.rstrip('/')}{suffix}"


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays as Python values and NaN/inf as ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if type(obj).__name__ == "NAType":  # pandas.NA, without importing pandas here
        return None
    return obj


def spark_paths(uris: Iterable[str]) -> list[str]:
    """:func:`spark_path` of each URI."""
    return [spark_path(u) for u in uris]
