"""The one error type K2 raises for problems an operator can fix."""

from __future__ import annotations


class K2Error(Exception):
    """A failure with its cause and the fix, printed by the CLI without a traceback."""

    def __init__(self, cause: str, fix: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.cause}\n  fix: {self.fix}" if self.fix else self.cause
