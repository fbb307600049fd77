"""Exchange registry: every :class:`~k2.exchanges.base.Exchange` subclass in this package.

Modules are discovered, not listed, so adding an exchange is adding one module.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from k2.errors import K2Error
from k2.exchanges.base import Exchange, Frame, FrameKind, Instrument, RestPage, RestRateLimited, RestTrade, TradeBatch
from k2.settings import Settings

__all__ = [
    "Exchange",
    "Frame",
    "FrameKind",
    "Instrument",
    "RestPage",
    "RestRateLimited",
    "RestTrade",
    "TradeBatch",
    "available",
    "get_exchange",
    "known_symbols",
    "resolve_symbols",
]


# modules of this package that hold shared code, not an exchange (spark: pyspark, imported lazily;
# rules: the declarations; tail, duckdb: their Python and DuckDB compilers)
NOT_EXCHANGES = ("base", "duckdb", "rules", "spark", "tail")


@cache
def _registry() -> dict[str, type[Exchange]]:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in NOT_EXCHANGES:
            importlib.import_module(f"{__name__}.{module.name}")
    return {cls.name: cls for cls in Exchange.__subclasses__()}


def available() -> list[str]:
    return sorted(_registry())


def get_exchange(name: str) -> Exchange:
    try:
        return _registry()[name]()
    except KeyError:
        raise K2Error(
            f"unknown exchange {name!r}", f"use one of: {', '.join(available())} (or add a module to k2/exchanges/)."
        ) from None


def resolve_symbols(
    settings: Settings, exchange: Exchange, symbols: list[str] | None, *, simulated: bool = False
) -> list[str]:
    """Symbols to use, validated: the given ones, else K2_<EXCHANGE>_SYMBOLS, else the exchange's."""
    option = settings.exchange_option(exchange.name, "SYMBOLS")
    configured = [s.strip() for s in option.split(",") if s.strip()]
    return exchange.validate_symbols(symbols or configured or list(exchange.default_symbols), simulated=simulated)


def known_symbols(settings: Settings, exchange: Exchange) -> dict[str, str]:
    """Exchange symbol -> K2's normalised symbol, for every symbol K2 accepts in Silver: the
    simulator's instruments plus the configured (or default) live symbols."""
    symbols = {*exchange.instruments, *resolve_symbols(settings, exchange, None)}
    return {s: exchange.normalise_symbol(s) for s in sorted(symbols)}
