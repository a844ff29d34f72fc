"""Config keys: one row-count key (``delta.rows_per_file``); the old name still reads."""

from __future__ import annotations

import logging

import pytest

from hermes_spark.config import AnnotateConfig, load_config
from hermes_spark.errors import InvalidConfigError


def test_deprecated_annotate_rows_per_file_becomes_delta_rows_per_file(tmp_path, caplog):
    path = tmp_path / "c.yaml"
    path.write_text("annotate:\n  files_per_chunk: 8\n  rows_per_file: 5000\n")
    with caplog.at_level(logging.WARNING, logger="hermes_spark.config"):
        cfg = load_config(path)
    assert cfg.delta.rows_per_file == 5000
    assert cfg.annotate.files_per_chunk == 8
    assert "annotate.rows_per_file is deprecated" in caplog.text
    assert "delta.rows_per_file" in caplog.text


def test_the_new_key_alone_sets_the_row_count_without_a_warning(tmp_path, caplog):
    path = tmp_path / "c.yaml"
    path.write_text("delta:\n  rows_per_file: 7000\n")
    with caplog.at_level(logging.WARNING, logger="hermes_spark.config"):
        assert load_config(path).delta.rows_per_file == 7000
    assert "deprecated" not in caplog.text
    assert not hasattr(AnnotateConfig(), "rows_per_file")  # one key, not two


def test_both_names_with_different_values_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("annotate:\n  rows_per_file: 10\ndelta:\n  rows_per_file: 20\n")
    with pytest.raises(InvalidConfigError, match=r"deprecated name of delta\.rows_per_file"):
        load_config(path)
    path.write_text("annotate:\n  rows_per_file: 20\ndelta:\n  rows_per_file: 20\n")
    assert load_config(path).delta.rows_per_file == 20
