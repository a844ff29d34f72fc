"""SparkSession: attach to the active one (spark-submit, Databricks) or build a local one.

Runs on the driver only. Three cases:

* a session is already active (Databricks notebook, a user's own code): it is returned
  untouched — hermes changes none of its settings;
* the Python process was launched by ``spark-submit`` (or ``PYSPARK_SUBMIT_ARGS`` /
  ``spark-defaults.conf`` name a master): the session is built with the master and every
  setting the launcher gave; hermes only fills in settings the launcher left unset;
* nothing is configured: a local session (``local[*]`` unless told otherwise) with the
  production Python-side conf (Arrow on, Python worker reuse on so a loaded model is
  reused by later tasks) and, when ``make setup`` fetched them, the Delta Lake jars.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Settings hermes wants on a session it builds; never forced on a launcher's session.
BASE_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "4096",
    "spark.python.worker.reuse": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}

#: Extra settings for a local session hermes builds itself (no launcher involved).
LOCAL_CONF: dict[str, str] = {
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    # Delta VACUUM lists files with this many tasks (default 10,000: minutes on a laptop),
    # and rebuilds a table's state with this many (default 50), as Delta's own tests do.
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.driver.extraJavaOptions": "-Dderby.system.home=/tmp/derby",
}

#: Settings that make the Delta jars a native Delta session.
DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

_REPO = Path(__file__).resolve().parents[1]
#: Where ``make jars`` puts the jars pinned in ``conf/jars.lock`` (``HERMES_JARS_DIR``).
DEFAULT_JARS_DIR = _REPO / "build" / "jars"
JARS_LOCK = _REPO / "conf" / "jars.lock"


def get_spark(
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    app_name: str = "hermes-spark",
    *,
    default_master: str = "local[*]",
    delta_engine: str = "auto",
    remote: str | None = None,
) -> SparkSession:
    """The active SparkSession, else one built as the launcher (or ``master``) says.

    ``master`` forces a master; otherwise the launcher's (spark-submit ``--master``,
    ``PYSPARK_SUBMIT_ARGS``, ``spark-defaults.conf``) is kept and ``default_master`` is
    used only when none is configured. ``conf`` and hermes' defaults never override a
    setting the launcher gave. ``delta_engine`` other than ``embedded`` puts the Delta jars
    of ``make setup`` on a session whose JVM hermes starts itself. ``remote`` (or the
    ``SPARK_REMOTE`` variable) connects to a Spark Connect server instead.
    """
    if remote:
        return _connect_session(app_name, conf, remote)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    python = sys.executable
    os.environ.setdefault("PYSPARK_PYTHON", python)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", python)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if os.environ.get("SPARK_REMOTE") and master is None:
        return _connect_session(app_name, conf, os.environ["SPARK_REMOTE"])
    launched = _launcher_conf()
    configured = launched.get("spark.master") or _configured_master()
    builder = SparkSession.builder.appName(app_name)
    if master is not None or configured is None:
        builder = builder.master(master or default_master)
    wanted = dict(BASE_CONF)
    if not launched and configured is None:
        wanted.update(LOCAL_CONF)
    if not launched and delta_engine != "embedded":
        wanted.update(delta_jar_conf())
    wanted.update(conf or {})
    for key, value in wanted.items():
        if key not in launched:  # the launcher's --conf wins
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not launched:
        spark.sparkContext.setLogLevel("WARN")
    log.info("started Spark %s master=%s", spark.version, spark.sparkContext.master)
    return spark


def _connect_session(app_name: str, conf: Mapping[str, str] | None, url: str) -> SparkSession:
    """A Spark Connect session at ``url`` with the runtime settings of ``conf``."""
    builder = SparkSession.builder.remote(url).appName(app_name)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    log.info("attached to Spark Connect %s (Spark %s)", url, spark.version)
    return spark


def _launcher_conf() -> dict[str, str]:
    """Spark settings of the JVM spark-submit launched for this process ({} if none)."""
    if not os.environ.get("PYSPARK_GATEWAY_PORT"):
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connects to spark-submit's gateway, starts nothing
    return dict(SparkConf().getAll())


def _configured_master() -> str | None:
    """A master named by ``PYSPARK_SUBMIT_ARGS`` or ``spark-defaults.conf``, else None."""
    args = shlex.split(os.environ.get("PYSPARK_SUBMIT_ARGS", ""))
    for i, arg in enumerate(args):
        if arg == "--master" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--master="):
            return arg.split("=", 1)[1]
        if arg == "--conf" and i + 1 < len(args) and args[i + 1].startswith("spark.master="):
            return args[i + 1].split("=", 1)[1]
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (
        os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else None
    )
    defaults = Path(conf_dir or "/nonexistent") / "spark-defaults.conf"
    if defaults.is_file():
        for line in defaults.read_text().splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0] == "spark.master":
                return parts[1].strip()
    return None


def jars_dir() -> Path:
    """Folder of the jars ``make jars`` fetched (``HERMES_JARS_DIR`` overrides)."""
    return Path(os.environ.get("HERMES_JARS_DIR") or DEFAULT_JARS_DIR)


def locked_jars(role: str) -> list[Path]:
    """Jars of ``conf/jars.lock`` with ``role`` (``delta`` or ``s3``) present in :func:`jars_dir`.

    Empty when the lock or any of the role's jars is missing: a partial set never loads.
    """
    if not JARS_LOCK.is_file():
        return []
    found = []
    for line in JARS_LOCK.read_text().splitlines():
        parts = line.split()
        if len(parts) != 3 or line.lstrip().startswith("#") or parts[2] != role:
            continue
        _, artifact, version = parts[0].split(":")
        jar = jars_dir() / f"{artifact}-{version}.jar"
        if not jar.is_file():
            return []
        found.append(jar)
    return found


def delta_jar_conf() -> dict[str, str]:
    """spark.jars + extension + catalog of native Delta when its jars are present, else {}.

    The (large) s3a jars go on the driver and executor class path instead of ``spark.jars``:
    local and ``local-cluster`` executors share this filesystem, so nothing is copied.
    """
    delta = locked_jars("delta")
    if not delta:
        log.info("no Delta jars in %s (run `make jars`): Delta stays embedded", jars_dir())
        return {}
    found = {"spark.jars": ",".join(str(p) for p in delta), **DELTA_CONF}
    s3 = locked_jars("s3")
    if s3:
        classpath = os.pathsep.join(str(p) for p in s3)
        found["spark.driver.extraClassPath"] = classpath
        found["spark.executor.extraClassPath"] = classpath
    return found
