"""Guards on the repository itself: lint clean, README true to the code and to CI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from k2.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", text, flags=re.S)


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = readme_commands()
    assert len(commands) == 2, "the README holds exactly two set-up commands"
    ci_lines = [
        ln
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))
    ]
    assert ci_lines == [commands[1]]


def test_readme_lists_every_setting() -> None:
    text = (ROOT / "README.md").read_text()
    missing = [row[0] for row in Settings.from_env({}).describe() if f"`{row[0]}`" not in text]
    assert not missing, f"README does not document {missing}"


def test_ruff_format_is_applied() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run([ruff, "format", "--check", str(ROOT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, "run `ruff format .`: " + result.stdout + result.stderr
