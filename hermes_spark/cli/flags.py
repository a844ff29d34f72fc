"""The one declarative table of ``hermes`` commands and flags.

Each :class:`Flag` names the config key it overrides (``section.key``) or, for a flag
that only the command reads, ``None``. ``--help`` shows each flag's config default, so
the table, the parser, the config overrides and the help can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hermes_spark.config import CORPUS_FORMATS, HermesConfig
from hermes_spark.quantize.options import KMEANS_KINDS, LST_KINDS, ROTATIONS, STAGE_BOOKS


@dataclass(frozen=True)
class Flag:
    """One command-line flag: its names, the config key it sets, type and help."""

    names: tuple[str, ...]
    key: str | None
    help: str
    type: Callable[[str], Any] | None = str
    choices: Sequence[str] | None = None
    metavar: str | None = None
    dest: str | None = None
    action: str | None = None
    default: Any = None  # for command-local flags only (config keys default from config)
    group: str | None = None  # --help section; None: from the config section (group_of)
    #: the library argument this flag sets where its name differs (``version`` for
    #: ``--codebook-version``), so an error naming that argument names this flag
    param: str | None = None

    @property
    def attr(self) -> str:
        """The argparse destination."""
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return self.dest or long.lstrip("-").replace("-", "_")


def flag(*names: str, key: str | None = None, help: str, **kw: Any) -> Flag:
    """Shorthand for :class:`Flag` with the names first."""
    return Flag(tuple(names), key, help, **kw)


def switch(*names: str, help: str, dest: str | None = None, group: str | None = None) -> Flag:
    """A boolean ``store_true`` flag read by the command."""
    return Flag(
        tuple(names),
        None,
        help,
        type=None,
        action="store_true",
        dest=dest,
        default=False,
        group=group,
    )


#: ``--help`` sections in the order shown.
GROUPS = (
    "general",
    "Spark",
    "corpus",
    "model",
    "quantizer",
    "sampling",
    "target rules",
    "tables and output",
    "command options",
)
_SECTION_GROUPS = {
    "spark": "Spark",
    "corpus": "corpus",
    "model": "model",
    "fit": "quantizer",
    "sample": "sampling",
    "paths": "tables and output",
    "mlflow": "tables and output",
}
_OUTPUT_FLAGS = {"--out", "--table", "--manifest", "--stats", "--report", "--weights-out"}


def group_of(f: Flag) -> str:
    """The ``--help`` section of a flag: its own, else its config section's."""
    if f.group:
        return f.group
    if _OUTPUT_FLAGS & set(f.names) or "--codebook" in f.names:
        return "tables and output"
    if f.key is None:
        return "command options"
    section, name = f.key.split(".", 1)
    if section == "sample" and ("target" in name or name == "embeddings_table"):
        return "target rules"
    return _SECTION_GROUPS.get(section, "command options")


def config_default(key: str, cfg: HermesConfig | None = None) -> Any:
    """The value of a config key (``section.key``) in ``cfg`` (default: a fresh config)."""
    section, name = key.split(".", 1)
    value = getattr(getattr(cfg or HermesConfig(), section), name)
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else None
    return value


@dataclass(frozen=True)
class Command:
    """One subcommand: its help, an example, its flags and the function that runs it."""

    name: str
    help: str
    example: str
    flags: tuple[Flag, ...]
    handler: str
    description: str | None = None
    needs: tuple[str, ...] = field(default_factory=tuple)  # config keys that must be set


COMMON = (
    flag(
        "--config",
        metavar="FILE|NAME",
        group="general",
        help="YAML config: a file or a shipped name (web-scale, demo, cluster-gpu); the "
        "defaults below are those of the --config given",
    ),
    flag("--master", key="spark.master", help="Spark master when none is configured already"),
    flag(
        "--remote",
        key="spark.remote",
        metavar="sc://HOST:PORT",
        help="run on a Spark Connect server (same as the SPARK_REMOTE variable)",
    ),
    switch(
        "-v",
        "--verbose",
        help="debug logging, with Spark's and the libraries' own warnings",
        dest="verbose",
        group="general",
    ),
    switch(
        "--json",
        help="print the command's result as one JSON object on stdout (the human lines go "
        'to stderr; an error is {"error": ..., "exit_code": ...})',
        dest="json",
        group="general",
    ),
)

