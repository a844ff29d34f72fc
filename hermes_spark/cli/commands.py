"""The ``hermes`` subcommands: each reads its config, calls one library function, prints.

Only the CLI (and ``jobs/``) print for humans; the functions called here log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from hermes_spark import io
from hermes_spark.config import HermesConfig
from hermes_spark.errors import InvalidConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from hermes_spark.delta import DeltaStore


def _need(value: Any, flag: str) -> Any:
    if not value:
        raise InvalidConfigError(f"missing {flag} (give the flag or set it in --config)")
    return value


def _spark(cfg: HermesConfig) -> SparkSession:
    """The session for a command; a person at a terminal also gets Spark's progress bar
    (when hermes builds the session: an attached one keeps its own settings)."""
    from hermes_spark.delta import bind_settings
    from hermes_spark.session import get_spark

    conf = dict(cfg.spark.conf)
    if cfg.catalog.warehouse:
        from hermes_spark.catalog import local_catalog_conf

        conf = {**local_catalog_conf(cfg.catalog.warehouse), **conf}  # spark.conf wins
    if sys.stderr.isatty() and not cfg.spark.remote:
        conf.setdefault("spark.ui.showConsoleProgress", "true")
    spark = get_spark(
        None,
        conf,
        default_master=cfg.spark.master or "local[*]",
        delta_engine=cfg.delta.engine,
        remote=cfg.spark.remote,
        quiet=not logging.getLogger().isEnabledFor(logging.DEBUG),  # -v: Spark's own logs
    )
    bind_settings(spark, cfg.delta)  # every table this command touches uses cfg.delta
    return spark


def _store(cfg: HermesConfig, spark: SparkSession | None = None) -> DeltaStore:
    """The command's Delta store (``cfg.delta`` on the command's session): built once
    per command and passed to every task it calls."""
    from hermes_spark.delta import get_store

    return get_store(spark or _spark(cfg), settings=cfg.delta)


def cmd_fit(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes fit``."""
    from hermes_spark.tasks.fit import fit

    out = _need(cfg.paths.codebook, "--out")
    result = fit(_spark(cfg), cfg, out)
    _print_fit(result.report, out)
    return result.report


