"""The ``k2`` command: bring the stack up and down, and operate its parts. Each module of this package
declares its commands (``register``) next to the code that runs them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from k2.cli import gaps, pipeline, services, stack
from k2.cli.registry import Handler
from k2.errors import K2Error
from k2.log import configure_logging
from k2.private import private_dir
from k2.settings import Settings, load_settings


class _Parser(argparse.ArgumentParser):
    """Reports an argument a command does not take with that command's usage, which shows what it
    does take, rather than the top level's, which lists only the commands."""

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            getattr(parsed, "command_parser", self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="k2", description="K2 crypto market-data lakehouse. Settings come from K2_* variables (see `k2 settings`)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Handler, help: str):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func, command_parser=p)
        return p

    for module in (stack, services, pipeline, gaps):
        module.register(add)
    return parser


def ensure_home(settings: Settings) -> None:
    """The state directory, 0700: it holds the catalog, the Airflow DB and generated secrets."""
    try:
        private_dir(settings.home)
    except OSError as exc:
        raise K2Error(
            f"cannot create the state directory {settings.home}: {exc.strerror}",
            "point K2_HOME at a directory you can write, or fix the permissions of its parent.",
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        ensure_home(settings)
        return args.func(settings, args)
    except K2Error as exc:
        print(f"k2: error: {exc.cause}", file=sys.stderr)
        if exc.fix:
            print(f"k2: fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