CORPUS = (
    flag(
        "--input",
        key="corpus.input",
        metavar="CORPUS",
        help="the corpus: a file, a directory or a Delta table path (any URI); a catalog table "
        "is --input-table",
    ),
    flag(
        "--input-table",
        key="corpus.table",
        metavar="NAME",
        help="the corpus as a catalog table (db.t or catalog.schema.t), read through its "
        "table reader (Delta deletion vectors respected)",
    ),
    flag(
        "--input-format",
        "--format",
        key="corpus.format",
        choices=CORPUS_FORMATS,
        help="format of the corpus files",
    ),
    flag("--id-col", key="corpus.id_col", help="id column (absent: a hash of the text)"),
    flag("--text-col", key="corpus.text_col", help="text column"),
    flag("--quality-col", key="corpus.quality_col", help="quality column, higher = better"),
    flag(
        "--tokens-col",
        key="corpus.tokens_col",
        help="token counts to budget with (default: counted with the model's tokenizer)",
    ),
    flag(
        "--embedding-col",
        key="corpus.embedding_col",
        help="array<float> vectors to use instead of running the model",
    ),
    flag("--keep-cols", key="corpus.keep_cols", metavar="A,B", help="columns copied to the codes"),
)

#: the corpus format without the ``--format`` alias (export's ``--format`` is its output)
INPUT_FORMAT_ONLY = flag(
    "--input-format", key="corpus.format", choices=CORPUS_FORMATS, help="format of the corpus"
)

MODEL_RUN = (
    flag(
        "--batch-size",
        key="model.batch_size",
        type=int,
        help="documents per model batch in this run (GPU clusters use more)",
    ),
    flag("--device", key="model.device", choices=("auto", "cpu", "cuda"), help="model device"),
    flag(
        "--backend",
        key="model.backend",
        choices=("torch", "onnx", "openvino"),
        help="inference backend (fit records it; annotate uses the codebook's and refuses another)",
    ),
    flag(
        "--precision",
        key="model.precision",
        choices=("fp32", "fp16", "bf16", "int8", "int8-static"),
        help="model precision (fit records it; annotate uses the codebook's)",
    ),
    flag(
        "--allow-backend-mismatch",
        key="model.allow_backend_mismatch",
        type=None,
        action="store_true",
        help="annotate: embed with --backend/--precision although the codebook was fitted "
        "with others (recorded; hermes versions shows mixed devices)",
    ),
    flag(
        "--batch-tokens",
        key="model.batch_tokens",
        type=int,
        help="padded tokens per model batch (0: batch size × max sequence length)",
    ),
    flag(
        "--task-cpus",
        key="model.task_cpus",
        type=int,
        metavar="N",
        help="cores of one embedding task on cluster masters (stage-level scheduling; "
        "ONNX Runtime threads follow); reading and the other stages keep spark.task.cpus",
    ),
    flag(
        "--tokenizer",
        key="model.tokenizer",
        metavar="PATH",
        help="tokenizer.json or folder (offline) counting n_tokens in the tokens the LM is "
        "trained on (default: the embedding model's tokenizer)",
    ),
)

MODEL_FIT = (
    flag("--model", key="model.name", help="sentence-transformers name or local path"),
    flag("--max-seq-length", key="model.max_seq_length", type=int, help="tokens per document"),
    *MODEL_RUN,
)

