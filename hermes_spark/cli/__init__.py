"""The ``hermes`` console script, generated from the flag table in :mod:`.flags`.

Exit codes: 0 success, 2 bad input or config (one paragraph, no traceback), 1 an
unexpected failure; ``main`` raises ``SystemExit`` with them, ``execute`` returns them.
Only this package (and ``jobs/``) prints for humans.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from hermes_spark import __version__, tracking
from hermes_spark.cli import commands
from hermes_spark.cli.flags import (
    COMMANDS,
    COMMON,
    GROUPS,
    Command,
    Flag,
    group_of,
    help_text,
    needed,
    overrides,
)
from hermes_spark.config import HermesConfig, load_config
from hermes_spark.errors import HermesError, InvalidConfigError, read_error, storage_error

log = logging.getLogger("hermes")

DESCRIPTION = """\
hermes gives every document of a corpus a coarse-to-fine semantic code (c1, c2, c3)
and turns the codes into training-data mixtures. A typical run:

  hermes fit      --input data/corpus --out out/codebook
  hermes annotate --input data/corpus --codebook out/codebook --table out/codes
  hermes stats    --table out/codes --out out/stats
  hermes sample   --table out/codes --out out/manifest --budget-tokens 1e9 \\
                  --weights unimax --stage2 coverage
  hermes export   --manifest out/manifest --input data/corpus --out out/train

Every command takes --config FILE (or a shipped name: web-scale, demo, cluster-gpu);
flags override it. Paths may be local, /Volumes, dbfs:/, s3a://, abfss://, gs:// or
hdfs:// URIs; tables may also be catalog names. `hermes-spark COMMAND --help` for details;
`hermes` is the same command under its short name.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 with usage; keep that code
        raise InvalidConfigError(f"{self.prog}: {message}")


def _add(target: argparse._ActionsContainer, f: Flag, cfg: HermesConfig | None) -> None:
    kwargs: dict[str, object] = {"help": help_text(f, cfg), "dest": f.attr}
    if f.action:
        kwargs["action"] = f.action
        if f.key is not None:  # unset on the command line: the config's value stays
            kwargs["default"] = None
    else:
        kwargs["type"] = f.type
        kwargs["metavar"] = f.metavar
        if f.choices:
            kwargs["choices"] = list(f.choices)
        if f.key is None and f.default is not None:
            kwargs["default"] = f.default
    target.add_argument(*f.names, **kwargs)  # type: ignore[arg-type]


