"""Real servers on loopback for the deployment tests: Spark standalone, Spark Connect, S3.

Each is a context manager that starts the processes from the project's own packages
(pyspark's jars and ``spark-class``, moto's standalone server), waits until they answer,
and stops every process it started on exit, also when the test fails. Ports are free
loopback ports picked at start; logs go to the given directory so a failure can show them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

PYSPARK_HOME = Path(pyspark.__file__).parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def spark_home(tmp: Path) -> Path:
    """A SPARK_HOME of symlinks to the pip pyspark package (``work/``, logs stay in tmp)."""
    home = tmp / "spark-home"
    if not home.exists():
        home.mkdir(parents=True)
        for entry in PYSPARK_HOME.iterdir():
            if entry.name not in ("work", "logs", "conf"):
                (home / entry.name).symlink_to(entry)
        (home / "conf").mkdir()
    return home


def spark_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a Spark process: this interpreter, loopback, ``home``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    env.update(
        SPARK_HOME=str(home),
        SPARK_LOCAL_IP=LOOPBACK,
        SPARK_LOCAL_HOSTNAME="localhost",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_DAEMON_MEMORY="256m",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env.update(extra)
    return env


def wait_for(check: Callable[[], bool], what: str, timeout: float, procs=()) -> None:
    """Poll ``check`` until true; fail early when one of ``procs`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: process {p.args[:3]} exited with {p.returncode}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} within {timeout:.0f}s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group we started, SIGKILL what is still alive after 20 s."""
    for p in reversed(procs):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def _spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    out = log.open("ab")
    try:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    finally:
        out.close()


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} absent)"


@dataclass
class Standalone:
    """A running standalone master with its workers."""

    url: str
    webui: int
    home: Path
    logs: Path
    work_dirs: list[Path]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def state(self) -> dict:
        """The master's JSON status (workers, active and completed applications)."""
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.webui}/json/", timeout=5) as r:
            return json.load(r)

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{tail(p)}" for p in sorted(self.logs.glob("*.log")))


@contextlib.contextmanager
def standalone_cluster(
    tmp: Path, workers: int = 2, memory: str = "1g", cores: int = 1
) -> Iterator[Standalone]:
    """A Spark standalone master and ``workers`` workers of ``cores`` cores on 127.0.0.1."""
    home = spark_home(tmp)
    logs = tmp / "standalone-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = spark_env(home)
    spark_class = str(home / "bin" / "spark-class")
    port, webui = free_port(), free_port()
    cluster = Standalone(f"spark://{LOOPBACK}:{port}", webui, home, logs, [])
    try:
        master = _spawn(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", LOOPBACK,
             "--port", str(port), "--webui-port", str(webui)],
            logs / "master.log", env, tmp,
        )  # fmt: skip
        cluster.procs.append(master)
        wait_for(lambda: cluster.state()["status"] == "ALIVE", "master up", 90, [master])
        for i in range(workers):
            work = tmp / f"worker-{i}"
            work.mkdir(exist_ok=True)
            cluster.work_dirs.append(work)
            cluster.procs.append(
                _spawn(
                    [
                        spark_class,
                        "org.apache.spark.deploy.worker.Worker",
                        "--host",
                        LOOPBACK,
                        "--webui-port",
                        str(free_port()),
                        "--cores",
                        str(cores),
                        "--memory",
                        memory,
                        "--work-dir",
                        str(work),
                        cluster.url,
                    ],
                    logs / f"worker-{i}.log",
                    env,
                    tmp,
                )
            )

        def all_alive() -> bool:
            alive = [w for w in cluster.state()["workers"] if w["state"] == "ALIVE"]
            return len(alive) == workers

        wait_for(all_alive, f"{workers} workers registered", 90, cluster.procs)
        yield cluster
    finally:
        stop(cluster.procs)


@contextlib.contextmanager
def connect_server(
    tmp: Path, python_path: str | None = None, conf: dict[str, str] | None = None
) -> Iterator[str]:
    """A Spark Connect server (``SparkConnectServer`` of pyspark's own jars) on loopback.

    pip's pyspark ships no ``sbin/start-connect-server.sh``; the server is what that script
    runs: ``spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer``
    (the ``spark-connect`` jar is in pyspark's ``jars/``). It runs ``local[2]``; its Python
    workers get ``python_path`` (where hermes_spark is installed on a real server). Yields
    the ``sc://127.0.0.1:PORT`` URL.
    """
    home = spark_home(tmp)
    logs = tmp / "connect-logs"
    logs.mkdir(parents=True, exist_ok=True)
    # spark-submit sizes this "daemon" class's driver by SPARK_DAEMON_MEMORY, not --driver-memory
    env = spark_env(home, SPARK_DAEMON_MEMORY="1536m")
    if python_path:
        env["PYTHONPATH"] = python_path
    port = free_port()
    settings = {
        "spark.connect.grpc.binding.address": LOOPBACK,
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.python.worker.reuse": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={tmp / 'derby'}",
        **(conf or {}),
    }
    cmd = [
        str(home / "bin" / "spark-submit"),
        "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name", "hermes-test-connect",
        "--master", "local[2]",
        "--driver-memory", "1536m",
    ]  # fmt: skip
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    log = logs / "connect-server.log"
    server = _spawn([*cmd, "spark-internal"], log, env, tmp)
    try:
        try:
            wait_for(lambda: port_open(port), "Spark Connect server listening", 180, [server])
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{tail(log)}") from None
        yield f"sc://{LOOPBACK}:{port}"
    finally:
        stop([server])


@dataclass
class S3Server:
    """A running S3-compatible server: its endpoint and the test credentials."""

    endpoint: str
    access_key: str = "hermes-test-key"
    secret_key: str = "hermes-test-secret"
    region: str = "us-east-1"

    def client(self):
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def spark_conf(self) -> dict[str, str]:
        """What a Spark session needs for ``s3a://`` on this server (Hadoop's S3A keys)."""
        return {
            "spark.hadoop.fs.s3a.endpoint": self.endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": self.region,
            "spark.hadoop.fs.s3a.access.key": self.access_key,
            "spark.hadoop.fs.s3a.secret.key": self.secret_key,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3a.aws.credentials.provider": (
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
            ),
            "spark.hadoop.fs.s3a.change.detection.mode": "none",
        }

    def storage_options(self) -> dict[str, str]:
        """The same server for delta-rs / pyarrow readers in the test's assertions."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        }


@contextlib.contextmanager
def s3_server(tmp: Path, buckets: tuple[str, ...] = ()) -> Iterator[S3Server]:
    """moto's standalone S3 server on a free loopback port, with ``buckets`` created.

    MinIO is not installable from the reachable registries; moto's server speaks the same
    S3 REST API that hadoop-aws (s3a://) and pyarrow use.
    """
    port = free_port()
    log = tmp / "s3-server.log"
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    server = _spawn(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)], log, env, tmp
    )
    try:
        try:
            wait_for(lambda: port_open(port), "S3 server listening", 60, [server])
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{tail(log)}") from None
        s3 = S3Server(f"http://{LOOPBACK}:{port}")
        client = s3.client()
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield s3
    finally:
        stop([server])
