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

    p = sub.add_parser("versions", help="list the codebook versions of a codes table")
    p.add_argument("--table", help="codes Delta table")
    p.add_argument("--drop", metavar="VERSION", help="delete every row of this version")

    p = sub.add_parser("vacuum", help="remove files no snapshot references (killed runs)")
    p.add_argument("--table", help="codes Delta table (its _rejects table too)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")

    p = sub.add_parser("evaluate", help="per-level metrics vs k-means baselines and labels")
    _corpus_flags(p)
    p.add_argument("--table", help="codes Delta table")
    p.add_argument("--codebook", help="the artifact that produced the table's rows")
    p.add_argument("--label-col", help="corpus column with reference labels (NMI/ARI)")
    p.add_argument("--sample-size", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--codebook-version", help="default: the latest version in the table")
    p.add_argument("--out", help="write the JSON report here too")

    p = sub.add_parser(
        "plan",
        help="compute a two-stage sample plan from statistics (seconds; no document scan)",
        description="Compute the Stage-1/Stage-2 allocation (targets, caps, pools, expected "
        "repetition) from the STATS table, or from one aggregation over --table. "
        "quality-top:p also reads --table for its exact per-bucket quantiles. Prints the "
        "plan; --out writes it for `hermes sample --plan`; --weights-out writes the target "
        "shares as DoReMi JSON (doremi_weights.json) and RegMix CSV (regmix_mixture.csv).",
    )
    p.add_argument("--table", help="codes Delta table (needed for quality-top, or no --stats)")
    p.add_argument("--out", help="plan JSON file to write (input of hermes sample --plan)")
    _sample_flags(p)

    p = sub.add_parser(
        "sample",
        help="two-stage weighted sample -> MANIFEST table + mixture report",
        description="Execute a plan (--plan) or compute one from the flags first, write the "
        "MANIFEST Delta table (doc_id, stage1_bucket, stage2_bucket, repeats, tokens; "
        "tokens = n_tokens per copy) and the mixture report MANIFEST_report.json, and print "
        "the report. --weights-out also writes DoReMi/RegMix weight files.",
    )
    p.add_argument("--table", help="codes Delta table")
    p.add_argument("--out", help="MANIFEST Delta table (path or catalog name)")
    p.add_argument("--plan", help="plan JSON from hermes plan --out (else planned here)")
    p.add_argument("--report", help="report JSON path (default: MANIFEST_report.json)")
    _sample_flags(p)

    p = sub.add_parser(
        "export",
        help="materialize the sampled training data as N shuffled shards",
        description="Join MANIFEST back to the corpus on doc_id, expand repeats, shuffle "
        "deterministically by seed into N Parquet or JSONL shards, and write mixture.json, "
        "doremi_weights.json and regmix_mixture.csv (realized Stage-1 token shares). "
        "--per-bucket writes N shards per Stage-1 bucket under bucket-<key>/ and "
        "megatron_blend.txt, a Megatron-LM --data-path blend whose prefixes are "
        "bucket-<key>/megatron_text_document: run Megatron's tools/preprocess_data.py on each "
        "folder with --output-prefix <DIR>/bucket-<key>/megatron.",
    )
    p.add_argument("--manifest", help="MANIFEST table written by hermes sample")
    p.add_argument("--out", help="output directory (new or empty)")
    p.add_argument(
        "--format",
        dest="output_format",
        choices=["parquet", "jsonl"],
        help="output format (default parquet); the corpus format is --input-format",
    )
    p.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="number of output shards (default: one per ≈1 GB of text, 4 bytes per token)",
    )
    p.add_argument(
        "--seed",
        type=int,
        dest="export_seed",
        metavar="S",
        help="shuffle seed (default: sample.seed of the config, 0)",
    )
    p.add_argument(
        "--per-bucket", action="store_true", help="N shards per Stage-1 bucket + megatron_blend.txt"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    g = p.add_argument_group("corpus")
    g.add_argument("--input", help="the corpus that was annotated")
    g.add_argument("--input-format", dest="format", choices=["parquet", "json", "delta"])
    g.add_argument("--id-col")
    g.add_argument("--text-col")
    g.add_argument(
        "--keep-cols",
        help="export only the text and these columns (default: all but --embedding-col)",
    )
    g.add_argument("--embedding-col", help="column left out of the export")

    p = sub.add_parser(
        "mixtures",
        help="N candidate Stage-1 weight files drawn around the token prior (Dirichlet)",
        description="Draw N mixtures from Dirichlet(concentration · m · prior), prior ∝ "
        "tokens^temperature over the non-empty level-w buckets of STATS; writes "
        "mixture-0000.json ... (each usable as --weights of plan/sample) and all of them as "
        "regmix_mixtures.csv.",
    )
    p.add_argument("--dirichlet", type=int, metavar="N", help="how many weight files")
    p.add_argument(
        "--quadmix",
        type=int,
        metavar="N",
        help="also write N random quadmix parameter files (threshold, steepness per "
        "level-w bucket) for --stage2 quadmix:FILE",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="prior ∝ tokens^τ")
    p.add_argument(
        "--concentration",
        type=float,
        default=1.0,
        help="mean Dirichlet parameter per bucket (larger = closer to the prior)",
    )
    p.add_argument("--seed", type=int, dest="mixture_seed", default=0, metavar="S")
    p.add_argument("--stats", help="STATS table")
    p.add_argument("--out", help="output directory")
    p.add_argument("--weights-level", type=int, default=1)
    p.add_argument("--codebook-version", help="default: the only version in STATS")
    p.add_argument("--codebook", help="artifact, for exact level sizes (else inferred)")

    p = sub.add_parser(
        "rescore",
        help="recompute the quality column from the corpus text (no re-embedding)",
        description="Score the corpus text joined on doc_id with the built-in quality scorer "
        "and rewrite the quality of one codebook version of the codes table (one commit).",
    )
    p.add_argument("--table", help="codes Delta table")
    p.add_argument("--codebook-version", help="default: the latest version in the table")
    g = p.add_argument_group("corpus")
    g.add_argument("--input", help="the corpus that was annotated")
    g.add_argument("--format", choices=["parquet", "json", "delta"])
    g.add_argument("--id-col")
    g.add_argument("--text-col")
    return parser


def _sample_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sample plan")
    g.add_argument("--budget-tokens", type=float, metavar="N", help="budget B in tokens")
    g.add_argument(
        "--weights",
        metavar="W",
        help="Stage-1 weights: a JSON or CSV file keyed by bucket code ('12', '12.3', "
        "'12.3.7'; DoReMi train_domain_weights JSON works) or a rule: proportional, uniform, "
        "temperature:TAU, unimax, or target:CORPUS (the cell distribution of target texts "
        "coded with --codebook, smoothed, with a share of the corpus prior)",
    )
    g.add_argument(
        "--stage2",
        metavar="RULE",
        help="random | coverage | quality-top:P | quadmix[:PARAMS.json] (expected repeats "
        "min(E, scale·sigmoid(steepness·(q - threshold))) of the quality percentile q)",
    )
    g.add_argument(
        "--quality-cols",
        metavar="SPEC",
        help="quality of quality-top from several codes columns (annotate --keep-cols): "
        "'edu:0.6,dclm:0.4' merges their percentile ranks within each Stage-2 bucket; "
        "'edu>=0.3' filters first (default: the quality column)",
    )
    g.add_argument(
        "--target-smoothing",
        type=float,
        metavar="A",
        help="--weights target:PATH: add A to every cell's target count (default 1)",
    )
    g.add_argument(
        "--target-prior-mix",
        type=float,
        metavar="B",
        help="--weights target:PATH: mix in B of the corpus token prior (default 0.1)",
    )
    g.add_argument(
        "--target-embedding-col",
        metavar="COL",
        help="--weights target:PATH: vectors of the target texts (default: embed them "
        "with the artifact's model)",
    )
    g.add_argument("--weights-level", type=int, metavar="W", help="Stage-1 level (default 1)")
    g.add_argument("--stage2-level", type=int, metavar="S", help="Stage-2 level > W (default W+1)")
    g.add_argument(
        "--max-epochs", type=float, metavar="E", help="cap per bucket: E × its tokens (default 4)"
    )
    g.add_argument(
        "--seed",
        type=int,
        dest="sample_seed",
        metavar="S",
        help="seed of u = hash(doc_id, seed) (default 0)",
    )
    g.add_argument("--stats", help="STATS table: plan from statistics only")
    g.add_argument("--codebook-version", help="default: the latest (or the one in STATS)")
    g.add_argument("--codebook", help="artifact, for exact level sizes (else inferred)")
    g.add_argument(
        "--allow-shortfall",
        action="store_true",
        help="accept a budget above E × all tokens (the rest is reported unmet)",
    )
    g.add_argument(
        "--weights-out",
        metavar="DIR",
        help="write doremi_weights.json + regmix_mixture.csv of the target shares",
    )


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


def cmd_versions(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes versions [--drop V]``."""
    from hermes_spark.versions import drop_version, list_versions

    table = _need(args.table or cfg.paths.table, "--table")
    spark = _spark(cfg)
    if args.drop:
        deleted = drop_version(spark, table, args.drop)
        print(f"dropped {deleted} rows of codebook version {args.drop} from {table}")
    for v in list_versions(spark, table):
        print(
            f"{v.codebook_version}  rows {v.rows:>12}  rejects {v.rejects:>8}  "
            f"annotated {v.first_annotated} .. {v.last_annotated}"
        )


def cmd_vacuum(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes vacuum``."""
    from hermes_spark.versions import vacuum

    table = _need(args.table or cfg.paths.table, "--table")
    removed = vacuum(_spark(cfg), table, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} unreferenced files under {table}")


def cmd_evaluate(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes evaluate``."""
    from hermes_spark.evaluate import evaluate

    table = _need(args.table or cfg.paths.table, "--table")
    codebook = _need(args.codebook or cfg.paths.codebook, "--codebook")
    _need(cfg.corpus.input, "--input")
    report = evaluate(
        _spark(cfg),
        cfg,
        table,
        codebook,
        args.label_col,
        args.sample_size,
        args.seed,
        args.codebook_version,
    )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    print(
        f"evaluation of codebook {report['codebook_version']} on "
        f"{report['sample_size']} sampled documents"
    )
    for row in report["levels"]:
        for name in ("hermes", "kmeans", "bisecting_kmeans"):
            m = row[name]
            extra = f"  NMI {m['nmi']:.3f}  ARI {m['ari']:.3f}" if "nmi" in m else ""
            print(
                f"  L{row['level']} {name:<17} cells {m['cells_used']:>6}  "
                f"relative MSE {m['relative_mse']:.3f}{extra}"
            )
    print(json.dumps(report))


def cmd_run(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes run``: the whole pipeline on the bundled BBC News corpus."""
    from hermes_spark.pipeline import run_demo

    summary = run_demo(_spark(cfg), cfg)
    print(summary)


def _sample_settings(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    values = {
        "budget_tokens": args.budget_tokens,
        "weights": args.weights,
        "stage2": args.stage2,
        "weights_level": args.weights_level,
        "stage2_level": args.stage2_level,
        "max_epochs": args.max_epochs,
        "seed": args.sample_seed,
        "quality_cols": args.quality_cols,
        "target_smoothing": args.target_smoothing,
        "target_prior_mix": args.target_prior_mix,
        "target_embedding_col": args.target_embedding_col,
    }
    return cfg.with_overrides({"sample": values}).sample


def _code_levels(args: argparse.Namespace) -> tuple[int, ...] | None:
    if not getattr(args, "codebook", None):
        return None
    from hermes_spark.quantize.codebook import Codebook

    return tuple(Codebook.load(args.codebook).levels)


def cmd_plan(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes plan``: the allocation from statistics, printed and optionally saved."""
    from hermes_spark.export import write_weight_files
    from hermes_spark.sampling.planner import compute_plan
    from hermes_spark.sampling.report import format_plan

    plan = compute_plan(
        _spark(cfg),
        _sample_settings(args, cfg),
        table=args.table or cfg.paths.table,
        stats=args.stats or cfg.paths.stats,
        version=args.codebook_version,
        levels=_code_levels(args),
        allow_shortfall=args.allow_shortfall,
        codebook=args.codebook,
    )
    print(format_plan(plan))
    if args.out:
        plan.save(args.out)
        print(f"plan written to {args.out}")
    if args.weights_out:
        for path in write_weight_files(args.weights_out, plan.target_shares()):
            print(f"weights written to {path}")


def cmd_sample(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes sample``: execute a plan (computed first unless --plan) into MANIFEST."""
    from hermes_spark.errors import VersionMismatchError
    from hermes_spark.export import write_weight_files
    from hermes_spark.sampling.plan import SamplePlan
    from hermes_spark.sampling.planner import compute_plan
    from hermes_spark.sampling.report import format_report
    from hermes_spark.sampling.select import run_sample

    table = _need(args.table or cfg.paths.table, "--table")
    out = _need(args.out or cfg.paths.manifest, "--out")
    spark = _spark(cfg)
    if args.plan:
        fixed = {
            "--budget-tokens": args.budget_tokens,
            "--weights": args.weights,
            "--stage2": args.stage2,
            "--weights-level": args.weights_level,
            "--stage2-level": args.stage2_level,
            "--max-epochs": args.max_epochs,
            "--quality-cols": args.quality_cols,
            "--stats": args.stats,
            "--codebook": args.codebook,
        }
        given = [flag for flag, value in fixed.items() if value is not None]
        if given:
            raise InvalidConfigError(
                f"--plan fixes the allocation; drop {', '.join(given)} or re-run hermes plan"
            )
        plan = SamplePlan.load(args.plan)
        if args.sample_seed is not None:
            plan = plan.with_seed(args.sample_seed)
        if args.codebook_version and args.codebook_version != plan.codebook_version:
            raise VersionMismatchError(
                f"the plan is for codebook version {plan.codebook_version}, not "
                f"{args.codebook_version}"
            )
    else:
        plan = compute_plan(
            spark,
            _sample_settings(args, cfg),
            table=table,
            stats=args.stats,
            version=args.codebook_version,
            levels=_code_levels(args),
            allow_shortfall=args.allow_shortfall,
            codebook=args.codebook,
        )
    result = run_sample(spark, table, out, plan, report_path=args.report)
    print(format_report(result.report))
    print(f"manifest written to {out}; report {result.report_path} ({result.seconds:.1f}s)")
    if args.weights_out:
        for path in write_weight_files(args.weights_out, plan.target_shares()):
            print(f"weights written to {path}")


def cmd_export(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes export``: the sampled training data as shuffled shards."""
    from hermes_spark.export import export_training_data

    manifest = _need(args.manifest or cfg.paths.manifest, "--manifest")
    out = _need(args.out or cfg.paths.export, "--out")
    _need(cfg.corpus.input, "--input")
    result = export_training_data(
        _spark(cfg),
        manifest,
        cfg.corpus,
        out,
        fmt=args.output_format or "parquet",
        shards=args.shards,
        seed=args.export_seed if args.export_seed is not None else cfg.sample.seed,
        per_bucket=args.per_bucket,
        overwrite=args.overwrite,
    )
    print(
        f"exported {result.rows} rows ({result.docs} documents, {result.tokens} tokens) "
        f"into {len(result.files)} files under {out} ({result.seconds:.1f}s)"
    )
    for path in result.extra_files:
        print(f"  {path}")


def cmd_mixtures(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes mixtures``: candidate Stage-1 weight files around the token prior."""
    from hermes_spark.export import write_candidate_mixtures

    stats = _need(args.stats or cfg.paths.stats, "--stats")
    out = _need(args.out, "--out")
    if not args.dirichlet and not args.quadmix:
        raise InvalidConfigError("hermes mixtures needs --dirichlet N and/or --quadmix N")
    if args.quadmix:
        from hermes_spark.export import write_candidate_quadmix

        made = write_candidate_quadmix(
            _spark(cfg),
            stats,
            out,
            args.quadmix,
            level=args.weights_level,
            seed=args.mixture_seed,
            version=args.codebook_version,
        )
        print(f"{len(made)} quadmix parameter files written to {out}")
        if not args.dirichlet:
            return
    written = write_candidate_mixtures(
        _spark(cfg),
        stats,
        out,
        args.dirichlet,
        level=args.weights_level,
        temperature=args.temperature,
        concentration=args.concentration,
        seed=args.mixture_seed,
        version=args.codebook_version,
        levels=_code_levels(args),
    )
    print(f"{args.dirichlet} mixtures written to {out} (+ {Path(written[-1]).name})")


def cmd_rescore(args: argparse.Namespace, cfg: HermesConfig) -> None:
    """``hermes rescore``: recompute quality from the corpus text, no re-embedding."""
    from hermes_spark.rescore import rescore_quality

    table = _need(args.table or cfg.paths.table, "--table")
    _need(cfg.corpus.input, "--input")
    result = rescore_quality(_spark(cfg), table, cfg.corpus, args.codebook_version)
    print(
        f"rescored {result.rescored} of {result.rows} rows of codebook "
        f"{result.codebook_version} in {result.table} "
        f"({result.not_in_corpus} not in the corpus kept their quality)"
    )


def _print_fit(report: dict[str, Any], out: str) -> None:
    print(f"codebook {report['codebook_version']} written to {out}")
    print(
        f"  sample: {report['sample_size']} docs, levels {report['levels']}, "
        f"seed {report['seed']}, quantizer fit {report['quantizer_fit_seconds']:.1f}s"
    )
    for s in report["stages"]:
        print(
            f"  L{s['level']}: K={s['size']:<5} relative MSE {s['relative_mse']:.3f}  "
            f"perplexity {s['perplexity']:.1f}  dead {s['dead_codes']}  "
            f"imbalance {s['imbalance']:.2f}"
        )
    print(json.dumps(report))


def _print_annotate(report: Any) -> None:
    print(f"annotated with codebook {report.codebook_version} into {report.table}")
    print(f"  chunks: {report.chunks_total} ({report.chunks_skipped} already committed)")
    print(f"  rows of this version in the table: {report.table_rows}")
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.reject_reasons.items())) or "none"
    print(f"  rejected this run: {report.rejects_written} ({reasons}) -> {report.rejects_table}")
    print(f"  took {report.seconds:.1f}s")


def _print_levels(result: Any) -> None:
    print(
        f"statistics of codebook {result.codebook_version}: {result.stats_table}, "
        f"{result.levels_table}"
    )
    for r in result.levels:
        print(
            f"  L{r['level']}: {r['cells_nonempty']}/{r['cells_total']} cells non-empty, "
            f"entropy {r['entropy_bits']:.2f} bits, perplexity {r['perplexity']:.1f}, "
            f"max share {r['max_share']:.3f}, imbalance {r['imbalance']:.2f}"
        )


COMMANDS: dict[str, Callable[[argparse.Namespace, HermesConfig], None]] = {
    "fit": cmd_fit,
    "annotate": cmd_annotate,
    "stats": cmd_stats,
    "run": cmd_run,
    "plan": cmd_plan,
    "sample": cmd_sample,
    "export": cmd_export,
    "mixtures": cmd_mixtures,
    "rescore": cmd_rescore,
    "versions": cmd_versions,
    "vacuum": cmd_vacuum,
    "evaluate": cmd_evaluate,
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
        path = args.config or (
            default_conf if default_conf and Path(default_conf).exists() else None
        )
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
