"""The I/O layer: URI spellings, listings, small files, and clear errors for bad schemes."""

from __future__ import annotations

import os
import pickle

import pyarrow.fs as pafs
import pytest

from hermes_spark import io
from hermes_spark.errors import InvalidInputError


def test_local_spellings_are_one_path(tmp_path):
    p = tmp_path / "a b" / "f.json"
    for uri in (str(p), f"file://{p}", f"file:{p}"):
        assert io.local_path(uri) == str(p)
        assert io.is_local(uri)
    assert io.local_path("dbfs:/mnt/x") == "/dbfs/mnt/x"
    assert io.spark_path(str(p)) == f"file://{p}"
    assert io.spark_path("s3://bucket/k") == "s3a://bucket/k"
    assert io.spark_path("abfss://c@acct.dfs.core.windows.net/p") == (
        "abfss://c@acct.dfs.core.windows.net/p"
    )
    assert io.join("s3a://b/dir/", "x", "y.json") == "s3a://b/dir/x/y.json"
    assert io.parent("s3a://b/dir/x.json") == "s3a://b/dir"


def test_small_files_round_trip_and_listing_skips_hidden(tmp_path):
    root = tmp_path / "corpus"
    io.write_json(str(root / "part-0.json"), {"nan": float("nan"), "n": 3})
    io.write_text(str(root / "sub" / "part-1.json"), "{}")
    io.write_text(str(root / "_delta_log" / "0.json"), "{}")
    io.write_text(str(root / ".hidden.json"), "{}")
    io.write_text(str(root / "notes.txt"), "x")
    assert io.read_json(str(root / "part-0.json")) == {"nan": None, "n": 3}
    listed = io.list_files(f"file://{root}", (".json",))
    assert [os.path.relpath(e.uri, root) for e in listed] == ["part-0.json", "sub/part-1.json"]
    assert all(e.size > 0 and e.mtime_ns > 0 for e in listed)
    assert not any(name.startswith("part-0.json.tmp") for name in os.listdir(root))
    with pytest.raises(InvalidInputError, match="does not exist"):
        io.list_files(str(tmp_path / "missing"))
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        io.write_text(str(root / "bad.json"), "{")
        io.read_json(str(root / "bad.json"))


def test_staged_dir_uploads_to_a_non_local_filesystem(tmp_path, monkeypatch):
    """A directory written locally lands under the target URI (any pyarrow filesystem)."""
    target = tmp_path / "remote"
    local_fs = pafs.LocalFileSystem()
    monkeypatch.setattr(
        io,
        "filesystem",
        lambda uri, storage=None: (local_fs, str(target / uri.split("://", 1)[1])),
    )
    monkeypatch.setattr(io, "is_local", lambda uri: False)
    with io.staged_dir("mem://bucket/artifact") as local:
        assert not local.startswith(str(target))
        with open(os.path.join(local, "metadata.json"), "w") as f:
            f.write("{}")
    assert (target / "bucket" / "artifact" / "metadata.json").read_text() == "{}"


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(InvalidInputError, match=r"no filesystem is configured for the scheme ftp"):
        io.exists("ftp://host/corpus")


_S3A = {
    "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
    "spark.hadoop.fs.s3a.access.key": "k",
    "spark.hadoop.fs.s3a.secret.key": "s",
    "spark.hadoop.fs.s3a.path.style.access": "true",
}


def _fake_s3(monkeypatch) -> list[dict]:
    made: list[dict] = []

    class FakeS3:
        def __init__(self, **options):
            made.append(options)

    monkeypatch.setattr(io.pafs, "S3FileSystem", FakeS3)
    return made


def test_spark_s3a_settings_reach_the_s3_filesystem(monkeypatch):
    made = _fake_s3(monkeypatch)
    storage = io.storage_from_conf(_S3A)
    _fs, path = io.filesystem("s3a://bucket/dir/file.json", storage)
    assert path == "bucket/dir/file.json"
    seen = made[-1]
    assert seen["endpoint_override"] == "127.0.0.1:9000"
    assert seen["scheme"] == "http"
    assert seen["access_key"] == "k" and seen["secret_key"] == "s"
    assert seen["force_virtual_addressing"] is False
    assert "secret_key='s'" not in repr(storage)  # secrets stay out of logs
    # no storage (an unconfigured driver): pyarrow's own defaults, nothing carried over
    io.filesystem("s3a://bucket/x", None)
    assert "endpoint_override" not in made[-1] and "access_key" not in made[-1]
    ssl_off = io.storage_from_conf(
        {
            "spark.hadoop.fs.s3a.endpoint": "https://minio:9000",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        }
    )
    assert (ssl_off.s3_endpoint, ssl_off.s3_scheme) == ("minio:9000", "http")


