"""The one interface behind which everything exchange-specific lives.

An exchange module describes its instruments, its WebSocket feed protocol (URL, subscription,
keep-alive, which frames carry trades), its native trade payload (rendered by the simulator,
parsed by Silver), and its public REST trade history (read by ``k2 gaps repair``). Nothing outside
``k2.exchanges`` knows any exchange's format; adding an exchange is adding one module here that
subclasses :class:`Exchange`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from k2.errors import K2Error
from k2.exchanges.rules import TradeRules

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class Instrument:
    """A tradable pair as the simulator models it."""

    symbol: str  # as the exchange spells it
    base: str
    quote: str
    price_decimals: int
    qty_decimals: int
    reference_price: float  # where the simulated random walk starts
    typical_qty: float  # median simulated trade size


@dataclass(frozen=True)
class RestTrade:
    """One trade as an exchange's REST history returns it, with what its live payload needs."""

    trade_id: int
    price: str  # exact decimal text
    qty: str  # exact decimal text
    event_time_us: int  # trade time, microseconds since the epoch
    is_buy: bool  # taker (aggressor) side
    order_type: str = ""  # the taker's order type where the exchange reports one (Kraken: market, limit)
    best_match: bool = True  # Binance's isBestMatch


@dataclass(frozen=True)
class RestPage:
    """One page of REST history: its trades, in the exchange's order, and where the next page starts."""

    trades: list[RestTrade]
    cursor: int | None  # the next page's start (a trade id or a time, as the exchange pages); None: no further page


class RestRateLimited(Exception):
    """The exchange's answer says the client is over its rate limit (whatever the HTTP status)."""


@dataclass(frozen=True)
class TradeBatch:
    """Trades to render, column by column (one list entry per trade), grouped into messages.

    Columns keep the simulator's hot path free of per-trade objects. Message ``i`` holds the
    ``sizes[i]`` trades that follow those of message ``i - 1``; all trades of a message share one
    symbol. Prices and quantities are decimal strings already on the instrument's grid.
    """

    symbol: list[str]
    trade_id: list[int]
    price: list[str]
    qty: list[str]
    event_time_us: list[int]  # exchange event time, microseconds since the epoch
    is_buy: list[bool]  # taker (aggressor) side
    sizes: list[int]  # trades per message
    snapshot: frozenset[int] = frozenset()  # indexes of messages that are snapshots

    def message(self, index: int) -> TradeBatch:
        """The single message ``index`` as a batch of its own."""
        start = sum(self.sizes[:index])
        end = start + self.sizes[index]
        return TradeBatch(
            self.symbol[start:end],
            self.trade_id[start:end],
            self.price[start:end],
            self.qty[start:end],
            self.event_time_us[start:end],
            self.is_buy[start:end],
            [self.sizes[index]],
            frozenset({0}) if index in self.snapshot else frozenset(),
        )

    def trade_ids_by_message(self) -> list[tuple[int, ...]]:
        out, start = [], 0
        for size in self.sizes:
            out.append(tuple(self.trade_id[start : start + size]))
            start += size
        return out


class FrameKind(Enum):
    TRADES = "trades"  # carries trades: published to Kafka unchanged
    CONTROL = "control"  # subscription acks, status, pong: logged, not published
    HEARTBEAT = "heartbeat"  # keep-alive: proves liveness, not published
    ERROR = "error"  # the exchange reports an error: logged
    UNKNOWN = "unknown"  # unparseable or unexpected: published unchanged so Bronze sees it


@dataclass(frozen=True)
class Frame:
    kind: FrameKind
    key: str = ""  # Kafka key (the exchange symbol) for TRADES frames


