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
def standalone_cluster(tmp: Path, workers: int = 2, memory: str = "1g") -> Iterator[Standalone]:
    """A Spark standalone master and ``workers`` one-core workers on 127.0.0.1."""
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
                        "1",
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
