"""The ``hermes`` console script: parse flags, load the config, call one library function.

Only this module (and ``jobs/``) prints for humans. Exit codes: 0 success, 2 bad input or
config (one paragraph, no traceback), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hermes_spark.config import HermesConfig, load_config
from hermes_spark.errors import HermesError, InvalidConfigError

log = logging.getLogger("hermes")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2 with usage; keep that code
        raise InvalidConfigError(f"{self.prog}: {message}")


def _corpus_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corpus")
    g.add_argument("--input", help="corpus path (file or directory) or Delta table")
    g.add_argument("--format", choices=["parquet", "json", "delta"])
    g.add_argument("--id-col")
    g.add_argument("--text-col")
    g.add_argument("--quality-col")
    g.add_argument("--tokens-col")
    g.add_argument("--embedding-col")
    g.add_argument("--keep-cols", help="comma-separated columns copied to the codes table")


def _model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="sentence-transformers name or local path")
    g.add_argument("--max-seq-length", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config (conf/*.yaml); flags override it")
    common.add_argument("--master", help="Spark master when no session is active")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser = _Parser(prog="hermes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add = sub.add_parser

    def sub_add(name: str, **kw: Any) -> argparse.ArgumentParser:
        return add(name, parents=[common], **kw)

    sub.add_parser = sub_add  # every subcommand takes the common flags

    p = sub.add_parser("fit", help="sample, embed, fit LST + RVQ, write the codebook artifact")
    _corpus_flags(p)
    _model_flags(p)
    p.add_argument("--out", help="codebook artifact directory")
    p.add_argument("--levels", help="level sizes, e.g. 64,64,32")
    p.add_argument("--sample-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--lst-dim", type=int)

    p = sub.add_parser("annotate", help="embed + LST + assign every document into CODES")
    _corpus_flags(p)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--codebook", help="codebook artifact directory")
    p.add_argument("--table", help="codes Delta table (path or catalog name)")
    p.add_argument("--mode", choices=["incremental", "full"])
    p.add_argument("--on-duplicate", choices=["keep-first", "error"])
    p.add_argument("--files-per-chunk", type=int)

    p = sub.add_parser("stats", help="bucket statistics for every level")
    p.add_argument("--table", help="codes Delta table")
    p.add_argument("--out", help="STATS table (STATS_levels is written beside it)")
    p.add_argument("--codebook-version", help="default: the latest version in the table")
    p.add_argument("--codebook", help="artifact, for exact level sizes (else inferred)")

    sub.add_parser("run", help="fit → annotate → stats on the bundled BBC News corpus")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    a = vars(args)
    return {
        "spark": {"master": a.get("master")},
        "corpus": {
            "input": a.get("input"),
            "format": a.get("format"),
            "id_col": a.get("id_col"),
            "text_col": a.get("text_col"),
            "quality_col": a.get("quality_col"),
            "tokens_col": a.get("tokens_col"),
            "embedding_col": a.get("embedding_col"),
            "keep_cols": a.get("keep_cols"),
        },
        "model": {
            "name": a.get("model"),
            "max_seq_length": a.get("max_seq_length"),
            "batch_size": a.get("batch_size"),
            "device": a.get("device"),
        },
        "fit": {
            "levels": a.get("levels"),
            "sample_size": a.get("sample_size"),
            "seed": a.get("seed"),
            "lst_dim": a.get("lst_dim"),
        },
        "annotate": {
            "mode": a.get("mode"),
            "on_duplicate": a.get("on_duplicate"),
            "files_per_chunk": a.get("files_per_chunk"),
        },
    }


def _need(value: str | None, flag: str) -> str:
    if not value:
        raise InvalidConfigError(f"missing {flag} (give the flag or set it in --config)")
    return value


def _spark(cfg: HermesConfig):
    from hermes_spark.session import get_spark

    return get_spark(cfg.spark.master, cfg.spark.conf)


def cmd_fit(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes fit``."""
    from hermes_spark.fit import fit

    out = _need(args.out or cfg.paths.codebook, "--out")
    _need(cfg.corpus.input, "--input")
    result = fit(_spark(cfg), cfg, out)
    _print_fit(result.report, out)


def cmd_annotate(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes annotate``."""
    from hermes_spark.annotate import annotate

    codebook = _need(args.codebook or cfg.paths.codebook, "--codebook")
    table = _need(args.table or cfg.paths.table, "--table")
    _need(cfg.corpus.input, "--input")
    report = annotate(_spark(cfg), cfg, codebook, table)
    _print_annotate(report)


def cmd_stats(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes stats``."""
    from hermes_spark.quantize.codebook import Codebook
    from hermes_spark.stats import compute_stats

    table = _need(args.table or cfg.paths.table, "--table")
    out = _need(args.out or cfg.paths.stats, "--out")
    sizes = list(Codebook.load(args.codebook).levels) if args.codebook else None
    result = compute_stats(_spark(cfg), table, out, args.codebook_version, sizes)
    _print_levels(result)


def cmd_run(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes run``: the whole pipeline on the bundled BBC News corpus."""
    from hermes_spark.pipeline import run_demo

    summary = run_demo(_spark(cfg), cfg)
    print(summary)


def _print_fit(report: dict[str, Any], out: str) -> None:
    print(f"codebook {report['codebook_version']} written to {out}")
    print(f"  sample: {report['sample_size']} docs, levels {report['levels']}, "
          f"seed {report['seed']}, quantizer fit {report['quantizer_fit_seconds']:.1f}s")
    for s in report["stages"]:
        print(f"  L{s['level']}: K={s['size']:<5} relative MSE {s['relative_mse']:.3f}  "
              f"perplexity {s['perplexity']:.1f}  dead {s['dead_codes']}  "
              f"imbalance {s['imbalance']:.2f}")
    print(json.dumps(report))


def _print_annotate(report: Any) -> None:
    print(f"annotated with codebook {report.codebook_version} into {report.table}")
    print(f"  chunks: {report.chunks_total} ({report.chunks_skipped} already committed)")
    print(f"  rows of this version in the table: {report.table_rows}")
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.reject_reasons.items())) or "none"
    print(f"  rejected this run: {report.rejects_written} ({reasons}) -> {report.rejects_table}")
    print(f"  took {report.seconds:.1f}s")


def _print_levels(result: Any) -> None:
    print(f"statistics of codebook {result.codebook_version}: {result.stats_table}, "
          f"{result.levels_table}")
    for r in result.levels:
        print(f"  L{r['level']}: {r['cells_nonempty']}/{r['cells_total']} cells non-empty, "
              f"entropy {r['entropy_bits']:.2f} bits, perplexity {r['perplexity']:.1f}, "
              f"max share {r['max_share']:.3f}, imbalance {r['imbalance']:.2f}")


COMMANDS: dict[str, Callable[[argparse.Namespace, HermesConfig], None]] = {
    "fit": cmd_fit,
    "annotate": cmd_annotate,
    "stats": cmd_stats,
    "run": cmd_run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        default_conf = "conf/demo.yaml" if args.command == "run" else None
        path = args.config or (default_conf if default_conf and Path(default_conf).exists()
                               else None)
        cfg = load_config(path).with_overrides(_overrides(args))
        COMMANDS[args.command](args, cfg)
        return 0
    except HermesError as exc:
        print(f"hermes: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hermes: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: say so, keep the trace for debugging
        log.debug("unexpected failure", exc_info=True)
        print(f"hermes: unexpected failure: {type(exc).__name__}: {exc}", file=sys.stderr)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
