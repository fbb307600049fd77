"""How a setting is declared: a dataclass field with its help text, bounds and choices, in a section
whose prefix names its variable (``K2_<PREFIX><FIELD>``), checked when the section is built."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from k2.errors import K2Error

ENV_PREFIX = "K2_"


def setting(
    default: Any,
    help: str,
    *,
    key: str = "",
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A field with its help text, its own key if the section's prefix does not fit, and its bounds."""
    return field(default=default, metadata={"help": help, "key": key, "gt": gt, "ge": ge, "le": le, "choices": choices})


@dataclass(frozen=True)
class Section:
    """A group of settings; subclasses declare fields with ``setting()``."""

    PREFIX: ClassVar[str] = ""

    @classmethod
    def key_of(cls, f: dataclasses.Field) -> str:
        return f.metadata["key"] or cls.PREFIX + f.name

    def __post_init__(self) -> None:
        for f in fields(self):
            check_bounds(env_name(self.key_of(f)), getattr(self, f.name), f.metadata)
        self.check()

    def check(self) -> None:
        """Constraints between fields of the section."""


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if meta.get("choices") and value not in meta["choices"]:
        raise K2Error(f"{name}={value!r} is not one of {', '.join(meta['choices'])}", f"set {name} to one of them.")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if not math.isfinite(value):  # NaN passes every comparison, inf every lower bound
        raise K2Error(f"{name}={value} is not a finite number", f"give {name} a number, or unset it for the default.")
    if meta.get("gt") is not None and not value > meta["gt"]:
        if meta["gt"] == 0:
            raise K2Error(f"{name} must be positive, got {value}", "set a positive number or unset it for the default.")
        raise K2Error(f"{name} must be > {meta['gt']}, got {value}", f"use more than {meta['gt']}.")
    if meta.get("ge") is not None and value < meta["ge"]:
        if meta.get("le") == 65535:
            raise K2Error(f"{name}={value} is not a TCP port", "use a port in 1..65535.")
        raise K2Error(f"{name} must be >= {meta['ge']}, got {value}", f"use {meta['ge']} or more.")
    if meta.get("le") is not None and value > meta["le"]:
        if meta["le"] == 65535:
            raise K2Error(f"{name}={value} is not a TCP port", "use a port in 1..65535.")
        raise K2Error(f"{name} must be <= {meta['le']}, got {value}", f"use {meta['le']} or less.")


def check_memory(name: str, value: str) -> None:
    """A JVM memory size as Spark reads it (512m, 2g); empty means Spark's default."""
    if value and not re.fullmatch(r"\d+[kmgt]b?", value, flags=re.I):
        raise K2Error(f"{name}={value!r} is not a memory size", f"write it as Spark does, e.g. 512m or 2g, in {name}.")