def test_two_storage_values_reach_different_endpoints_in_one_process(monkeypatch):
    """The settings travel with the value: no process-wide state decides the endpoint."""
    made = _fake_s3(monkeypatch)
    a = io.storage_from_conf({**_S3A, "spark.hadoop.fs.s3a.endpoint": "http://a:9000"})
    b = io.storage_from_conf({**_S3A, "spark.hadoop.fs.s3a.endpoint": "https://b:443"})
    io.filesystem("s3a://bucket/k", a)
    io.filesystem("s3a://bucket/k", storage=b)
    io.filesystem("s3a://bucket/k", a)
    assert [(m["endpoint_override"], m["scheme"]) for m in made] == [
        ("a:9000", "http"),
        ("b:443", "https"),
        ("a:9000", "http"),
    ]
    assert not hasattr(io, "_S3_OPTIONS") and not hasattr(io, "configure_from_spark")


def test_storage_pickles_for_executor_closures():
    storage = io.storage_from_conf({**_S3A, "spark.hadoop.fs.s3a.session.token": "t"})
    back = pickle.loads(pickle.dumps(storage))
    assert back == storage and hash(back) == hash(storage)
    assert back.s3_options() == storage.s3_options()
    assert io.storage_from_conf({}) == io.Storage() and io.Storage().s3_options() == {}


def test_storage_of_reads_the_session_conf_each_call(monkeypatch):
    from pyspark.sql import SparkSession

    from hermes_spark.object_stores import storage_before_session, storage_of

    class Conf:
        def __init__(self, values):
            self.values = values

        def get(self, key, default=None):
            return self.values.get(key, default)

    class Session:
        def __init__(self, values):
            self.conf = Conf(values)

    session = Session(dict(_S3A))
    first = storage_of(session)
    assert first.s3_endpoint == "127.0.0.1:9000" and first.s3_path_style
    session.conf.values["spark.hadoop.fs.s3a.endpoint"] = "http://other:1"
    assert storage_of(session).s3_endpoint == "other:1"  # nothing cached
    assert storage_of(None) == io.Storage()
    # no active session (the suite's shared one is hidden): the settings hermes would
    # build the session with
    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    assert storage_before_session(_S3A) == first


def test_spark_storage_failures_become_user_errors():
    from hermes_spark.errors import InvalidInputError, storage_error

    err = storage_error(
        RuntimeError(
            "org.apache.hadoop.fs.UnsupportedFileSystemException: No FileSystem for "
            'scheme "wasb" at wasb://c@acct/x'
        )
    )
    assert isinstance(err, InvalidInputError)
    assert "wasb://c@acct/x" in str(err) and "jars" in str(err)
    err = storage_error(RuntimeError("NoSuchBucket: s3a://no-such-bucket/codes/_delta_log"))
    assert err is not None and "bucket does not exist" in str(err)
    assert storage_error(RuntimeError("division by zero")) is None


def test_a_missing_connector_class_names_the_commands_path_of_that_scheme():
    from hermes_spark.errors import storage_error

    jvm = (
        "java.lang.RuntimeException: java.lang.ClassNotFoundException: Class "
        "org.apache.hadoop.fs.azurebfs.SecureAzureBlobFileSystem not found\n\tat org.apache"
    )
    argv = ["stats", "--table", "abfss://c@acct.dfs.core.windows.net/codes", "--out",
            "s3a://hermes/stats"]  # fmt: skip
    err = str(storage_error(RuntimeError(jvm), argv))
    assert "abfss://c@acct.dfs.core.windows.net/codes" in err and "hadoop-azure" in err
    assert "s3a://hermes/stats" not in err  # that path's connector is there
    gcs = "ClassNotFoundException: Class org.apache.hadoop.fs.gs.GoogleHadoopFileSystem not found"
    assert "gs://b/t" in str(storage_error(RuntimeError(gcs), ["--table", "gs://b/t", "/tmp/o"]))
