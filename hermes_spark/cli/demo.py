"""``hermes run``: the demo chain on the bundled BBC News corpus, one real command per step.

fit → annotate → stats → plan (UniMax weights over 30% of the corpus's tokens, coverage
inside buckets) → sample → export → report. Each step is the command a user would type,
printed before it runs (copyable, with the real paths) and run in this process through
:func:`hermes_spark.cli.execute` on the same Spark session, so the demo exercises exactly
what the commands do. A failed step stops the chain with its exit code.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

from hermes_spark.config import HermesConfig
from hermes_spark.demo import DEMO_SHARE, DEMO_STAGE2, DEMO_WEIGHTS, DemoPaths, write_bbc_corpus
from hermes_spark.errors import HermesError


def demo_steps(paths: DemoPaths, common: Sequence[str] = ()) -> list[list[str]]:
    """The argv of every step (``common``: --config/--master/... given to ``hermes run``)."""
    c = list(common)
    corpus = ["--input", paths.corpus, "--input-format", "parquet"]
    return [
        ["fit", *c, *corpus, "--out", paths.codebook],
        ["annotate", *c, *corpus, "--keep-cols", "title,section", "--codebook",
         paths.codebook, "--table", paths.table],
        ["stats", *c, "--table", paths.table, "--out", paths.stats, "--codebook",
         paths.codebook],
        ["plan", *c, "--table", paths.table, "--stats", paths.stats, "--codebook",
         paths.codebook, "--budget-share", DEMO_SHARE, "--weights", DEMO_WEIGHTS,
         "--stage2", DEMO_STAGE2, "--out", paths.plan],
        ["sample", *c, "--table", paths.table, "--plan", paths.plan, "--out", paths.manifest],
        ["export", *c, "--manifest", paths.manifest, *corpus, "--out", paths.export,
         "--shards", "4", "--overwrite"],
        ["report", *c, "--stats", paths.stats, "--manifest", paths.manifest, "--codebook",
         paths.codebook, "--out", paths.report],
    ]  # fmt: skip


def run_demo(
    cfg: HermesConfig,
    common: Sequence[str] = (),
    *,
    out_dir: str = "out/demo",
    echo: Callable[[str], None] = print,
    max_docs: int | None = None,
) -> DemoPaths:
    """Write the demo corpus (the first ``max_docs`` articles when given) and run every
    step; return where the outputs are.

    Raises:
        HermesError: a step failed (with that step's exit code; its error was printed).
    """
    from hermes_spark.cli import execute

    out = Path(out_dir).resolve()
    paths = DemoPaths.under(out, cfg, write_bbc_corpus(out / "corpus", max_docs=max_docs))
    for argv in demo_steps(paths, common):
        echo("")
        echo("$ " + shlex.join(["hermes", *argv]))
        code = execute(argv)
        if code:
            error = HermesError(f"the demo stopped: `hermes {argv[0]}` exited with {code}")
            error.exit_code = code
            raise error
    return paths


__all__ = ["demo_steps", "run_demo"]