CODEBOOK_VERSION = flag(
    "--codebook-version",
    help="codebook version to use (default: the latest in the table)",
    param="version",
)
LEVELS_FROM = flag(
    "--codebook", metavar="ARTIFACT", help="the artifact, for exact level sizes (else inferred)"
)
#: the HTML page of hermes report, written by the command that made its data
REPORT_PAGE = flag(
    "--report",
    dest="report_page",
    metavar="PAGE.html",
    help="also write the HTML report page of this result (as hermes report does; any URI)",
)

SAMPLE_PLAN = (
    flag("--budget-tokens", key="sample.budget_tokens", type=float, metavar="N", help="budget B"),
    flag(
        "--budget-share",
        key="sample.budget_share",
        type=float,
        metavar="S",
        help="budget B as a share of the chosen version's tokens (0.3 = three tenths; "
        "not with --budget-tokens)",
    ),
    flag(
        "--weights",
        key="sample.weights",
        metavar="W",
        help="Stage-1 weights: a JSON/CSV file keyed by bucket code ('12', '12.3', '12.3.7'; "
        "DoReMi JSON works) or a rule: proportional, uniform, temperature:TAU, unimax, or "
        "target:CORPUS (the cell distribution of target texts coded with --codebook, "
        "smoothed, with a share of the corpus prior)",
    ),
    flag(
        "--weights-version",
        key="sample.weights_version",
        metavar="V1",
        help="the codebook version the --weights file is keyed by: its weights are carried "
        "to the planned version at --weights-level (NNLS on the documents coded under both)",
    ),
    flag(
        "--stage2",
        key="sample.stage2",
        metavar="RULE",
        help="random | coverage | quality-top:P | target-top:P (the share P of each Stage-2 "
        "bucket most similar to --target) | quadmix[:PARAMS.json] (expected repeats "
        "min(E, scale·sigmoid(steepness·(q - threshold))) of the quality percentile q)",
    ),
    flag(
        "--phases",
        key="sample.phases",
        metavar="PHASES.yaml",
        help="multi-phase schedule: per phase a budget share, weights and Stage-2 rule (or "
        "freeze: PLAN.json); needs --table; replaces --weights and --stage2",
    ),
    flag(
        "--quality-cols",
        key="sample.quality_cols",
        metavar="SPEC",
        help="quality from several codes columns (annotate --keep-cols): 'edu:0.6,dclm:0.4' "
        "merges their percentile ranks within each Stage-2 bucket; 'edu>=0.3' filters first",
    ),
    flag(
        "--target-smoothing",
        key="sample.target_smoothing",
        type=float,
        metavar="A",
        help="--weights target:PATH: add A to every cell's target count",
    ),
    flag(
        "--target-prior-mix",
        key="sample.target_prior_mix",
        type=float,
        metavar="B",
        help="--weights target:PATH: mix in B of the corpus token prior",
    ),
    flag(
        "--target-embedding-col",
        key="sample.target_embedding_col",
        metavar="COL",
        help="target corpus column of the target texts' vectors (default: the artifact's "
        "model embeds them)",
    ),
    flag(
        "--target",
        key="sample.target",
        metavar="PATH",
        help="--stage2 target-top:P: corpus of target texts (default: the target:PATH of "
        "--weights); needs --codebook",
    ),
    flag(
        "--target-centroids",
        key="sample.target_centroids",
        type=int,
        metavar="K",
        help="target-top: k-means centroids of the target texts in LST space",
    ),
    flag(
        "--embeddings-table",
        key="sample.embeddings_table",
        metavar="TABLE",
        help="target-top: document vectors (default: <CODES>_embeddings when it exists, "
        "written by annotate --store-embeddings; else --input is re-embedded)",
    ),
    flag(
        "--target-max-embed-docs",
        key="sample.target_max_embed_docs",
        type=int,
        metavar="N",
        help="target-top without an embeddings table: most documents re-embedded from --input",
    ),
    *[f for f in CORPUS if f.key in ("corpus.input", "corpus.table", "corpus.id_col")],
    INPUT_FORMAT_ONLY,
    flag("--text-col", key="corpus.text_col", help="text column of --input (target-top)"),
    flag(
        "--embedding-col",
        key="corpus.embedding_col",
        help="vectors column of --input, used instead of re-embedding (target-top)",
    ),
    flag(
        "--weights-level", key="sample.weights_level", type=int, metavar="W", help="Stage-1 level"
    ),
    flag(
        "--stage2-level",
        key="sample.stage2_level",
        type=int,
        metavar="S",
        help="Stage-2 level > W (default W+1)",
    ),
    flag(
        "--max-epochs",
        key="sample.max_epochs",
        type=float,
        metavar="E",
        help="cap per bucket: E × its tokens",
    ),
    flag(
        "--seed",
        key="sample.seed",
        type=int,
        dest="sample_seed",
        metavar="S",
        help="seed of u = hash(doc_id, seed)",
    ),
    flag("--stats", key="paths.stats", help="STATS table: plan from statistics only"),
    CODEBOOK_VERSION,
    LEVELS_FROM,
    switch("--allow-shortfall", help="accept a budget above E × all tokens (the rest is reported)"),
    flag(
        "--weights-out",
        metavar="DIR",
        help="also write doremi_weights.json + regmix_mixture.csv of the target shares",
    ),
)

