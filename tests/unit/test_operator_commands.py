"""Every `k2 ...` command a message or a doc string tells an operator to run parses with the CLI's
own parser, as written. Commands are collected from every string literal (error fixes, alerts,
DAG docs, docstrings) of plugins/k2, its DAG files included; placeholders of f-strings and templates become an
exchange name, the only kind of value they fill in today."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from k2.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "plugins" / "k2").rglob("*.py"))  # the DAG files too (k2/bundle/dags)
COMMAND = re.compile(r"``?(k2 [^`]+?)``?")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")
EXAMPLE_VALUE = "binance"


def _text(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with its replacement fields as placeholders."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def commands_in(source: str) -> set[str]:
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        text = _text(node)
        if text is not None:
            found |= {PLACEHOLDER.sub(EXAMPLE_VALUE, m) for m in COMMAND.findall(text)}
    return found


def operator_commands() -> list[tuple[str, str]]:
    return sorted(
        (str(path.relative_to(ROOT)), command) for path in SOURCES for command in commands_in(path.read_text())
    )


def parse_error(command: str) -> str | None:
    """What argparse says about ``command``, or None when it parses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        return stderr.getvalue().strip() or f"exit {exc.code}"
    return None


def test_the_collector_finds_the_commands_operators_are_told_to_run() -> None:
    commands = {command for _, command in operator_commands()}
    assert len(commands) >= 15
    assert {"k2 stream start --exchange binance", "k2 stream stop --exchange binance", "k2 lake init"} <= commands


def test_the_check_rejects_a_command_the_cli_does_not_take() -> None:
    assert "unrecognized arguments: binance" in (parse_error("k2 stream start binance") or "")
    assert parse_error("k2 lake show gold.ohlcv_1m --where \"symbol = 'BTC-USDT'\"") is None


@pytest.mark.parametrize(("source", "command"), operator_commands())
def test_every_command_an_operator_is_told_to_run_parses(source: str, command: str) -> None:
    assert parse_error(command) is None, f"{source}: `{command}` does not parse: {parse_error(command)}"


def test_an_argument_a_command_does_not_take_is_reported_with_that_command_s_usage() -> None:
    said = parse_error("k2 query bars --timeframe 1m --since 1h") or ""
    assert "unrecognized arguments: --timeframe 1m" in said
    assert said.startswith("usage: k2 query") and "--interval" in said  # what it does take