def _add_grouped(
    parser: argparse.ArgumentParser, flags: Sequence[Flag], cfg: HermesConfig | None
) -> None:
    """``flags`` under their ``--help`` sections (:data:`flags.GROUPS`), in that order."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in flags:
        _add(groups[group_of(f)], f, cfg)
    parser._action_groups = [g for g in parser._action_groups if g._group_actions]


def build_parser(cfg: HermesConfig | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand, from :data:`flags.COMMANDS`.

    ``cfg`` (the ``--config`` in effect) supplies the defaults ``--help`` shows.
    """
    epilog = "examples:\n" + "\n".join(f"  {c.example}" for c in COMMANDS)
    parser = _Parser(
        prog="hermes-spark",
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hermes-spark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for c in COMMANDS:
        p = sub.add_parser(
            c.name,
            help=c.help,
            description=(c.description or c.help) + f"\n\nexample:\n  {c.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_grouped(p, (*COMMON, *c.flags), cfg)
    return parser


def _config_in_effect(argv: Sequence[str]) -> HermesConfig:
    """The ``--config`` of ``argv`` (``demo`` for ``run``), loaded before the full parse."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("rest", nargs="*")
    known, _ = pre.parse_known_args(argv)
    path = known.config or ("demo" if known.rest[:1] == ["run"] else None)
    return load_config(path)


def _command(name: str) -> Command:
    return next(c for c in COMMANDS if c.name == name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of a Databricks ``python_wheel_task``.

    Returns 0 on success; on failure raises ``SystemExit(code)`` (2 bad input, 1
    unexpected, 130 interrupted), because a wheel task calls this function and ignores
    its return value: only an exception turns the task red.
    """
    code = execute(argv)
    if code:
        raise SystemExit(code)
    return 0


def flag_for(setting: str, command: Command | None = None) -> str | None:
    """The flag that sets ``setting`` (a config key, or a flag's destination for flags
    without one): the running command's, else any command's. The flag table of
    :mod:`.flags` is the one map from settings to flags."""
    mine = (*COMMON, *(command.flags if command else ()))
    for flag in (*mine, *(f for c in COMMANDS for f in c.flags)):
        if setting == (flag.key if "." in setting else flag.attr) or setting == flag.param:
            return flag.names[0]
    return None


def _command_in(argv: Sequence[str]) -> Command | None:
    """The command named in ``argv`` (for error messages), if any."""
    names = {c.name: c for c in COMMANDS}
    return next((names[a] for a in argv if a in names), None)


#: Set for every run unless the caller set them: the model ships with the package (no hub),
#: and tokenizers must not fork threads inside Spark's Python workers.
RUN_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

#: Libraries whose warnings (torch's tracer, onnxruntime's quantizer) only ``-v`` shows.
NOISY_LOGGERS = ("py4j", "torch", "onnxruntime", "transformers", "sentence_transformers")


def _setup_logging(verbose: bool) -> None:
    """hermes' INFO lines on stderr; library and Python warnings only with ``-v``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose:
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")  # TracerWarning, quantizer and deprecation warnings


def execute(argv: Sequence[str] | None = None) -> int:
    """Run ``hermes ARGV`` in-process and return its exit code (never raises).

    With ``--json`` the command's result is one JSON object on stdout and its human lines
    go to stderr; an error prints ``{"error": ..., "exit_code": ...}`` there instead.
    """
    for key, value in RUN_ENV.items():
        os.environ.setdefault(key, value)  # before any model or Spark worker starts
    argv = list(argv) if argv is not None else sys.argv[1:]
    as_json = "--json" in argv
    try:
        code, result = _run(argv)
    except HermesError as exc:
        message = exc.naming(lambda setting: flag_for(setting, _command_in(argv)))
        print(f"hermes: error: {message}", file=sys.stderr)
        code, result = exc.exit_code, {"error": message, "exit_code": exc.exit_code}
    except KeyboardInterrupt:
        print("hermes: interrupted", file=sys.stderr)
        code, result = 130, {"error": "interrupted", "exit_code": 130}
    except Exception as exc:  # an unexpected failure: say so, keep the trace for debugging
        code, message = _unexpected(exc, argv)
        result = {"error": message, "exit_code": code}
    if as_json:
        print(json.dumps(jsonable(result), sort_keys=True))
    return code


def _run(argv: list[str]) -> tuple[int, Any]:
    base = _config_in_effect(argv)
    args = build_parser(base).parse_args(argv)
    _setup_logging(args.verbose)
    command = _command(args.command)
    cfg = base.with_overrides(overrides(command, vars(args)))
    missing = needed(command, cfg)
    if missing:
        raise InvalidConfigError(
            f"hermes {command.name}: missing {', '.join(missing)} (give the flag or set "
            "it in --config)"
        )
    handler = getattr(commands, command.handler)
    tracked = command.name in tracking.TRACKED and tracking.enabled(cfg.mlflow)
    if tracked:
        tracking.check(cfg.mlflow)  # mlflow missing: exit 2 before Spark starts
    run_log = tracking.tracked_run(cfg, command.name) if tracked else contextlib.nullcontext()
    # with --json, stdout carries only the JSON
    out = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with run_log as run, out:
        result = handler(args, cfg)
        if run is not None:
            tracking.LOGGERS[command.name](run, cfg, result)
    return 0, ({"command": command.name, "result": result} if args.json else None)


def _unexpected(exc: Exception, argv: list[str]) -> tuple[int, str]:
    user = storage_error(exc, argv) or read_error(exc)
    if user is not None:  # Spark's way of saying the storage or a file is unusable
        log.debug("storage failure", exc_info=True)
        message = user.naming(lambda setting: flag_for(setting, _command_in(argv)))
        print(f"hermes: error: {message}", file=sys.stderr)
        return user.exit_code, message
    log.debug("unexpected failure", exc_info=True)
    message = f"unexpected failure: {type(exc).__name__}: {exc}"
    print(f"hermes: {message}", file=sys.stderr)
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        traceback.print_exc()
    return 1, message


def jsonable(value: Any) -> Any:
    """``value`` as JSON types: dataclasses, mappings, sequences, paths, numpy scalars."""
    if callable(getattr(value, "to_json", None)):  # e.g. a SamplePlan: its own JSON form
        return json.loads(value.to_json())
    if callable(getattr(value, "to_dict", None)) and not hasattr(value, "columns"):
        return jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(getattr(value, "tolist", None)):  # numpy scalars and arrays
        return value.tolist()
    return str(value)


__all__ = ["build_parser", "execute", "jsonable", "main"]
