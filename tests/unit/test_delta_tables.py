"""Table arguments: a path or a catalog name, and a bare word only where a catalog is set."""

from __future__ import annotations

import pytest

from hermes_spark.delta.embedded import EmbeddedDeltaStore
from hermes_spark.delta.engine import bind_settings, bound_settings, get_store
from hermes_spark.delta.store import DeltaSettings, parse_table
from hermes_spark.errors import InvalidConfigError, InvalidInputError


@pytest.mark.parametrize(
    "text",
    ["/data/codes", "s3a://bucket/codes", "./codes", "out/codes", "dbfs:/x/codes", "C:/x"],
)
def test_paths(text: str) -> None:
    ref = parse_table(text)
    assert not ref.is_name
    assert ref.sql == f"delta.`{text}`"


@pytest.mark.parametrize("text", ["db.codes", "main.hermes.codes", "`my db`.codes"])
def test_dotted_names(text: str) -> None:
    ref = parse_table(text)
    assert ref.is_name and ref.sql == text


def test_bare_word_is_refused_without_a_catalog() -> None:
    with pytest.raises(InvalidInputError, match=r"bare word.*\./codes.*db\.codes"):
        parse_table("codes", catalog=False)


def test_bare_word_is_a_name_where_the_store_has_a_catalog() -> None:
    assert parse_table("codes", catalog=True).is_name
    with_catalog = EmbeddedDeltaStore(None, DeltaSettings(catalog_names=True))  # type: ignore[arg-type]
    assert with_catalog.ref("codes").is_name
    with pytest.raises(InvalidInputError):
        EmbeddedDeltaStore(None, DeltaSettings()).ref("codes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        parse_table("codes")


@pytest.mark.parametrize("text", ["a.b.c.d", "db..codes", "codes;drop", ""])
def test_malformed_arguments_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_table(text, catalog=True)


@pytest.mark.parametrize(
    ("change", "key"),
    [({"engine": "fast"}, "delta.engine"), ({"rows_per_file": -1}, "delta.rows_per_file"),
     ({"checkpoint_interval": 0}, "delta.checkpoint_interval")],
)  # fmt: skip
def test_bad_settings_are_config_errors_naming_the_key(change: dict, key: str) -> None:
    with pytest.raises(InvalidConfigError, match=key.replace(".", r"\.")):
        DeltaSettings(**change)


class _Session:
    """Stands in for a SparkSession: the binding is keyed by the session object."""


def test_settings_belong_to_one_session_not_the_process(monkeypatch) -> None:
    monkeypatch.delenv("HERMES_DELTA_ENGINE", raising=False)
    one, two = _Session(), _Session()
    bind_settings(one, DeltaSettings(engine="embedded", rows_per_file=7))  # type: ignore[arg-type]
    assert bound_settings(one).rows_per_file == 7
    assert bound_settings(two) == DeltaSettings()  # type: ignore[arg-type]
    assert get_store(one).options.rows_per_file == 7  # type: ignore[arg-type]
    passed = DeltaSettings(engine="embedded", rows_per_file=3)
    assert get_store(one, settings=passed).options is passed  # type: ignore[arg-type]
