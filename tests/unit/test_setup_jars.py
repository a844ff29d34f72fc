"""``hermes-spark setup-jars``: pinned, checksummed jars from a Maven-layout repository into
the user cache that sessions hermes builds load (no network: a ``file://`` repository)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hermes_spark import jars, session
from tests.helpers import assert_clean_error, run_cli

REPO = Path(__file__).resolve().parents[2]


def _publish(repo: Path, group: str, artifact: str, version: str, body: bytes) -> str:
    """Put a jar into a Maven-layout folder; its lock line (sha256 of ``body``)."""
    folder = repo.joinpath(*group.split("."), artifact, version)
    folder.mkdir(parents=True)
    (folder / f"{artifact}-{version}.jar").write_bytes(body)
    return f"{group}:{artifact}:{version} {hashlib.sha256(body).hexdigest()}"


@pytest.fixture
def maven(tmp_path, monkeypatch) -> Path:
    """A file:// repository with two delta jars and one s3 jar, and a lock pinning them."""
    repo = tmp_path / "m2"
    lines = [
        "# group:artifact:version sha256 role",
        _publish(repo, "io.delta", "delta-spark_4.2_2.13", "9.9.0", b"delta classes") + " delta",
        _publish(repo, "io.delta", "delta-storage", "9.9.0", b"storage classes") + " delta",
        _publish(repo, "org.apache.hadoop", "hadoop-aws", "9.9.0", b"s3a classes") + " s3",
    ]
    monkeypatch.setattr(jars, "lock_text", lambda: "\n".join(lines) + "\n")
    monkeypatch.setenv("HERMES_JARS_DIR", str(tmp_path / "cache"))
    return repo


def test_setup_jars_fetches_the_delta_role_into_the_cache_sessions_load(maven, capsys):
    code, out, err = run_cli(capsys, "setup-jars", "--repo", maven.as_uri())
    assert code == 0, err
    cache = jars.user_cache_dir()
    assert sorted(p.name for p in cache.glob("*.jar")) == [
        "delta-spark_4.2_2.13-9.9.0.jar",
        "delta-storage-9.9.0.jar",
    ]
    conf = session.delta_jar_conf()
    assert conf["spark.jars"].split(",") == [str(p) for p in jars.find_jars("delta")]
    assert all(Path(p).parent == cache for p in conf["spark.jars"].split(","))
    assert "spark.driver.extraClassPath" not in conf  # the s3 role was not fetched
    assert "2 pinned jars (delta)" in out


def test_setup_jars_refuses_a_jar_whose_checksum_is_not_the_pinned_one(maven, capsys):
    tampered = maven / "io/delta/delta-storage/9.9.0/delta-storage-9.9.0.jar"
    tampered.write_bytes(b"storage classes, changed")
    code, _, err = run_cli(capsys, "setup-jars", "--role", "all", "--repo", maven.as_uri())
    assert_clean_error(code, err, "checksum mismatch", "delta-storage-9.9.0.jar")
    cache = jars.user_cache_dir()
    assert not (cache / "delta-storage-9.9.0.jar").exists()
    assert not list(cache.glob(".*"))  # no partial download left behind
    assert jars.find_jars("delta") == []  # a partial set never loads
    assert session.delta_jar_conf() == {}


def test_a_missing_jar_is_a_clean_error(maven, capsys):
    (maven / "org/apache/hadoop/hadoop-aws/9.9.0/hadoop-aws-9.9.0.jar").unlink()
    code, _, err = run_cli(capsys, "setup-jars", "--role", "s3", "--repo", maven.as_uri())
    assert_clean_error(code, err, "could not fetch", "hadoop-aws-9.9.0.jar")


def test_a_jar_already_in_the_cache_is_kept_not_fetched_again(maven, capsys):
    assert run_cli(capsys, "setup-jars", "--repo", maven.as_uri())[0] == 0
    # the repository goes away: a second run only re-checks the cached jars
    for jar in maven.rglob("*.jar"):
        jar.unlink()
    code, _, err = run_cli(capsys, "setup-jars", "--repo", maven.as_uri())
    assert code == 0, err


def test_the_packaged_lock_pins_every_jar_with_a_sha256_and_a_role():
    locked = jars.parse_lock(jars.lock_text())
    assert {j.role for j in locked} == set(jars.ROLES)
    assert all(len(j.sha256) == 64 and int(j.sha256, 16) >= 0 for j in locked)
    delta = [j for j in locked if j.role == "delta"]
    assert any(j.artifact.startswith("delta-spark_") for j in delta)
    assert (REPO / "conf" / "jars.lock").read_text() == jars.lock_text()


def test_a_malformed_lock_line_is_a_clean_error():
    with pytest.raises(jars.JarFetchError, match="line 2"):
        jars.parse_lock("# ok\nio.delta:delta-storage:1.0 abc\n")
