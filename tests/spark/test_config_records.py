"""A config converts once into the library's records, and the tasks honour it without any
process-wide switch: the annotate task a notebook calls writes with ``cfg.delta``."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from hermes_spark.config import CorpusConfig, DeltaConfig, HermesConfig
from hermes_spark.delta import bound_settings
from hermes_spark.tasks.annotate import annotate

pytestmark = pytest.mark.spark

ROWS_PER_FILE = 250


def test_annotate_task_writes_with_the_configs_delta_section(spark, shared_codes, tmp_path):
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=shared_codes["corpus"], embedding_col="emb", tokens_col="tokens",
            quality_col="quality",
        ),
        delta=DeltaConfig(engine="embedded", rows_per_file=ROWS_PER_FILE),
    )  # fmt: skip
    # nothing is bound to the session: only the config says 250 rows a file
    assert bound_settings(spark).rows_per_file != ROWS_PER_FILE
    table = str(tmp_path / "codes")
    annotate(spark, cfg, shared_codes["cb"], table)

    dt = DeltaTable(table)
    files = pa.table(dt.get_add_actions(flatten=True)).to_pandas()
    codes = dt.to_pandas()
    assert len(codes) == files["num_records"].sum() > 2 * ROWS_PER_FILE
    assert files["num_records"].max() <= ROWS_PER_FILE
