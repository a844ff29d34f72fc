"""Built-in document quality scorer from well-known web-text heuristics (executor side).

``quality_scores`` runs on a pandas batch (inside a ``pandas_udf`` or in a unit test);
all string work is vectorised with Arrow compute kernels, so it imports no Spark and
keeps no state. The score is deterministic and lies in ``[0, 1]``: the mean of 14
checks, each a smooth pass value ``sigmoid(margin / scale)`` (0.5 exactly at the threshold,
close to 1 well inside it, close to 0 well outside) or a plain 0/1, so that documents
are ranked finely enough for ``quality-top:p`` quantiles. A null text scores NaN.

Words are whitespace-separated tokens; lines are the non-blank lines after trimming.
A ratio over zero words or zero lines fails its check (0).

Gopher quality filter (Rae et al., 2021, app. A):

 1. 50 <= words <= 100,000 (scales 5 and 10,000)
 2. 3 <= mean word length <= 10 characters (scale 0.5)
 3. (``#`` + ``...``/``…``) per word <= 0.1 (scale 0.02)
 4. fraction of lines ending with an ellipsis <= 0.3 (scale 0.05)
 5. fraction of lines starting with a bullet (bullet, triangle, hollow or
    square bullet, ``-``, ``*``, en or em dash) <= 0.9 (scale 0.05)
 6. fraction of words with an alphabetic character >= 0.8 (scale 0.04)
 7. at least 2 of the stop words the/be/to/of/and/that/have/with (scale 0.5)

Gopher repetition filter:

 8. fraction of lines that repeat an earlier line of the document <= 0.3 (scale 0.05)

C4 (Raffel et al., 2020), as document-level 0/1 checks:

 9. no ``lorem ipsum`` (case-insensitive)
10. no curly brace ``{``
11. no line mentioning ``javascript`` or a cookie / privacy-policy / terms-of-use notice

FineWeb (Penedo et al., 2024):

12. fraction of lines ending in terminal punctuation (``. ! ? " '``, a closing
    curly quote or guillemet, or an ellipsis) >= 0.12 (scale 0.03)
13. fraction of short lines (< 30 characters) <= 0.67 (scale 0.05)
14. characters in repeated lines / all characters (newlines excluded) <= 0.01
    (scale 0.005)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hermes_spark.errors import InvalidInputError

N_CHECKS = 14
STOP_WORDS: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")
_BULLET = r"^[\-*\x{2022}\x{2023}\x{25e6}\x{25aa}\x{2013}\x{2014}]"
_ELLIPSIS_END = r"(\.\.\.|\x{2026})$"
_TERMINAL_END = r"[.!?\"'\x{201d}\x{2019}\x{00bb}\x{2026}]$"
_BOILERPLATE = (
    r"(?i)javascript|cookie policy|privacy policy|terms of use|uses cookies|use of cookies"
    r"|use cookies"
)
_SHORT_LINE = 30


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))
    return out


def _at_most(x: np.ndarray, thr: float, scale: float) -> np.ndarray:
    return _sigmoid((thr - x) / scale)


def _at_least(x: np.ndarray, thr: float, scale: float) -> np.ndarray:
    return _sigmoid((x - thr) / scale)


def _np(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    out: np.ndarray = values.to_numpy(zero_copy_only=False).astype(np.float64)
    return out


class _Segments:
    """Per-document sums over a flattened list array (documents are contiguous runs)."""

    def __init__(self, lists: pa.Array) -> None:
        self.lengths = pc.list_value_length(lists).fill_null(0).to_numpy().astype(np.int64)
        self.ends = np.cumsum(self.lengths)

    def sum(self, values: pa.Array | np.ndarray) -> np.ndarray:
        vals = values if isinstance(values, np.ndarray) else _np(values)
        csum = np.concatenate(([0.0], np.cumsum(vals, dtype=np.float64)))
        sums: np.ndarray = csum[self.ends] - csum[self.ends - self.lengths]
        return sums

    def parents(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.lengths)), self.lengths)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
    return out


def _count(arr: pa.Array, pattern: str) -> np.ndarray:
    return _np(pc.count_substring_regex(arr, pattern).fill_null(0))


def _word_checks(arr: pa.Array) -> list[np.ndarray]:
    # Trim first and drop empty tokens: pyarrow 26 sometimes emits a trailing "" token
    # for text ending in whitespace (depending on the memory it gets), which made the
    # word count of one document depend on its batch.
    split = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(arr))
    words = pc.list_flatten(split)
    seg = _Segments(split)
    n_words = seg.sum(_np(pc.utf8_length(words)) > 0)
    has_words = n_words > 0
    mean_len = _ratio(seg.sum(pc.utf8_length(words)), n_words)
    alpha = seg.sum(pc.match_substring_regex(words, r"\pL"))
    stops = _count(arr, r"(?i)\b(" + "|".join(STOP_WORDS) + r")\b")
    symbols = _np(pc.count_substring(arr, "#").fill_null(0)) + _count(arr, r"\.\.\.|\x{2026}")
    return [
        np.minimum(_at_least(n_words, 49.5, 5.0), _at_most(n_words, 100_000.5, 10_000.0)),
        np.minimum(_at_least(mean_len, 3.0, 0.5), _at_most(mean_len, 10.0, 0.5)) * has_words,
        _at_most(_ratio(symbols, n_words), 0.1, 0.02) * has_words,
        _at_least(_ratio(alpha, n_words), 0.8, 0.04) * has_words,
        _at_least(stops, 1.5, 0.5),
    ]


def _line_checks(arr: pa.Array) -> list[np.ndarray]:
    split = pc.split_pattern(arr, "\n")
    lines = pc.utf8_trim_whitespace(pc.list_flatten(split))
    seg = _Segments(split)
    length = _np(pc.utf8_length(lines))
    nonblank = length > 0
    n_lines = seg.sum(nonblank)
    has_lines = n_lines > 0

    def frac(mask: pa.Array | np.ndarray) -> np.ndarray:  # masks are False on blank lines
        return _ratio(seg.sum(mask), n_lines)

    # A line repeats when the same (document, line text) pair was seen earlier.
    codes = pc.dictionary_encode(lines)
    key = seg.parents() * len(codes.dictionary) + codes.indices.to_numpy()
    repeated = pd.Series(key).duplicated().to_numpy() & nonblank
    text_chars = _np(pc.utf8_length(arr).fill_null(0)) - _np(
        pc.count_substring(arr, "\n").fill_null(0)
    )
    boiler = seg.sum(pc.match_substring_regex(lines, _BOILERPLATE))
    return [
        _at_most(frac(pc.match_substring_regex(lines, _ELLIPSIS_END)), 0.3, 0.05) * has_lines,
        _at_most(frac(pc.match_substring_regex(lines, _BULLET)), 0.9, 0.05) * has_lines,
        _at_most(frac(repeated), 0.3, 0.05) * has_lines,
        (boiler == 0).astype(np.float64),
        _at_least(frac(pc.match_substring_regex(lines, _TERMINAL_END)), 0.12, 0.03) * has_lines,
        _at_most(frac(nonblank & (length < _SHORT_LINE)), 0.67, 0.05) * has_lines,
        _at_most(_ratio(seg.sum(repeated * length), text_chars), 0.01, 0.005) * has_lines,
    ]


def quality_scores(texts: pd.Series) -> pd.Series:
    """Score each text in ``[0, 1]`` (higher = cleaner prose); NaN where the text is null.

    Returns a float64 series on the index of ``texts``, named ``quality``.

    Raises:
        InvalidInputError: ``texts`` holds values that are not strings.
    """
    try:
        arr = pa.array(texts, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInputError(f"quality scorer needs string texts: {exc}") from exc
    n = len(arr)
    doc_checks = [
        pc.invert(pc.match_substring(arr, "lorem ipsum", ignore_case=True)),
        pc.invert(pc.match_substring(arr, "{")),
    ]
    checks = _word_checks(arr) + _line_checks(arr)
    checks += [_np(c.fill_null(False)) for c in doc_checks]
    score = np.mean(np.vstack(checks), axis=0) if n else np.zeros(0)
    score[arr.is_null().to_numpy(zero_copy_only=False)] = np.nan
    return pd.Series(score, index=texts.index, name="quality", dtype=np.float64)