MLFLOW = flag(
    "--mlflow-experiment",
    key="mlflow.experiment",
    metavar="NAME",
    help="log an MLflow run into this experiment (also: MLFLOW_TRACKING_URI)",
)

TABLE = flag("--table", key="paths.table", metavar="CODES", help="codes Delta table (path/name)")

COMMANDS: tuple[Command, ...] = (
    Command(
        "fit",
        "sample, embed, fit LST + RVQ, write the codebook artifact",
        "hermes fit --input data/corpus --out out/codebook --levels 64,64,32",
        (
            *CORPUS,
            *MODEL_FIT,
            flag("--out", key="paths.codebook", metavar="ARTIFACT", help="codebook directory"),
            flag("--levels", key="fit.levels", metavar="K1,K2,K3", help="level sizes"),
            flag("--sample-size", key="fit.sample_size", type=int, help="documents to fit on"),
            flag("--seed", key="fit.seed", type=int, help="sampling and k-means seed"),
            flag("--lst-dim", key="fit.lst_dim", type=int, help="LST output dimension"),
            flag("--lst", key="fit.lst", choices=LST_KINDS, help="LST variant"),
            flag("--whiten-power", key="fit.whiten_power", type=float, help="PCA whitening power"),
            flag("--rotation", key="fit.rotation", choices=ROTATIONS, help="learned rotation"),
            flag(
                "--refine-iters",
                key="fit.refine_iters",
                type=int,
                help="joint codebook refinement rounds after the greedy pass",
            ),
            flag(
                "--balance",
                key="fit.balance",
                type=float,
                help="stage-1 balance strength in [0, 1] (against giant coarse buckets)",
            ),
            flag(
                "--kmeans",
                key="fit.kmeans",
                choices=KMEANS_KINDS,
                help="k-means flavour of every stage",
            ),
            flag(
                "--stage-books",
                key="fit.stage_books",
                choices=(*STAGE_BOOKS, "auto"),
                help="residual codebooks of stages 2..: shared, or one per parent cell "
                "(auto: per_parent, or shared with --rotation opq / --refine-iters)",
            ),
            flag(
                "--init-from",
                key="fit.init_from",
                metavar="ARTIFACT",
                help="warm-start from an earlier codebook of the same model and levels and "
                "keep its code numbers where the centroids still match",
            ),
            MLFLOW,
        ),
        "cmd_fit",
        needs=("paths.codebook",),
    ),
    Command(
        "annotate",
        "embed + LST + assign every document; append its codes to CODES",
        "hermes annotate --input data/corpus --codebook out/codebook --table out/codes",
        (
            *CORPUS,
            *MODEL_RUN,
            flag("--codebook", key="paths.codebook", metavar="ARTIFACT", help="codebook directory"),
            TABLE,
            flag(
                "--mode",
                key="annotate.mode",
                choices=("incremental", "full"),
                help="incremental: only documents without a row of this version; full: "
                "re-annotate everything and replace this version's rows in one commit",
            ),
            flag(
                "--on-duplicate",
                key="annotate.on_duplicate",
                choices=("keep-first", "error"),
                help="what a repeated doc id does",
            ),
            flag(
                "--files-per-chunk",
                key="annotate.files_per_chunk",
                type=int,
                help="input files per Delta commit",
            ),
            switch(
                "--store-embeddings",
                help="also write the float16 vectors to CODES_embeddings (for evaluate and "
                "target-oriented sampling; off by default: it is large)",
            ),
            switch(
                "--dry-run",
                help="print what a run would do (files, pending chunks, rows, tokens, an "
                "estimated time from a short timed probe) and write nothing",
            ),
        ),
        "cmd_annotate",
        needs=("paths.codebook", "paths.table"),
    ),
    Command(
        "stats",
        "bucket statistics for every level (STATS and STATS_levels tables)",
        "hermes stats --table out/codes --out out/stats",
        (
            TABLE,
            flag("--out", key="paths.stats", metavar="STATS", help="STATS table"),
            CODEBOOK_VERSION,
            LEVELS_FROM,
            REPORT_PAGE,
        ),
        "cmd_stats",
        needs=("paths.table", "paths.stats"),
    ),
    Command(
        "plan",
        "compute a two-stage sample plan from statistics (seconds; no document scan)",
        "hermes plan --stats out/stats --budget-tokens 1e9 --weights unimax --stage2 coverage",
        (
            flag(
                "--table",
                key="paths.table",
                metavar="CODES",
                help="codes table (for quality-top, or no STATS)",
            ),
            flag("--out", metavar="PLAN.json", help="plan file for hermes sample --plan"),
            *SAMPLE_PLAN,
            MLFLOW,
        ),
        "cmd_plan",
    ),
    Command(
        "sample",
        "two-stage weighted sample -> MANIFEST table + mixture report",
        "hermes sample --table out/codes --out out/manifest --budget-tokens 1e9 "
        "--weights unimax --stage2 coverage",
        (
            TABLE,
            flag("--out", key="paths.manifest", metavar="MANIFEST", help="manifest Delta table"),
            flag("--plan", metavar="PLAN.json", help="plan from hermes plan --out"),
            flag(
                "--mixture-report",
                metavar="R.json",
                help="mixture report JSON path (default: MANIFEST_report.json)",
            ),
            flag(
                "--report",
                dest="report_page",
                metavar="PAGE.html",
                help="also write the HTML report page (figures of --stats and --codebook "
                "when given); a path ending in .json still means --mixture-report "
                "(deprecated)",
            ),
            *SAMPLE_PLAN,
            MLFLOW,
        ),
        "cmd_sample",
        needs=("paths.table", "paths.manifest"),
    ),
    Command(
        "export",
        "materialize the sampled training data as N shuffled shards",
        "hermes export --manifest out/manifest --input data/corpus --out out/train",
        (
            flag(
                "--manifest",
                key="paths.manifest",
                metavar="MANIFEST",
                help="MANIFEST table from hermes sample",
            ),
            flag("--out", key="paths.export", metavar="DIR", help="output directory"),
            flag(
                "--output-format",
                "--format",
                choices=("parquet", "jsonl"),
                dest="output_format",
                help="output format (the corpus format is --input-format)",
                default="parquet",
            ),
            flag(
                "--shards",
                type=int,
                metavar="N",
                help="output shards (default: one per ≈1 GB of text, 4 bytes per token)",
            ),
            flag("--seed", key="sample.seed", type=int, dest="export_seed", help="shuffle seed"),
            switch(
                "--per-bucket",
                help="a folder per Stage-1 bucket + megatron_blend.txt; the shards are "
                "shared by the buckets in proportion to their tokens (at least one each)",
            ),
            switch("--overwrite", help="replace an earlier export in --out"),
            *[f for f in CORPUS if f.key in ("corpus.input", "corpus.table", "corpus.id_col")],
            INPUT_FORMAT_ONLY,
            flag("--text-col", key="corpus.text_col", help="text column"),
            flag(
                "--keep-cols",
                key="corpus.keep_cols",
                help="export only the text and these columns (default: all but the embeddings)",
            ),
            flag("--embedding-col", key="corpus.embedding_col", help="column left out"),
            MLFLOW,
        ),
        "cmd_export",
        needs=("paths.manifest", "paths.export", "corpus.input"),
    ),
    Command(
        "mixtures",
        "N candidate Stage-1 weight files drawn around the token prior (Dirichlet)",
        "hermes mixtures --stats out/stats --dirichlet 64 --out out/mixtures",
        (
            flag("--dirichlet", type=int, metavar="N", help="how many weight files"),
            flag(
                "--quadmix",
                type=int,
                metavar="N",
                help="also write N random quadmix parameter files (threshold, steepness per "
                "level-w bucket) for --stage2 quadmix:FILE",
            ),
            flag("--temperature", type=float, default=1.0, help="prior ∝ tokens^τ"),
            flag(
                "--concentration",
                type=float,
                default=1.0,
                help="mean Dirichlet parameter per bucket (larger = closer to the prior)",
            ),
            flag("--seed", type=int, dest="mixture_seed", default=0, metavar="S", help="seed"),
            flag("--stats", key="paths.stats", help="STATS table"),
            flag("--out", metavar="DIR", help="output directory"),
            flag("--weights-level", type=int, default=1, help="level of the weights"),
            flag("--codebook-version", help="default: the only version in STATS", param="version"),
            LEVELS_FROM,
        ),
        "cmd_mixtures",
        needs=("paths.stats",),
    ),
    Command(
        "rescore",
        "recompute the quality column from the corpus text (no re-embedding)",
        "hermes rescore --table out/codes --input data/corpus",
        (
            TABLE,
            CODEBOOK_VERSION,
            *[
                f
                for f in CORPUS
                if f.key in ("corpus.input", "corpus.table", "corpus.format", "corpus.id_col")
            ],
            flag("--text-col", key="corpus.text_col", help="text column"),
        ),
        "cmd_rescore",
        needs=("paths.table", "corpus.input"),
    ),
    Command(
        "versions",
        "list the codebook versions of a codes table (or drop one)",
        "hermes versions --table out/codes",
        (
            TABLE,
            flag(
                "--drop",
                metavar="VERSION",
                help="delete every row of this version",
                param="version",
            ),
        ),
        "cmd_versions",
        needs=("paths.table",),
    ),
    Command(
        "crosswalk",
        "how the buckets of two codebook versions map onto each other (Delta + summary)",
        "hermes crosswalk --table out/codes --from V1 --to V2 --out out/crosswalk",
        (
            TABLE,
            flag("--from", dest="from_version", metavar="V1", help="codebook version mapped from"),
            flag("--to", dest="to_version", metavar="V2", help="codebook version mapped to"),
            flag("--level", type=int, metavar="L", help="only this level (default: every level)"),
            flag(
                "--out", metavar="TABLE", help="crosswalk Delta table (summary: TABLE_summary.json)"
            ),
        ),
        "cmd_crosswalk",
        needs=("paths.table",),
    ),
    Command(
        "vacuum",
        "remove files no snapshot references (left by killed runs)",
        "hermes vacuum --table out/codes --dry-run",
        (
            TABLE,
            switch("--dry-run", help="only list what would be removed"),
            flag(
                "--retention-hours",
                key="delta.vacuum_retention_hours",
                type=int,
                help="keep files younger than this (0 only when no writer runs)",
            ),
        ),
        "cmd_vacuum",
        needs=("paths.table",),
    ),
    Command(
        "optimize",
        "cluster a codes table's files by bucket1, bucket2 (code-prefix reads skip files)",
        "hermes optimize --table out/codes",
        (TABLE,),
        "cmd_optimize",
        needs=("paths.table",),
    ),
    Command(
        "evaluate",
        "per-level metrics vs k-means baselines and labels, on held-out documents",
        "hermes evaluate --table out/codes --codebook out/codebook --input data/corpus "
        "--label-cols label --out out/eval",
        (
            *CORPUS,
            TABLE,
            flag(
                "--codebook",
                key="paths.codebook",
                metavar="ARTIFACT",
                help="the artifact behind the table's rows",
            ),
            flag(
                "--label-cols",
                "--label-col",
                dest="label_cols",
                metavar="A,B",
                help="corpus columns with reference labels (NMI/ARI/homogeneity/completeness)",
            ),
            flag(
                "--sample",
                "--sample-size",
                dest="sample_size",
                type=int,
                default=2000,
                help="held-out documents to score",
            ),
            flag(
                "--baseline-sample",
                type=int,
                help="fitting-side documents the baselines train on (default: --sample)",
            ),
            flag(
                "--baselines",
                default="kmeans,bisecting_kmeans,faiss_rq",
                help="comma-separated baselines (kmeans, bisecting_kmeans, faiss_rq; '' for none)",
            ),
            flag(
                "--embeddings-table",
                help="the CODES_embeddings table of annotate --store-embeddings (default: "
                "re-embed the samples with the artifact's model)",
            ),
            switch(
                "--in-sample",
                help="score documents of the fit sample instead of held-out ones (reported)",
            ),
            flag("--seed", type=int, default=0, help="seed of the evaluation hash (salted)"),
            CODEBOOK_VERSION,
            flag("--out", metavar="DIR", help="directory for evaluation.json and evaluation.md"),
            MLFLOW,
            REPORT_PAGE,
        ),
        "cmd_evaluate",
        description="Score the codes of one version on a held-out sample (disjoint from the "
        "fit sample unless --in-sample) against flat k-means (K1, K1*K2), bisecting k-means "
        "and faiss ResidualQuantizer fitted on a fitting-side sample; writes evaluation.json "
        "and evaluation.md to --out and prints a short table.",
        needs=("paths.table", "paths.codebook"),
    ),
    Command(
        "report",
        "one self-contained HTML page of plots from the statistics and JSON reports",
        "hermes report --stats out/stats --manifest out/manifest --out report.html",
        (
            flag("--stats", key="paths.stats", metavar="STATS", help="STATS table"),
            flag(
                "--manifest",
                metavar="MANIFEST",
                help="manifest table of hermes sample (its MANIFEST_report.json is read) "
                "or the mixture report JSON itself",
            ),
            flag("--evaluation", metavar="DIR", help="the --out directory of hermes evaluate"),
            flag(
                "--codebook",
                key="paths.codebook",
                metavar="ARTIFACT",
                help="codebook artifact (its fit_report.json and centroids: the centroid map)",
            ),
            flag(
                "--cards",
                metavar="T",
                help="the CODES_cards table of hermes explore (top terms label the map)",
            ),
            flag("--explorer", metavar="URL", help="link to the explorer's index.html"),
            CODEBOOK_VERSION,
            flag("--out", metavar="report.html", help="the HTML page to write (any URI)"),
        ),
        "cmd_report",
        description="Reads only the STATS/STATS_levels tables and JSON reports (never the "
        "corpus); figures whose input is not given are left out with a note.",
        needs=("paths.stats",),
    ),
    Command(
        "setup-jars",
        "fetch the pinned, checksummed Delta (and s3a) jars that local sessions load",
        "hermes-spark setup-jars",
        (
            flag(
                "--role",
                choices=("delta", "s3", "all"),
                default="delta",
                help="which jars: delta (native Delta Lake, a few MB), s3 (s3a://, ~700 MB) or all",
            ),
            flag(
                "--dir",
                dest="jars_dir",
                metavar="DIR",
                help="folder to fetch into (default: $HERMES_JARS_DIR, else "
                "~/.cache/hermes-spark/jars)",
            ),
            flag(
                "--repo",
                metavar="URL",
                help="Maven-layout repository to fetch from (default: $HERMES_MAVEN_REPO, "
                "else Maven Central; file:// works)",
            ),
        ),
        "cmd_setup_jars",
        description="Fetch the JVM jars pinned in jars.lock (shipped with the package) and "
        "check each sha256; a mismatch keeps nothing and exits 2. Sessions hermes builds "
        "load the Delta jars from this folder, so Delta tables are written natively instead "
        "of through the embedded delta-rs engine. Needs network access once; no Spark.",
    ),
    Command(
        "explore",
        "bucket cards (size, quality, top terms, examples) -> CODES_cards + an HTML explorer",
        "hermes explore --table out/codes --input data/corpus --out out/explore",
        (
            TABLE,
            *[f for f in CORPUS if f.key in ("corpus.input", "corpus.table", "corpus.id_col")],
            INPUT_FORMAT_ONLY,
            flag("--text-col", key="corpus.text_col", help="text column"),
            flag(
                "--keep-cols",
                key="corpus.keep_cols",
                metavar="A,B",
                help="codes-table columns whose mix each card lists (e.g. source,language)",
            ),
            flag("--out", metavar="DIR", help="folder of the explorer (index.html)"),
            flag("--level", type=int, default=2, metavar="L", help="deepest level carded"),
            flag("--examples", type=int, default=5, metavar="N", help="example docs per kind"),
            flag(
                "--sample-per-bucket",
                type=int,
                default=200,
                metavar="N",
                help="documents per bucket whose text the top terms are counted over",
            ),
            flag(
                "--seed",
                type=int,
                dest="explore_seed",
                default=0,
                metavar="S",
                help="seed of the random examples",
            ),
            CODEBOOK_VERSION,
        ),
        "cmd_explore",
        description="Writes one card per bucket and level to the Delta table CODES_cards "
        "(the rows of the version replaced) and a static, self-contained explorer to "
        "--out/index.html: search by code or term, click a level-1 card for its children. "
        "Top terms are class-based TF-IDF over a bounded random sample of each bucket's "
        "texts; the corpus is scanned once and joined with the sampled ids only.",
        needs=("paths.table",),
    ),
    Command(
        "run",
        "the demo on the bundled BBC News corpus: fit → annotate → stats → plan → sample → "
        "export → explore → report, printing each command",
        "hermes run",
        (),
        "cmd_run",
    ),
)


