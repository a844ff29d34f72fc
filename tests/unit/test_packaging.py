"""The wheel and --py-files zip that ``make dist`` builds, and configs resolved by name.

Builds the real wheel (``scripts/build_dist.py``, what ``make dist`` runs) once per module,
then imports the package from the installed wheel and from the zip in fresh interpreters
whose cwd is outside the checkout, so ``--config web-scale`` can only come from package data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hermes_spark.config import load_config
from hermes_spark.errors import InvalidConfigError
from hermes_spark.packaged_conf import available_configs, resolve_config
from tests.helpers import assert_clean_error, run_cli

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.name for p in (REPO / "conf").glob("*.yaml"))
#: conf/ files shipped besides the configs: the jars lock and the quiet log4j2 config.
PACKAGED = sorted([*CONFIGS, "jars.lock", "log4j2-quiet.properties"])


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_dist.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    wheel, archive = (Path(line) for line in done.stdout.split())
    return {"wheel": wheel, "zip": archive}


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        text = zf.read(meta).decode()
    return [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def _by_name(requires: list[str], extra: str | None) -> dict[str, Requirement]:
    """Requirements of the wheel for ``extra`` (None: the hard ones), by package name."""
    out = {}
    for line in requires:
        req = Requirement(line)
        in_extra = req.marker is not None and f'extra == "{extra}"' in str(req.marker)
        if (extra is None and req.marker is None) or (extra is not None and in_extra):
            out[canonicalize_name(req.name)] = req
    return out


def test_the_wheel_declares_what_the_default_paths_import(dist):
    requires = _requires(dist["wheel"])
    hard = _by_name(requires, None)
    # the CPU default backend (onnx int8) and evaluate's default faiss_rq/kmeans baselines
    assert {"onnx", "onnxruntime", "faiss-cpu", "torch", "sentence-transformers"} <= set(hard)
    assert "deltalake" not in hard  # delta-rs only serves a laptop without the Delta jars
    assert "deltalake" in _by_name(requires, "local")
    assert "mlflow-skinny" in _by_name(requires, "mlflow")  # the client, without the server


@pytest.mark.parametrize(
    ("package", "shipped"),
    [
        ("pyspark", "4.0.0"),
        ("pyspark", "4.1.0"),
        ("pyspark", "4.3.0"),
        ("delta-spark", "4.0.0"),
        ("delta-spark", "4.4.1"),
    ],
)
def test_spark_ranges_cover_what_runtimes_ship_up_to_the_newest(dist, package, shipped):
    """DBR 17.3 LTS ships Spark 4.0.0, DBR 18 LTS 4.1; 4.3.0 is the newest pyspark release
    and 4.4.1 the newest delta-spark; the runtime lock's pins are inside the ranges too."""
    local = _by_name(_requires(dist["wheel"]), "local")
    assert local[package].specifier.contains(shipped), (package, str(local[package]))
    pinned = next(
        line.split("==")[1]
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if canonicalize_name(line.split("==")[0]) == package
    )
    assert local[package].specifier.contains(pinned), (package, pinned)


def test_both_console_scripts_run_the_cli(dist):
    with zipfile.ZipFile(dist["wheel"]) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry = zf.read(name).decode()
    assert "hermes-spark = hermes_spark.cli:main" in entry
    assert "hermes = hermes_spark.cli:main" in entry


_NO_DELTALAKE = """
import sys
sys.modules["deltalake"] = None  # as on a cluster without the [local] extra
import hermes_spark.api, hermes_spark.cli, hermes_spark.delta, hermes_spark.delta.engine
print("ok")
"""


