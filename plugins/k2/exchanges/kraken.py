"""Kraken WebSocket v2: the ``trade`` channel.

Payload (unchanged in Kafka): ``{"channel": "trade", "type": "snapshot"|"update", "data": [{"symbol":
"BTC/USD", "side": "buy"|"sell", "price": 68000.1, "qty": 0.01, "ord_type": "market"|"limit",
"trade_id": 123, "timestamp": "2024-01-01T00:00:00.123456Z"}, ...]}``. One message carries a batch of
trades; prices and quantities are JSON numbers; trade ids are unique per book. The server sends a
heartbeat frame about every second while subscribed; the client may ping with ``{"method": "ping"}``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from typing import TYPE_CHECKING, ClassVar

from k2.errors import K2Error
from k2.exchanges.base import Exchange, Frame, FrameKind, Instrument, TradeBatch, loads_or_none

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# an element of "data" as the STRING parse reads it (canonical messages only)
_ITEM = (
    "STRUCT<symbol: STRING, side: STRING, price: STRING, qty: STRING, ord_type: STRING, trade_id: STRING, "
    "timestamp: STRING>"
)
# a JSON number of at most 15 digits (so the STRING parse, which goes through a double, keeps it exact)
_NUMBER = r"(?=[0-9.]{1,15}[,}])(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
_TRADE = (
    r'\{"symbol":"[^"\\]*","side":"(?:buy|sell)","price":' + _NUMBER + r',"qty":' + _NUMBER + r","
    r'"ord_type":"(?:market|limit)","trade_id":(?:0|[1-9][0-9]{0,17}),"timestamp":"[^"\\]*"\}'
)
# What Kraken sends, in its layout (keys in this order, no whitespace), every value of its documented
# type: trade ids below 1e18, strings without escapes. Messages that match are parsed once.
CANONICAL = r'^\{"channel":"trade","type":"(?:snapshot|update)","data":\[' + _TRADE + "(?:," + _TRADE + r")*\]\}$"


class Kraken(Exchange):
    name = "kraken"
    payload_format = "kraken.v2-trade.v1"
    price_field = "price"
    payload_fields: ClassVar[dict[str, str]] = {
        "exchange_symbol": "symbol",
        "trade_id": "trade_id",
        "event_time": "timestamp",
        "price_text": "price",
        "quantity_text": "qty",
        "taker_side": "side",
    }
    default_ws_url = "wss://ws.kraken.com/v2"
    instruments: ClassVar[dict[str, Instrument]] = {
        i.symbol: i
        for i in (
            Instrument("BTC/USD", "BTC", "USD", 1, 8, 65000.0, 0.01),
            Instrument("ETH/USD", "ETH", "USD", 2, 8, 3200.0, 0.2),
            Instrument("SOL/USD", "SOL", "USD", 2, 8, 150.0, 3.0),
            Instrument("BTC/EUR", "BTC", "EUR", 1, 8, 60000.0, 0.01),
            Instrument("ETH/BTC", "ETH", "BTC", 5, 8, 0.0492, 0.3),
        )
    }
    default_symbols = ("BTC/USD", "ETH/USD", "SOL/USD", "BTC/EUR", "ETH/BTC")
    idle_timeout_s = 10.0  # heartbeats arrive every second; ten silent seconds mean a dead link
    ping_interval_s = 30.0
    max_trades_per_message = 8

    def split_symbol(self, symbol: str) -> tuple[str, str]:
        match = re.fullmatch(r"([A-Z0-9]{2,12})/([A-Z0-9]{2,12})", symbol)
        if not match:
            raise K2Error(
                f"{symbol!r} is not a Kraken v2 symbol (BASE/QUOTE, e.g. BTC/USD)",
                f"use symbols like {', '.join(self.default_symbols[:3])}.",
            )
        return match.group(1), match.group(2)

    def connect_url(self, base_url: str, symbols: list[str]) -> str:
        return base_url

    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        return [
            json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": symbols, "snapshot": True}})
        ]

    def ping_frame(self, req_id: int) -> str | None:
        return json.dumps({"method": "ping", "req_id": req_id})

    def classify(self, frame: str | bytes) -> Frame:
        msg = loads_or_none(frame)
        if not isinstance(msg, dict):
            return Frame(FrameKind.UNKNOWN)
        channel = msg.get("channel")
        if channel == "trade" and isinstance(msg.get("data"), list):
            first = msg["data"][0] if msg["data"] and isinstance(msg["data"][0], dict) else {}
            return Frame(FrameKind.TRADES, str(first.get("symbol", "")))
        if channel == "heartbeat":
            return Frame(FrameKind.HEARTBEAT)
        if msg.get("success") is False or "error" in msg:
            return Frame(FrameKind.ERROR)
        if channel == "status" or msg.get("method") in ("subscribe", "unsubscribe", "pong"):
            return Frame(FrameKind.CONTROL)
        return Frame(FrameKind.UNKNOWN)

    def render(self, batch: TradeBatch) -> list[bytes]:
        items = [
            f'{{"symbol":"{s}","side":"{"buy" if buy else "sell"}","price":{p},"qty":{q},'
            f'"ord_type":"{"limit" if t % 3 == 0 else "market"}","trade_id":{t},'
            f'"timestamp":"{_rfc3339(us)}"}}'
            for s, t, p, q, us, buy in zip(
                batch.symbol, batch.trade_id, batch.price, batch.qty, batch.event_time_us, batch.is_buy, strict=True
            )
        ]
        payloads, start = [], 0
        for i, size in enumerate(batch.sizes):
            kind = "snapshot" if i in batch.snapshot else "update"
            data = ",".join(items[start : start + size])
            payloads.append(f'{{"channel":"trade","type":"{kind}","data":[{data}]}}'.encode())
            start += size
        return payloads

    def parse_bronze(self, bronze: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        from k2.exchanges.spark import (
            INT64_MAX,
            Check,
            FieldSource,
            candidates,
            payload_text,
            read_fields,
            rfc3339_to_timestamp,
            unparsed_reason,
        )

        # Messages in Kraken's own layout have their documented types and are parsed once, into
        # STRING values (their numbers are exact: at most 15 digits). The others are parsed into
        # VARIANT, each element of "data" on its own: one that is not a trade object, or has a field
        # of the wrong type, rejects itself, not its message (see k2.exchanges.spark).
        df = payload_text(bronze).withColumn("_fast", F.col("payload").rlike(CANONICAL))
        fast = F.col("_fast")
        df = df.withColumn(
            "msg", F.when(fast, F.from_json("payload", f"channel STRING, type STRING, data ARRAY<{_ITEM}>"))
        )
        typed = F.from_json("payload", "channel STRING, type STRING, data ARRAY<VARIANT>")
        df = df.withColumn("_typed", F.when(~fast, typed))

        def either(field: str) -> Column:
            return F.when(fast, F.col(f"msg.{field}")).otherwise(F.col(f"_typed.{field}"))

        channel, kind = either("channel"), either("type")
        parsed = F.when(fast, F.col("msg").isNotNull()).otherwise(F.col("_typed").isNotNull())
        no_array = F.when(fast, F.col("msg.data").isNull()).otherwise(F.col("_typed.data").isNull())
        trades = F.when(fast, F.size("msg.data")).otherwise(F.size("_typed.data"))
        error = F.coalesce(
            F.col("payload_error"),
            F.when(~parsed | channel.isNull(), unparsed_reason()),
            F.when((channel != "trade") | no_array, F.lit("not_a_trade")),
            F.when(~F.coalesce(kind.isin("snapshot", "update"), F.lit(False)), F.lit("invalid_message_type")),
            F.when(trades == 0, F.lit("no_trades")),
        )
        kind_detail = F.when(
            error == "invalid_message_type",
            F.concat(
                F.lit('field type (message type) must be "snapshot" or "update", got '),
                F.coalesce(F.substring(kind, 1, 100), F.lit("nothing")),
            ),
        )
        df = df.withColumn("parse_error", error).withColumn("message_detail", kind_detail)
        # one row per element: the element itself where fast, its position in the VARIANT array
        # elsewhere; a rejected message still yields one row (item_index -1) for the dead letters
        nothing = F.lit(None).cast(_ITEM)
        items = (
            F.when(F.col("parse_error").isNotNull(), F.array(nothing))
            .when(fast, F.col("msg.data"))
            .otherwise(F.array_repeat(nothing, F.size("_typed.data")))
        )
        df = df.select("*", F.posexplode(items).alias("pos", "item"))
        element = F.element_at(F.col("_typed.data"), F.col("pos") + 1)
        df = df.withColumn("trade", F.when(F.col("parse_error").isNull() & ~fast, element))
        sources = [
            FieldSource(key, label, kind, F.col(f"item.{key}"), F.try_variant_get("trade", f"$.{key}", "variant"))
            for key, label, kind in (
                ("symbol", "symbol", "string"),
                ("side", "side", "string"),
                ("price", "price", "number"),
                ("qty", "quantity", "number"),
                ("ord_type", "order type", "string"),
                ("trade_id", "trade id", "integer"),
                ("timestamp", "trade time", "string"),
            )
        ]
        df, (symbol, side, price, quantity, order_type, trade_id, timestamp) = read_fields(df, fast, sources)
        # a column of its own: the checks and the output refer to it (parsed once a row, not thrice)
        df = df.withColumn("_event_time", rfc3339_to_timestamp(timestamp))
        event_time = F.col("_event_time")
        # the documented type of every field (absent ones are Silver's missing_*; ord_type is not
        # used, so it may be absent, but not of another kind)
        checks = [
            # an element without a symbol may be no object at all: its type is looked up for those only
            Check(
                "invalid_trade_item",
                symbol.type.isNull() & ~F.schema_of_variant("trade").startswith("OBJECT"),
                F.concat(F.lit("data["), F.col("pos").cast("string"), F.lit("] is not a trade object: ")),
                F.to_json("trade"),
            ),
            symbol.must_be("invalid_symbol", "a string", "STRING"),
            side.must_be("invalid_side", '"buy" or "sell"', "STRING", also=side.text.isin("buy", "sell")),
            price.must_be("invalid_price", "a JSON number", "BIGINT", "DECIMAL", "DOUBLE"),
            quantity.must_be("invalid_quantity", "a JSON number", "BIGINT", "DECIMAL", "DOUBLE"),
            order_type.must_be(
                "invalid_order_type", '"market" or "limit"', "STRING", also=order_type.text.isin("market", "limit")
            ),
            *trade_id.integer_check("invalid_trade_id", 0, INT64_MAX),
            timestamp.must_be(
                "invalid_timestamp", "an RFC 3339 time (2024-01-01T00:00:00.1Z)", "STRING", also=event_time.isNotNull()
            ),
        ]
        return candidates(
            df,
            item_index=F.col("pos"),
            exchange_symbol=symbol.text,
            trade_id=trade_id.text,
            event_time=event_time,
            price_text=price.text,
            quantity_text=quantity.text,
            taker_side=side.text,
            parse_error=F.col("parse_error"),
            message_detail=F.col("message_detail"),
            checks=checks,
            # Kraken's own layout has every type and range right; only its time may not be a date
            checked=~fast | event_time.isNull(),
        )

    def event_times_us(self, payload: bytes) -> list[int]:
        try:
            items = json.loads(payload)["data"]
            return [_parse_rfc3339_us(item["timestamp"]) for item in items]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a Kraken trade payload: {exc}") from None


def _parse_rfc3339_us(text: str) -> int:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


@functools.lru_cache(maxsize=4096)
def _rfc3339_second(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _rfc3339(us: int) -> str:
    """RFC 3339 with microseconds, UTC; the second part is cached since trades cluster in time."""
    return f"{_rfc3339_second(us // 1_000_000)}.{us % 1_000_000:06d}Z"