def overrides(command: Command, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}`` of every config-keyed flag given on the command line."""
    out: dict[str, dict[str, Any]] = {}
    for f in (*COMMON, *command.flags):
        if f.key is None:
            continue
        value = values.get(f.attr)
        if value is not None:
            section, key = f.key.split(".", 1)
            out.setdefault(section, {})[key] = value
    return out


def needed(command: Command, cfg: HermesConfig) -> list[str]:
    """The flags of ``command.needs`` whose config value is still unset."""
    by_key = {f.key: f for f in command.flags if f.key}
    missing = []
    for key in command.needs:
        section, name = key.split(".", 1)
        if key == "corpus.input" and cfg.corpus.table:
            continue  # --input-table names the corpus instead
        if getattr(getattr(cfg, section), name) in (None, ""):
            missing.append(by_key[key].names[0] if key in by_key else key)
    return missing


def help_text(f: Flag, cfg: HermesConfig | None = None) -> str:
    """The flag's help plus the default it falls back to (from ``cfg``, the --config)."""
    default = config_default(f.key, cfg) if f.key else f.default
    if f.action or default in (None, ""):
        return f.help
    return f"{f.help} (default: {default})"


__all__ = ["COMMANDS", "COMMON", "GROUPS", "Command", "Flag", "group_of"]
