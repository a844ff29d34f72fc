"""Build what a cluster needs into dist/: the wheel and the ``--py-files`` zip (``make dist``).

- ``dist/hermes_spark-VERSION-py3-none-any.whl``: ``pip install`` it on every node (or
  give it to Databricks as a library); configs ride inside as ``hermes_spark/conf/*.yaml``.
- ``dist/hermes_spark.zip``: the same files without the wheel metadata, for
  ``spark-submit --py-files dist/hermes_spark.zip`` on nodes that already have the
  dependencies (numpy, torch, pyarrow, ...) but not hermes-spark.

Usage: ``python scripts/build_dist.py [OUT_DIR]`` (default ``dist``). Prints both paths.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZIP_NAME = "hermes_spark.zip"


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of the checkout (no deps, no isolation: the venv's setuptools)."""
    # setuptools reuses build/lib; a module deleted from the tree would linger in the wheel.
    for scratch in (REPO / "build" / "lib", *REPO.glob("build/bdist.*")):
        shutil.rmtree(scratch, ignore_errors=True)
    for old in out.glob("hermes_spark-*.whl"):
        old.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
    )
    (wheel,) = out.glob("hermes_spark-*.whl")
    return wheel


def pyfiles_zip(wheel: Path, dest: Path) -> Path:
    """The wheel's packages (``hermes_spark/``, ``udfs/``) as a plain zip for --py-files."""
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            if ".dist-info/" not in info.filename:
                zf.writestr(info, src.read(info))
    return dest


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else REPO / "dist").resolve()
    out.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(out)
    archive = pyfiles_zip(wheel, out / ZIP_NAME)
    print(wheel)
    print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
