"""A persistent local catalog: table names that separate ``hermes`` processes share.

Driver only. Spark's default in-memory catalog forgets every table name when the process
ends; the config's ``catalog.warehouse`` turns on Spark's Hive catalog with an embedded
Derby metastore under that folder (``<warehouse>/metastore_db``) and managed tables under
it, so ``hermes annotate --table codes`` in one process and ``hermes stats --table codes``
in the next name the same table. On Databricks or any cluster with its own metastore
leave it unset: the platform's catalog serves names.
"""

from __future__ import annotations

from pathlib import Path

from hermes_spark.errors import InvalidConfigError


def hive_jars_present() -> bool:
    """Whether pyspark's jars folder has Spark's Hive support (pip's pyspark ships it)."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    return any(jars.glob("spark-hive_*.jar")) and any(jars.glob("hive-metastore-*.jar"))


def local_catalog_conf(warehouse: str) -> dict[str, str]:
    """Spark settings of a Hive catalog with a Derby metastore under ``warehouse``.

    ``warehouse`` must be a local folder (Derby's files are local); it is created.
    """
    if "://" in warehouse and not warehouse.startswith("file:"):
        raise InvalidConfigError(
            f"config catalog.warehouse {warehouse!r}: the local metastore needs a local "
            "folder; on a cluster with its own metastore leave catalog.warehouse unset"
        )
    if not hive_jars_present():
        raise InvalidConfigError(
            "config catalog.warehouse needs Spark's Hive jars (spark-hive, hive-metastore) "
            "in pyspark's jars folder; install pyspark from the package index, which ships "
            "them, or leave catalog.warehouse unset"
        )
    root = Path(warehouse.removeprefix("file:")).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(root),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true"
        ),
    }
