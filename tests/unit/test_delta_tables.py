"""Table arguments: a path or a catalog name, and a bare word only where a catalog is set."""

from __future__ import annotations

import pytest

from hermes_spark.delta.store import configure, parse_table, settings
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


def test_bare_word_is_a_name_where_a_catalog_is_configured() -> None:
    assert parse_table("codes", catalog=True).is_name
    before = settings()
    try:
        configure(catalog_names=True)
        assert parse_table("codes").is_name
    finally:
        configure(catalog_names=before.catalog_names)
    with pytest.raises(InvalidInputError):
        parse_table("codes")


@pytest.mark.parametrize("text", ["a.b.c.d", "db..codes", "codes;drop", ""])
def test_malformed_arguments_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_table(text, catalog=True)


def test_unknown_engine_is_a_config_error() -> None:
    with pytest.raises(InvalidConfigError, match=r"delta\.engine"):
        configure(engine="fast")
    assert settings().engine in ("auto", "native", "embedded")