def test_the_package_imports_without_delta_rs():
    done = subprocess.run(
        [sys.executable, "-c", _NO_DELTALAKE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_pyspark_is_only_pulled_by_the_local_extra(dist):
    requires = _requires(dist["wheel"])
    hard = [r for r in requires if "extra ==" not in r]
    assert hard and not any(r.startswith(("pyspark", "delta-spark")) for r in hard), hard
    local = [r.split(";")[0].strip() for r in requires if 'extra == "local"' in r]
    assert any(r.startswith("pyspark") for r in local), local
    assert any(r.startswith("delta-spark") for r in local), local


def test_configs_ship_as_package_data_identical_to_conf(dist):
    assert {"web-scale.yaml", "cluster-gpu.yaml"} <= set(CONFIGS)
    for key in ("wheel", "zip"):
        with zipfile.ZipFile(dist[key]) as zf:
            names = zf.namelist()
            shipped = sorted(
                n.rsplit("/", 1)[1] for n in names if n.startswith("hermes_spark/conf/")
            )
            assert shipped == PACKAGED, (key, shipped)
            for name in PACKAGED:
                assert zf.read(f"hermes_spark/conf/{name}") == (REPO / "conf" / name).read_bytes()
            assert any(n == "udfs/annotate_udf.py" for n in names), key
            assert "hermes_spark/py.typed" in names, key  # PEP 561: hints are shipped
    with zipfile.ZipFile(dist["zip"]) as zf:
        assert not [n for n in zf.namelist() if ".dist-info" in n]
    with zipfile.ZipFile(dist["wheel"]) as zw, zipfile.ZipFile(dist["zip"]) as zz:
        packages = {n for n in zw.namelist() if ".dist-info/" not in n}
        assert packages == set(zz.namelist())


_PROBE = """
import json, sys
import hermes_spark
from hermes_spark.config import load_config
from hermes_spark.packaged_conf import available_configs
gpu, default = load_config("cluster-gpu"), load_config("web-scale")
print(json.dumps({"file": hermes_spark.__file__, "names": available_configs(),
                  "gpu_batch": gpu.model.batch_size, "default_levels": list(default.fit.levels)}))
"""


@pytest.mark.parametrize("how", ["wheel", "zip"])
def test_config_names_resolve_from_the_installed_package(dist, tmp_path, how):
    if how == "wheel":
        site = tmp_path / "site"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(site),
                str(dist["wheel"]),
            ],
            check=True,
            timeout=300,
        )
        root = site
    else:
        root = dist["zip"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    assert probe["file"].startswith(str(root) + "/"), probe  # not the checkout
    assert {"web-scale", "cluster-gpu"} <= set(probe["names"])
    expected = load_config(REPO / "conf" / "cluster-gpu.yaml").model.batch_size
    assert probe["gpu_batch"] == expected
    assert probe["default_levels"] == list(load_config(REPO / "conf" / "web-scale.yaml").fit.levels)


def test_names_and_paths_resolve_in_the_checkout(tmp_path):
    assert {"web-scale", "cluster-gpu", "demo"} <= set(available_configs())
    by_name = load_config("cluster-gpu")
    assert by_name == load_config(str(REPO / "conf" / "cluster-gpu.yaml"))
    assert by_name != load_config("web-scale")
    own = tmp_path / "mine.yaml"
    own.write_text("fit:\n  seed: 7\n")
    assert load_config(str(own)).fit.seed == 7
    assert Path(resolve_config(str(own))) == own


def test_unknown_config_name_is_a_clean_error(capsys):
    with pytest.raises(InvalidConfigError, match="cluster-gpu"):
        load_config("no-such-conf")
    code, _, err = run_cli(
        capsys, "stats", "--config", "no-such-conf", "--table", "t", "--out", "o"
    )
    assert_clean_error(code, err, "no-such-conf", "web-scale")


def test_no_shipped_config_is_called_default_but_the_old_name_still_resolves():
    """A run without --config uses the built-in defaults; the shipped web-scale config is
    not them, so it is not called ``default`` (the old name maps to it)."""
    assert "default" not in available_configs()
    assert load_config("web-scale") != load_config(None)
    assert load_config("default") == load_config("web-scale")
