"""The pinned JVM jars of ``jars.lock``: where sessions find them and how they are fetched.

Driver only; no Spark. ``jars.lock`` (``conf/jars.lock`` in the checkout, packaged as
``hermes_spark/conf/jars.lock`` in the wheel) pins each jar as
``group:artifact:version sha256 role``. :func:`fetch` downloads them from a Maven-layout
repository (Maven Central unless told otherwise; ``file://`` works too) into a folder and
checks every sha256 before a jar is kept. :func:`find_jars` is what sessions hermes
builds load: the first folder of :func:`search_dirs` holding every jar of a role.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hermes_spark.errors import UserError

log = logging.getLogger(__name__)

#: Maven's default repository; ``HERMES_MAVEN_REPO`` or ``--repo`` name another.
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
#: delta: native Delta Lake (a few MB, every session); s3: s3a:// support (~700 MB).
ROLES = ("delta", "s3")

_CHECKOUT = Path(__file__).resolve().parent.parent
#: Where ``make jars`` puts them in a source checkout.
CHECKOUT_JARS_DIR = _CHECKOUT / "build" / "jars"


class JarFetchError(UserError):
    """A pinned jar could not be fetched, or its checksum is not the pinned one."""


@dataclass(frozen=True)
class LockedJar:
    """One line of ``jars.lock``."""

    group: str
    artifact: str
    version: str
    sha256: str
    role: str

    @property
    def filename(self) -> str:
        """``artifact-version.jar``, the name in a jars folder."""
        return f"{self.artifact}-{self.version}.jar"

    @property
    def repo_path(self) -> str:
        """The jar's path in a Maven-layout repository."""
        group = self.group.replace(".", "/")
        return f"{group}/{self.artifact}/{self.version}/{self.filename}"


def lock_text() -> str:
    """The text of ``$HERMES_JARS_LOCK`` when set (another Spark's jars, e.g. the
    compatibility tier's ``conf/jars-compat.lock``), else of the packaged ``jars.lock`` (the
    checkout's when not installed as a wheel)."""
    if os.environ.get("HERMES_JARS_LOCK"):
        return Path(os.environ["HERMES_JARS_LOCK"]).read_text()
    packaged = resources.files("hermes_spark").joinpath("conf", "jars.lock")
    if packaged.is_file():
        return packaged.read_text()
    checkout = _CHECKOUT / "conf" / "jars.lock"
    try:
        return checkout.read_text()
    except OSError:  # a zip of the sources without conf/ (e.g. a hand-made --py-files)
        log.info("no jars.lock in the package or at %s: no pinned jars to load", checkout)
        return ""


def parse_lock(text: str) -> list[LockedJar]:
    """The jars of a lock text; comments and blank lines are skipped."""
    jars = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        coord = parts[0].split(":")
        if len(parts) != 3 or len(coord) != 3 or parts[2] not in ROLES:
            raise JarFetchError(f"jars.lock line {number} is not 'group:artifact:version sha role'")
        group, artifact, version = coord
        jars.append(LockedJar(group, artifact, version, sha256=parts[1].lower(), role=parts[2]))

    return jars


def locked(roles: tuple[str, ...] = ROLES) -> list[LockedJar]:
    """The packaged lock's jars of ``roles``."""
    return [jar for jar in parse_lock(lock_text()) if jar.role in roles]


def user_cache_dir() -> Path:
    """``$HERMES_JARS_DIR``, else ``$XDG_CACHE_HOME/hermes-spark/jars`` (``~/.cache``)."""
    if os.environ.get("HERMES_JARS_DIR"):
        return Path(os.environ["HERMES_JARS_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "hermes-spark" / "jars"


def search_dirs() -> list[Path]:
    """Folders sessions look in: ``$HERMES_JARS_DIR`` alone when set, else the checkout's
    ``build/jars`` (source checkouts) and the user cache of ``hermes-spark setup-jars``."""
    if os.environ.get("HERMES_JARS_DIR"):
        return [user_cache_dir()]
    return [CHECKOUT_JARS_DIR, user_cache_dir()]


def find_jars(role: str) -> list[Path]:
    """The jars of ``role`` from the first folder of :func:`search_dirs` that has them all.

    Empty when no folder has the complete set: a partial set never loads.
    """
    wanted = locked((role,))
    for folder in search_dirs():
        paths = [folder / jar.filename for jar in wanted]
        if wanted and all(p.is_file() for p in paths):
            return paths
    return []


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except OSError as exc:  # URLError, HTTPError and file:// misses are all OSErrors
        raise JarFetchError(f"could not fetch {url}: {exc}") from exc


def _local_maven(jar: LockedJar) -> Path | None:
    """The jar in the local Maven repository (``~/.m2/repository``) if it has the pin."""
    path = Path.home() / ".m2" / "repository" / jar.repo_path
    return path if path.is_file() and _sha256(path) == jar.sha256 else None


def fetch(roles: tuple[str, ...], dest: Path, repo: str | None = None) -> list[Path]:
    """Fetch the locked jars of ``roles`` from ``repo`` into ``dest``; their paths.

    A jar already in ``dest`` with the pinned checksum is kept; without ``repo``, one in
    the local Maven repository with the pinned checksum is copied instead of downloaded.
    A download whose sha256 differs from the lock is deleted and raises
    :class:`JarFetchError`: a tampered or truncated jar never lands in ``dest``.
    """
    base = (repo or os.environ.get("HERMES_MAVEN_REPO") or MAVEN_CENTRAL).rstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for jar in locked(roles):
        target = dest / jar.filename
        paths.append(target)
        if target.is_file() and _sha256(target) == jar.sha256:
            continue
        cached = None if repo else _local_maven(jar)
        if cached is not None:
            shutil.copyfile(cached, target)
            continue
        log.info("fetching %s:%s:%s (%s)", jar.group, jar.artifact, jar.version, jar.role)
        fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{jar.filename}.")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _download(f"{base}/{jar.repo_path}", tmp)
            got = _sha256(tmp)
            if got != jar.sha256:
                raise JarFetchError(
                    f"checksum mismatch for {jar.filename} from {base}: got sha256 {got}, "
                    f"jars.lock pins {jar.sha256}; the file was not kept"
                )
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    return paths


__all__ = [
    "MAVEN_CENTRAL",
    "ROLES",
    "JarFetchError",
    "LockedJar",
    "fetch",
    "find_jars",
    "locked",
    "parse_lock",
    "search_dirs",
    "user_cache_dir",
]