class Exchange(ABC):
    name: ClassVar[str]
    payload_format: ClassVar[str]  # goes into the Kafka header "format"
    price_field: ClassVar[str]  # name of a trade's price in the payload (fault injection damages it)
    # the trade payload's rules (fields, types, ranges, where trades sit), compiled for Spark and the tail
    rules: ClassVar[TradeRules]
    default_ws_url: ClassVar[str]
    instruments: ClassVar[dict[str, Instrument]]
    default_symbols: ClassVar[tuple[str, ...]]
    # Keep-alive: reconnect when no frame at all arrived for this long.
    # per-exchange settings, K2_<EXCHANGE>_<OPTION>: symbols to trade, WebSocket endpoint, REST endpoint
    options: ClassVar[tuple[str, ...]] = ("SYMBOLS", "WS_URL", "REST_URL")
    idle_timeout_s: ClassVar[float] = 60.0
    # Application-level ping every N seconds (None: the protocol uses WebSocket pings only).
    ping_interval_s: ClassVar[float | None] = None
    # Reconnect proactively before the exchange cuts a connection of this age (None: no limit).
    max_connection_age_s: ClassVar[float | None] = None

    @property
    def payload_fields(self) -> dict[str, str]:
        """Candidate column -> the payload field it comes from, so that Silver's dead-letter details
        name the field an operator finds in the raw payload."""
        return self.rules.payload_fields

    # --- symbols ---------------------------------------------------------------------------------
    @abstractmethod
    def split_symbol(self, symbol: str) -> tuple[str, str]:
        """(base, quote) of an exchange symbol, or a K2Error if it is not one."""

    def normalise_symbol(self, symbol: str) -> str:
        """K2's convention for every exchange: BASE-QUOTE, upper case (BTC-USDT)."""
        base, quote = self.split_symbol(symbol)
        return f"{base}-{quote}"

    def validate_symbols(self, symbols: list[str] | tuple[str, ...], *, simulated: bool) -> list[str]:
        if not symbols:
            raise K2Error(
                f"no symbols configured for {self.name}", f"set K2_{self.name.upper()}_SYMBOLS or pass --symbols."
            )
        for symbol in symbols:
            self.split_symbol(symbol)
            if simulated and symbol not in self.instruments:
                raise K2Error(
                    f"the {self.name} simulator has no model for {symbol!r}",
                    f"use one of {', '.join(self.instruments)}.",
                )
        return list(symbols)

    # --- live feed protocol -----------------------------------------------------------------------
    @abstractmethod
    def connect_url(self, base_url: str, symbols: list[str]) -> str:
        """The WebSocket URL to open for these symbols."""

    @abstractmethod
    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        """Frames to send right after connecting."""

    def ping_frame(self, req_id: int) -> str | None:
        return None

    @abstractmethod
    def classify(self, frame: str | bytes) -> Frame:
        """What a received frame is; never raises, whatever the frame holds."""

    # --- native payloads ---------------------------------------------------------------------------
    # How many trades one message may carry (1 where the exchange sends a message per trade).
    max_trades_per_message: ClassVar[int] = 1

    @abstractmethod
    def render(self, batch: TradeBatch) -> list[bytes]:
        """The exchange's own messages for these trades, one payload per message, as the live
        exchange would send them."""

    def parse_bronze(self, bronze: DataFrame) -> DataFrame:
        """Bronze rows -> one row per trade each payload carries, compiled from ``rules`` into Spark
        expressions (no UDFs); ``k2.exchanges.tail`` compiles the same rules for the live tail.

        Output columns (see ``k2.exchanges.spark.CANDIDATE_COLUMNS``): the Bronze row's Kafka
        coordinates, ``ingested_at`` and raw ``value``; ``item_index`` (position of the trade in its
        message, -1 when the message as a whole is rejected); ``exchange_symbol``, ``trade_id``,
        ``event_time`` (timestamp), ``price_text`` and ``quantity_text`` (exact decimal text),
        ``taker_side`` ("buy"/"sell"); ``parse_error`` (a reason code, null when the payload was
        readable) and ``parse_detail``. Field values are not validated here: Silver does that the
        same way for every exchange.
        """
        from k2.exchanges.spark import parse_bronze

        return parse_bronze(self.rules, bronze)

    @abstractmethod
    def event_times_us(self, payload: bytes) -> list[int]:
        """Exchange event time (epoch microseconds) of each trade in one payload, for monitoring
        without Spark. Raises ValueError when the payload is not a trade message."""

    # --- REST history (k2.gaps.repair fetches missing trades with it) --------------------------------
    default_rest_url: ClassVar[str] = ""  # the public REST API's base URL; "" if K2 cannot repair gaps here
    rest_pages_by: ClassVar[str] = "id"  # "id": a page starts at a trade id; "time": at a time (epoch ns)
    rest_request_interval_s: ClassVar[float] = 1.0  # pause between requests, well inside the public limit

    def rest_start(self, first_missing_id: int, after_time_ns: int) -> int:
        """The cursor of the first page that can hold the gap's first missing trade."""
        return first_missing_id if self.rest_pages_by == "id" else after_time_ns

    def rest_request(self, base_url: str, symbol: str, cursor: int, last_id: int) -> str:
        """The URL of the page starting at ``cursor`` (``last_id``: the last trade id wanted)."""
        raise NotImplementedError(f"{self.name} has no REST history in K2")

    def rest_page(self, body: bytes) -> RestPage:
        """A REST answer -> its page; RestRateLimited when it says so, ValueError when it is no page."""
        raise NotImplementedError(f"{self.name} has no REST history in K2")

    def render_rest(self, symbol: str, trade: RestTrade) -> bytes:
        """One fetched trade as the live feed publishes it: the exchange's own WebSocket message."""
        raise NotImplementedError(f"{self.name} has no REST history in K2")


def loads_or_none(frame: str | bytes) -> object | None:
    try:
        return json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return None
