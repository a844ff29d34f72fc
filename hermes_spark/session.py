"""SparkSession: attach to the active one (spark-submit, Databricks) or build a local one.

Runs on the driver only. Three cases:

* a session is already active (Databricks notebook, a user's own code): it is returned
  untouched — hermes changes none of its settings;
* the Python process was launched by ``spark-submit`` (or ``PYSPARK_SUBMIT_ARGS`` /
  ``spark-defaults.conf`` name a master): the session is built with the master and every
  setting the launcher gave; hermes only fills in settings the launcher left unset;
* nothing is configured: a local session (``local[*]`` unless told otherwise) with the
  production Python-side conf (Arrow on, Python worker reuse on so a loaded model is
  reused by later tasks) and, when ``make jars`` or ``hermes-spark setup-jars`` fetched
  them (:mod:`hermes_spark.jars`), the Delta Lake jars.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from pyspark.sql import SparkSession

from hermes_spark.jars import find_jars, search_dirs

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
#: log4j2 configuration of quiet sessions (``conf/``; ``hermes_spark/conf/`` in a wheel).
QUIET_LOG4J = "log4j2-quiet.properties"

DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def get_spark(
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    app_name: str = "hermes-spark",
    *,
    default_master: str = "local[*]",
    delta_engine: str = "auto",
    remote: str | None = None,
    quiet: bool = True,
) -> SparkSession:
    """The active SparkSession, else one built as the launcher (or ``master``) says.

    ``master`` forces a master; otherwise the launcher's (spark-submit ``--master``,
    ``PYSPARK_SUBMIT_ARGS``, ``spark-defaults.conf``) is kept and ``default_master`` is
    used only when none is configured. ``conf`` and hermes' defaults never override a
    setting the launcher gave. ``delta_engine`` other than ``embedded`` puts the Delta jars
    of ``make setup`` on a session whose JVM hermes starts itself. ``remote`` (or the
    ``SPARK_REMOTE`` variable) connects to a Spark Connect server instead. ``quiet`` gives
    a JVM hermes starts the packaged ``log4j2-quiet.properties`` (errors only on the
    terminal); ``quiet=False`` keeps Spark's defaults (WARN and its startup lines).
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
    if not launched and quiet:
        wanted.update(quiet_log_conf(wanted.get("spark.driver.extraJavaOptions", "")))
    for key, value in wanted.items():
        if key not in launched:  # the launcher's --conf wins
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not launched:
        spark.sparkContext.setLogLevel("ERROR" if quiet else "WARN")
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


def quiet_log_conf(java_options: str) -> dict[str, str]:
    """Driver Java options with the quiet log4j2 configuration appended ({} if unavailable).

    A ``-Dlog4j.configurationFile`` already in ``java_options`` (the user's) is kept.
    """
    if "-Dlog4j.configurationFile" in java_options:
        return {}
    packaged = resources.files("hermes_spark").joinpath("conf", QUIET_LOG4J)
    path = packaged if isinstance(packaged, Path) and packaged.is_file() else None
    checkout = Path(__file__).resolve().parent.parent / "conf" / QUIET_LOG4J
    path = path or (checkout if checkout.is_file() else None)
    if path is None:  # e.g. imported from a --py-files zip: Spark's defaults stay
        return {}
    option = f"-Dlog4j.configurationFile=file:{path}"
    return {"spark.driver.extraJavaOptions": f"{java_options} {option}".strip()}


def delta_jar_conf() -> dict[str, str]:
    """spark.jars + extension + catalog of native Delta when its jars are present, else {}.

    The (large) s3a jars go on the driver and executor class path instead of ``spark.jars``:
    local and ``local-cluster`` executors share this filesystem, so nothing is copied.
    """
    delta = find_jars("delta")
    if not delta:
        log.info(
            "no Delta jars in %s (run `hermes-spark setup-jars`): Delta stays embedded",
            " or ".join(str(d) for d in search_dirs()),
        )
        return {}
    found = {"spark.jars": ",".join(str(p) for p in delta), **DELTA_CONF}
    s3 = find_jars("s3")
    if s3:
        classpath = os.pathsep.join(str(p) for p in s3)
        found["spark.driver.extraClassPath"] = classpath
        found["spark.executor.extraClassPath"] = classpath
    return found
