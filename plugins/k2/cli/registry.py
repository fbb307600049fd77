"""How a command module declares its subcommands: ``register(add)`` calls ``add`` once per command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k2.settings import Settings

Handler = Callable[["Settings", argparse.Namespace], int]  # returns the exit status
Add = Callable[[str, Handler, str], argparse.ArgumentParser]  # (name, handler, help) -> the command's parser
