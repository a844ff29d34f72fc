"""One canonical key per file: a local listing's literal path and Spark's encoded URIs."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from hermes_spark.paths import canonical_file_key

_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
)


@given(st.lists(_NAME, min_size=1, max_size=4))
def test_a_literal_local_path_and_its_spark_uris_share_one_key(parts):
    path = "/" + "/".join(parts)
    encoded = quote(path)  # how Spark writes _metadata.file_path / inputFiles()
    key = canonical_file_key(path)
    assert canonical_file_key(f"file:{encoded}") == key
    assert canonical_file_key(f"file://{encoded}") == key
    assert canonical_file_key(f"file:///{encoded.lstrip('/')}") == key


@given(st.lists(_NAME, min_size=1, max_size=3))
def test_s3_connector_schemes_name_one_object(parts):
    key = "/".join(parts)
    plain = canonical_file_key(f"s3://bucket/{key}")
    assert canonical_file_key(f"s3a://bucket/{quote(key)}") == canonical_file_key(
        f"S3N://bucket/{quote(key)}"
    )
    if "%" not in key:  # hermes' own object-store listings are not encoded
        assert canonical_file_key(f"s3a://bucket/{quote(key)}") == plain


def test_a_percent_in_a_local_file_name_is_a_character():
    assert canonical_file_key("/d/a%20b.parquet") == canonical_file_key("file:/d/a%2520b.parquet")
    assert canonical_file_key("/d/a%20b.parquet") != canonical_file_key("/d/a b.parquet")