def cmd_annotate(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes annotate``."""
    from hermes_spark.tasks.annotate import annotate

    codebook = _need(cfg.paths.codebook, "--codebook")
    table = _need(cfg.paths.table, "--table")
    spark = _spark(cfg)
    store = _store(cfg, spark)
    if args.dry_run:
        from hermes_spark.tasks.dry_run import dry_run

        planned = dry_run(spark, cfg, codebook, table, store=store)
        for line in planned.lines():
            print(line)
        return planned
    report = annotate(
        spark, cfg, codebook, table, store_embeddings=args.store_embeddings, store=store
    )
    _print_annotate(report)
    return report


def cmd_stats(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes stats``."""
    from hermes_spark.tasks.stats import compute_stats

    table = _need(cfg.paths.table, "--table")
    out = _need(cfg.paths.stats, "--out")
    levels = _code_levels(args, cfg)
    sizes = list(levels) if levels else None
    spark = _spark(cfg)
    store = _store(cfg, spark)
    result = compute_stats(spark, table, out, args.codebook_version, sizes, store=store)
    _print_levels(result)
    if args.report_page:
        _write_page(
            spark,
            store,
            args.report_page,
            stats=out,
            codebook=args.codebook,
            codebook_version=result.codebook_version,
        )
    return result


def _write_page(spark: Any, store: DeltaStore, page: str, **inputs: Any) -> None:
    """The ``--report PAGE.html`` of stats, sample and evaluate (what hermes report does)."""
    from hermes_spark.tasks.report import report_from_tables

    stats = inputs.pop("stats", None)
    path = report_from_tables(spark, stats, page, **inputs, store=store)
    print(f"report page written to {path}")


def cmd_versions(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes versions [--drop V]``."""
    from hermes_spark.versions import drop_version, list_versions

    table = _need(cfg.paths.table, "--table")
    spark = _spark(cfg)
    store = _store(cfg, spark)
    deleted = None
    if args.drop:
        deleted = drop_version(spark, table, args.drop, store=store)
        print(f"dropped {deleted} rows of codebook version {args.drop} from {table}")
    versions = list_versions(spark, table, store=store)
    for v in versions:
        print(
            f"{v.codebook_version}  rows {v.rows:>12}  rejects {v.rejects:>8}  "
            f"annotated {v.first_annotated} .. {v.last_annotated}  "
            f"{'MIXED devices' if v.mixed_devices else 'device'} {'+'.join(v.devices) or '?'}"
        )
    return {"table": table, "dropped_rows": deleted, "versions": versions}


def cmd_crosswalk(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes crosswalk``."""
    from hermes_spark.tasks.crosswalk import write_crosswalk

    table = _need(cfg.paths.table, "--table")
    spark = _spark(cfg)
    result = write_crosswalk(
        spark,
        table,
        _need(args.from_version, "--from"),
        _need(args.to_version, "--to"),
        _need(args.out, "--out"),
        args.level,
        store=_store(cfg, spark),
    )
    s = result.summary
    print(
        f"crosswalk {s['from_version']} -> {s['to_version']}: {s['docs_both']} documents "
        f"under both, {s['docs_only_from']} only {s['from_version']}, "
        f"{s['docs_only_to']} only {s['to_version']}"
    )
    for lv in s["levels"]:
        print(
            f"  level {lv['level']}: NMI {lv['nmi']:.3f}  ARI {lv['ari']:.3f}  "
            f"best-match token share {lv['best_match_share']:.3f} "
            f"(min {lv['best_match_share_min']:.3f})"
        )
    print(f"table {result.table}, summary {result.summary_path}")
    return {"table": result.table, "summary_path": result.summary_path, "summary": s}


def cmd_vacuum(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes vacuum``."""
    from hermes_spark.versions import vacuum

    table = _need(cfg.paths.table, "--table")
    spark = _spark(cfg)
    removed = vacuum(spark, table, dry_run=args.dry_run, store=_store(cfg, spark))
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} unreferenced files under {table}")
    return {"table": table, "dry_run": args.dry_run, "files": removed}


def cmd_optimize(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes optimize``."""
    from hermes_spark.tasks.optimize import optimize_codes

    table = _need(cfg.paths.table, "--table")
    result = optimize_codes(_store(cfg), table)
    if result.version_after == result.version_before:
        print(f"{table} is already clustered (version {result.version_after})")
    else:
        print(f"clustered {table} by bucket1, bucket2 (version {result.version_after})")
    return result


def cmd_evaluate(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes evaluate``: held-out metrics per level vs KMeans-family baselines."""
    from hermes_spark.evaluate import evaluate, summary_lines, write_report

    labels = [c.strip() for c in (args.label_cols or "").split(",") if c.strip()]
    _guard_file_outputs(args, "evaluate", cfg)
    spark = _spark(cfg)
    store = _store(cfg, spark)
    report = evaluate(
        spark,
        cfg,
        _need(cfg.paths.table, "--table"),
        _need(cfg.paths.codebook, "--codebook"),
        labels,
        args.sample_size,
        args.seed,
        args.codebook_version,
        embeddings_table=args.embeddings_table,
        baseline_sample=args.baseline_sample,
        baselines=[b.strip() for b in args.baselines.split(",") if b.strip()],
        in_sample=args.in_sample,
        store=store,
    )
    for line in summary_lines(report):
        print(line)
    if args.out:
        js, md = write_report(report, args.out, storage=_storage(spark))
        print(f"report: {js} and {md}")
    if args.report_page:
        _write_page(
            spark,
            store,
            args.report_page,
            evaluation=dict(report),
            codebook=cfg.paths.codebook,
            codebook_version=report.get("codebook_version"),
        )
    return report


def cmd_run(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes run``: the demo chain on the bundled BBC News corpus, then a summary."""
    from hermes_spark.cli.demo import run_demo
    from hermes_spark.demo import demo_summary

    common = ["--config", args.config or "demo"]
    if args.master:
        common += ["--master", args.master]
    if args.remote:
        common += ["--remote", args.remote]
    if args.verbose:
        common.append("--verbose")
    paths = run_demo(cfg, common)
    spark = _spark(cfg)
    summary = demo_summary(spark, paths, store=_store(cfg, spark))
    print(summary)
    return {"paths": paths, "summary": summary}


def cmd_setup_jars(args: argparse.Namespace, cfg: HermesConfig) -> dict[str, Any]:
    """``hermes-spark setup-jars``: fetch the pinned jars into the user cache (no Spark)."""
    from pathlib import Path

    from hermes_spark.jars import ROLES, fetch, search_dirs, user_cache_dir

    roles = ROLES if args.role == "all" else (args.role,)
    dest = Path(args.jars_dir) if args.jars_dir else user_cache_dir()
    paths = fetch(roles, dest, args.repo)
    print(f"{len(paths)} pinned jars ({', '.join(roles)}) checked in {dest}")
    if dest.resolve() not in [d.resolve() for d in search_dirs()]:
        print(f"sessions load them from there when HERMES_JARS_DIR={dest} is set")
    return {"dir": str(dest), "roles": list(roles), "jars": [str(p) for p in paths]}


def _sample_settings(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    values = {
        "budget_tokens": args.budget_tokens,
        "budget_share": args.budget_share,
        "weights": args.weights,
        "weights_version": args.weights_version,
        "stage2": args.stage2,
        "weights_level": args.weights_level,
        "stage2_level": args.stage2_level,
        "max_epochs": args.max_epochs,
        "seed": args.sample_seed,
        "quality_cols": args.quality_cols,
        "target_smoothing": args.target_smoothing,
        "target_prior_mix": args.target_prior_mix,
        "target_embedding_col": args.target_embedding_col,
        "target": args.target,
        "target_centroids": args.target_centroids,
        "embeddings_table": args.embeddings_table,
        "target_max_embed_docs": args.target_max_embed_docs,
        "phases": args.phases,
    }
    settings = cfg.with_overrides({"sample": values}).sample
    from hermes_spark.sampling.weights import precheck_weights

    if settings.phases:
        return settings  # each phase's weights: checked with the phases file
    if not settings.weights_version:  # carried keys are another version's codes
        precheck_weights(
            settings.weights,
            settings.weights_level,
            _code_levels(args, cfg),
            storage=_early_storage(cfg),
        )
    return settings


def _phases(args: argparse.Namespace, settings: Any) -> Any:
    """The validated phases of ``--phases`` (before Spark starts), or None without it."""
    if not settings.phases:
        return None
    from hermes_spark.sampling.phases import load_phases

    clash = {
        "--weights": args.weights,
        "--stage2": args.stage2,
        "--weights-version": args.weights_version,
        "--plan": getattr(args, "plan", None),
        "--stats": args.stats,
    }
    given = [name for name, value in clash.items() if value is not None]
    if given:
        raise InvalidConfigError(
            f"--phases sets each phase's weights and rule over the codes table; drop "
            f"{', '.join(given)}"
        )
    return load_phases(settings.phases)


def _print_schedule(schedule: Any) -> None:
    print(f"schedule of {len(schedule.phases)} phases (codebook {schedule.codebook_version}):")
    for r in schedule.phases:
        s = r.summary()
        print(
            f"  {s['name']}: share {s['share']:g}, {s['stage2']}, target "
            f"{s['target_tokens']:,.0f} tokens, realized {s['realized_tokens']:,.0f} "
            f"({s['capped_tokens']:,.0f} cut by the per-document cap)"
        )
    for o in schedule.overlap:
        a, b = o["phases"]
        print(f"  overlap {a} ∩ {b}: {o['docs']} documents, {o['tokens']:,} tokens")


def _plan_phases(args: argparse.Namespace, cfg: HermesConfig, settings: Any, phases: Any) -> Any:
    """``hermes plan --phases``: every phase planned and selected, the schedule saved."""
    from hermes_spark.tasks.phases import schedule_table

    spark = _spark(cfg)
    schedule = schedule_table(
        spark,
        _need(cfg.paths.table, "--table"),
        phases,
        settings,
        version=args.codebook_version,
        levels=_code_levels(args, cfg),
        allow_shortfall=args.allow_shortfall,
        store=_store(cfg, spark),
    )
    schedule.release()
    _print_schedule(schedule)
    if args.out:
        schedule.save(args.out, storage=_storage(spark))
        print(f"schedule written to {args.out}")
    return schedule


def _storage(spark: SparkSession) -> io.Storage:
    """The session's ``fs.s3a.*`` settings, for hermes' own files (io.py)."""
    from hermes_spark.object_stores import storage_of

    return storage_of(spark)


def _early_storage(cfg: HermesConfig) -> io.Storage:
    """What :func:`_storage` will be, before Spark starts: the active session's settings,
    else those hermes builds the session with (``cfg.spark.conf``)."""
    from hermes_spark.object_stores import storage_before_session

    return storage_before_session(dict(cfg.spark.conf))


def _guard_file_outputs(args: argparse.Namespace, command: str, cfg: HermesConfig) -> None:
    """Refuse, before Spark starts, file outputs that hold what hermes did not write
    (reached with the settings the session will have: :func:`_early_storage`)."""
    from hermes_spark import outputs

    storage = _early_storage(cfg)

    weights_out = getattr(args, "weights_out", None)
    if weights_out:
        outputs.guard_output(
            weights_out,
            f"{command} --weights-out",
            own_names=outputs.WEIGHT_FILES,
            storage=storage,
        )
    if command == "plan" and args.out:
        from hermes_spark.sampling.phases import SCHEDULE_KIND
        from hermes_spark.sampling.plan import PLAN_KIND

        marker = SCHEDULE_KIND if getattr(args, "phases", None) else PLAN_KIND
        outputs.guard_output(args.out, "plan --out", marker=marker, storage=storage)
    if command == "mixtures" and args.out:
        outputs.guard_output(
            args.out, "mixtures --out", own_names=outputs.MIXTURE_FILES, storage=storage
        )
    if command == "report" and args.out:
        outputs.guard_output(
            args.out, "report --out", marker=outputs.REPORT_MARKER, storage=storage
        )
    if command == "evaluate" and args.out:
        outputs.guard_output(
            args.out, "evaluate --out", own_names=outputs.EVALUATION_FILES, storage=storage
        )


def _sample_corpus(cfg: HermesConfig) -> Any:
    """The corpus of ``--input`` for target-top's re-embedding (None when none is set)."""
    return cfg.corpus if (cfg.corpus.input or cfg.corpus.table) else None


def _code_levels(args: argparse.Namespace, cfg: HermesConfig) -> tuple[int, ...] | None:
    if not getattr(args, "codebook", None):
        return None
    from hermes_spark.api import load_codebook

    return tuple(load_codebook(args.codebook, storage=_early_storage(cfg)).levels)


def cmd_plan(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes plan``: the allocation from statistics, printed and optionally saved."""
    from hermes_spark.sampling.report import format_plan
    from hermes_spark.tasks.plan import compute_plan
    from hermes_spark.weight_files import write_weight_files

    settings = _sample_settings(args, cfg)  # validated before Spark starts
    phases = _phases(args, settings)
    _guard_file_outputs(args, "plan", cfg)
    if phases is not None:
        return _plan_phases(args, cfg, settings, phases)
    spark = _spark(cfg)
    plan = compute_plan(
        spark,
        settings,
        table=cfg.paths.table,
        stats=cfg.paths.stats,
        version=args.codebook_version,
        levels=_code_levels(args, cfg),
        allow_shortfall=args.allow_shortfall,
        codebook=args.codebook,
        corpus=_sample_corpus(cfg),
        store=_store(cfg, spark),
    )
    print(format_plan(plan))
    if args.out:
        plan.save(args.out, storage=_storage(spark))
        print(f"plan written to {args.out}")
    if args.weights_out:
        for path in write_weight_files(
            args.weights_out, plan.target_shares(), storage=_storage(spark)
        ):
            print(f"weights written to {path}")
    return plan


def cmd_sample(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes sample``: execute a plan (computed first unless --plan) into MANIFEST."""
    from hermes_spark.sampling.report import format_report
    from hermes_spark.tasks.plan import compute_plan_and_codes
    from hermes_spark.tasks.sample import run_sample
    from hermes_spark.weight_files import write_weight_files

    table = _need(cfg.paths.table, "--table")
    out = _need(cfg.paths.manifest, "--out")
    mixture_json, page = _sample_reports(args)
    settings = None if args.plan else _sample_settings(args, cfg)  # validated before Spark
    phases = None if settings is None else _phases(args, settings)
    _guard_file_outputs(args, "sample", cfg)
    spark = _spark(cfg)
    store = _store(cfg, spark)
    if phases is not None:
        return _sample_phases(args, spark, store, table, out, settings, phases, mixture_json, cfg)
    if args.plan:
        plan = _saved_plan(args, cfg)
    codes = None
    if settings is not None:  # no --plan: plan now
        plan, codes = compute_plan_and_codes(
            spark,
            settings,
            table=table,
            stats=cfg.paths.stats if args.stats else None,
            version=args.codebook_version,
            levels=_code_levels(args, cfg),
            allow_shortfall=args.allow_shortfall,
            codebook=args.codebook,
            corpus=_sample_corpus(cfg),
            store=store,
        )
    result = run_sample(spark, table, out, plan, report_path=mixture_json, codes=codes, store=store)
    print(format_report(result.report))
    print(f"manifest written to {out}; report {result.report_path} ({result.seconds:.1f}s)")
    if page:
        _write_page(
            spark,
            store,
            page,
            stats=args.stats,
            mixture=result.report_path,
            codebook=args.codebook,
            codebook_version=plan.codebook_version,
        )
    if args.weights_out:
        for path in write_weight_files(
            args.weights_out, plan.target_shares(), storage=_storage(spark)
        ):
            print(f"weights written to {path}")
    return {
        "manifest": out,
        "report_path": result.report_path,
        "report": result.report,
        "plan": plan,
        "page": page,
    }


def _saved_plan(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """The plan ``sample --plan`` executes, refusing the flags a saved plan already fixes."""
    from hermes_spark.errors import VersionMismatchError
    from hermes_spark.sampling.plan import SamplePlan

    fixed = {
        "--budget-tokens": args.budget_tokens,
        "--budget-share": args.budget_share,
        "--weights": args.weights,
        "--weights-version": args.weights_version,
        "--stage2": args.stage2,
        "--weights-level": args.weights_level,
        "--stage2-level": args.stage2_level,
        "--max-epochs": args.max_epochs,
        "--quality-cols": args.quality_cols,
        "--stats": args.stats,
        "--codebook": args.codebook,
        "--target": args.target,
        "--target-centroids": args.target_centroids,
        "--embeddings-table": args.embeddings_table,
        "--phases": args.phases,
    }
    given = [flag for flag, value in fixed.items() if value is not None]
    if given:
        raise InvalidConfigError(
            f"--plan fixes the allocation; drop {', '.join(given)} or re-run hermes plan"
        )
    plan = SamplePlan.load(args.plan, storage=_early_storage(cfg))
    if args.sample_seed is not None:
        plan = plan.with_seed(args.sample_seed)
    if args.codebook_version and args.codebook_version != plan.codebook_version:
        raise VersionMismatchError(
            f"the plan is for codebook version {plan.codebook_version}, not {args.codebook_version}"
        )
    return plan


def _sample_phases(
    args: argparse.Namespace,
    spark: Any,
    store: DeltaStore,
    table: str,
    out: str,
    settings: Any,
    phases: Any,
    report_path: str | None,
    cfg: HermesConfig,
) -> dict[str, Any]:
    """``hermes sample --phases``: the phased manifest and its schedule report."""
    from hermes_spark.tasks.phases import run_phased_sample

    result = run_phased_sample(
        spark, table, out, phases, settings, version=args.codebook_version,
        levels=_code_levels(args, cfg), allow_shortfall=args.allow_shortfall,
        report_path=report_path, store=store,
    )  # fmt: skip
    _print_schedule(result.schedule)
    print(f"manifest written to {out}; report {result.report_path} ({result.seconds:.1f}s)")
    return {"manifest": out, "report_path": result.report_path, "report": result.report}


def _sample_reports(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(mixture report JSON, HTML page)`` of sample's flags; ``--report X.json`` keeps
    its old meaning (the JSON) with a deprecation warning."""
    mixture, page = args.mixture_report, args.report_page
    if page and page.lower().endswith(".json"):
        if mixture:
            raise InvalidConfigError("--report X.json means --mixture-report: give only one")
        print(
            "hermes: warning: sample --report FILE.json is deprecated: use --mixture-report "
            "for the JSON (--report now writes the HTML page)",
            file=sys.stderr,
        )
        return page, None
    return mixture, page


def cmd_export(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes export``: the sampled training data as shuffled shards (one folder of them
    per phase for a phased manifest)."""
    from hermes_spark.export import export_training_data
    from hermes_spark.phase_export import export_phases, is_phased

    manifest = _need(cfg.paths.manifest, "--manifest")
    out = _need(cfg.paths.export, "--out")
    spark = _spark(cfg)
    store = _store(cfg, spark)
    if is_phased(spark, manifest, store=store):
        phased = export_phases(
            spark, manifest, cfg.corpus, out, fmt=args.output_format, shards=args.shards,
            seed=cfg.sample.seed, per_bucket=args.per_bucket, overwrite=args.overwrite,
            store=store,
        )  # fmt: skip
        for name, r in phased.phases.items():
            print(f"phase {name}: {r.rows} rows ({r.docs} documents, {r.tokens} tokens) in "
                  f"{len(r.files)} files under {r.out_dir}")  # fmt: skip
        print(f"index {phased.index} ({phased.seconds:.1f}s)")
        return phased
    result = export_training_data(
        spark,
        manifest,
        cfg.corpus,
        out,
        fmt=args.output_format,
        shards=args.shards,
        seed=cfg.sample.seed,
        per_bucket=args.per_bucket,
        overwrite=args.overwrite,
        store=store,
    )
    print(
        f"exported {result.rows} rows ({result.docs} documents, {result.tokens} tokens) "
        f"into {len(result.files)} files under {out} ({result.seconds:.1f}s)"
    )
    for path in result.extra_files:
        print(f"  {path}")
    return result


def cmd_mixtures(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes mixtures``: candidate Stage-1 weight files around the token prior."""
    from hermes_spark.tasks.mixtures import write_candidate_mixtures

    stats = _need(cfg.paths.stats, "--stats")
    out = _need(args.out, "--out")
    if not args.dirichlet and not args.quadmix:
        raise InvalidConfigError("hermes mixtures needs --dirichlet N and/or --quadmix N")
    _guard_file_outputs(args, "mixtures", cfg)
    spark = _spark(cfg)
    store = _store(cfg, spark)
    if args.quadmix:
        from hermes_spark.tasks.mixtures import write_candidate_quadmix

        made = write_candidate_quadmix(
            spark,
            stats,
            out,
            args.quadmix,
            level=args.weights_level,
            seed=args.mixture_seed,
            version=args.codebook_version,
            store=store,
        )
        print(f"{len(made)} quadmix parameter files written to {out}")
        if not args.dirichlet:
            return {"out": out, "quadmix": made, "dirichlet": []}
    written = write_candidate_mixtures(
        spark,
        stats,
        out,
        args.dirichlet,
        level=args.weights_level,
        temperature=args.temperature,
        concentration=args.concentration,
        seed=args.mixture_seed,
        version=args.codebook_version,
        levels=_code_levels(args, cfg),
        store=store,
    )
    print(f"{args.dirichlet} mixtures written to {out} (+ {io.basename(written[-1])})")
    return {"out": out, "quadmix": made if args.quadmix else [], "dirichlet": written}


def cmd_report(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes report``."""
    from hermes_spark.tasks.report import report_from_tables

    stats = _need(cfg.paths.stats, "--stats")
    out = _need(args.out, "--out")
    _guard_file_outputs(args, "report", cfg)
    mixture = args.manifest
    if mixture and not mixture.endswith(".json"):
        mixture = io.report_path_for(mixture)
    spark = _spark(cfg)
    path = report_from_tables(
        spark,
        stats,
        out,
        mixture=mixture,
        evaluation=args.evaluation,
        codebook=cfg.paths.codebook,
        codebook_version=args.codebook_version,
        cards=args.cards,
        explorer=args.explorer,
        store=_store(cfg, spark),
    )
    print(f"report written to {path}")
    return {"report": path}


def cmd_explore(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes explore``: bucket cards and the HTML explorer."""
    from hermes_spark.tasks.explore import cards_table_name, explore

    table = _need(cfg.paths.table, "--table")
    if not (cfg.corpus.input or cfg.corpus.table):
        raise InvalidConfigError("hermes explore needs --input or --input-table (the texts)")
    spark = _spark(cfg)
    cards = explore(
        spark,
        cfg.corpus,
        table,
        args.out,
        level=args.level,
        examples=args.examples,
        version=args.codebook_version,
        seed=args.explore_seed,
        sample_per_bucket=args.sample_per_bucket,
        store=_store(cfg, spark),
    )
    top = cards.records(1)
    print(
        f"{len(cards.frame)} cards of codebook {cards.codebook_version} "
        f"({len(top)} level-1 buckets) written to {cards_table_name(table)}"
    )
    for c in top[:10]:
        print(f"  {c['code']:>6}  {c['docs']:>9} docs  {', '.join(c.get('top_terms') or [])}")
    if args.out:
        print(f"explorer: {io.join(args.out, 'index.html')}")
    return cards


def cmd_rescore(args: argparse.Namespace, cfg: HermesConfig) -> Any:
    """``hermes rescore``: recompute quality from the corpus text, no re-embedding."""
    from hermes_spark.rescore import rescore_quality

    table = _need(cfg.paths.table, "--table")
    spark = _spark(cfg)
    result = rescore_quality(
        spark, table, cfg.corpus, args.codebook_version, store=_store(cfg, spark)
    )
    print(
        f"rescored {result.rescored} of {result.rows} rows of codebook "
        f"{result.codebook_version} in {result.table} "
        f"({result.not_in_corpus} not in the corpus kept their quality)"
    )
    return result


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
    if report.get("parent"):
        kept = ", ".join(f"{k:.0%}" for k in report["parent"]["codes_in_place"])
        print(f"  warm-started from {report['parent']['version']}: code numbers kept {kept}")
    print(json.dumps(report))


def _print_annotate(report: Any) -> None:
    print(f"annotated with codebook {report.codebook_version} into {report.table}")
    print(f"  files: {report.files_total} ({report.files_finished_before} finished before)")
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
