"""The ``hermes`` console script, generated from the flag table in :mod:`.flags`.

Exit codes: 0 success, 2 bad input or config (one paragraph, no traceback), 1 an
unexpected failure; ``main`` raises ``SystemExit`` with them, ``execute`` returns them.
Only this package (and ``jobs/``) prints for humans.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from hermes_spark import __version__
from hermes_spark.cli import commands
from hermes_spark.cli.flags import COMMANDS, COMMON, Command, Flag, help_text, needed, overrides
from hermes_spark.config import load_config
from hermes_spark.errors import HermesError, InvalidConfigError, storage_error

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

Every command takes --config FILE (or a shipped name: default, demo, cluster-gpu);
flags override it. Paths may be local, /Volumes, dbfs:/, s3a://, abfss://, gs:// or
hdfs:// URIs; tables may also be catalog names. `hermes COMMAND --help` for details.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2 with usage; keep that code
        raise InvalidConfigError(f"{self.prog}: {message}")


def _add(target: argparse._ActionsContainer, f: Flag) -> None:
    kwargs: dict[str, object] = {"help": help_text(f), "dest": f.attr}
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand, from :data:`flags.COMMANDS`."""
    common = argparse.ArgumentParser(add_help=False)
    for f in COMMON:
        _add(common, f)
    epilog = "examples:\n" + "\n".join(f"  {c.example}" for c in COMMANDS)
    parser = _Parser(
        prog="hermes",
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hermes-spark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for c in COMMANDS:
        p = sub.add_parser(
            c.name,
            parents=[common],
            help=c.help,
            description=(c.description or c.help) + f"\n\nexample:\n  {c.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for f in c.flags:
            _add(p, f)
    return parser


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
        if setting == (flag.key if "." in setting else flag.attr):
            return flag.names[0]
    return None


def execute(argv: Sequence[str] | None = None) -> int:
    """Run ``hermes ARGV`` in-process and return its exit code (never raises)."""
    command: Command | None = None
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        command = _command(args.command)
        path = args.config or ("demo" if command.name == "run" else None)
        cfg = load_config(path).with_overrides(overrides(command, vars(args)))
        missing = needed(command, cfg)
        if missing:
            raise InvalidConfigError(
                f"hermes {command.name}: missing {', '.join(missing)} (give the flag or set "
                "it in --config)"
            )
        getattr(commands, command.handler)(args, cfg)
        return 0
    except HermesError as exc:
        message = exc.naming(lambda setting: flag_for(setting, command))
        print(f"hermes: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hermes: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: say so, keep the trace for debugging
        user = storage_error(exc, list(argv) if argv is not None else sys.argv[1:])
        if user is not None:  # Spark's way of saying the storage is not set up
            log.debug("storage failure", exc_info=True)
            print(f"hermes: error: {user}", file=sys.stderr)
            return user.exit_code
        log.debug("unexpected failure", exc_info=True)
        print(f"hermes: unexpected failure: {type(exc).__name__}: {exc}", file=sys.stderr)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            traceback.print_exc()
        return 1


__all__ = ["build_parser", "execute", "main"]
