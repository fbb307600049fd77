"""Connection events: what a feed publishes besides the exchange's frames, so downstream knows when
it was not listening (a gap in the trade ids inside a disconnect is explained; one outside is not).

An event goes to the exchange's raw topic like a trade frame, so Bronze keeps it with everything
else (replayable, one history), marked by the header ``kind: connection`` and keyed
``CONNECTION_KEY``, which no exchange symbol spells. It is published once, not to every partition:
Silver routes events by their header and matches them to gaps by time (the feed's clock), never by
their Kafka position, so copies in every partition would only be duplicates to drop. This module
is the one definition of an event record; Silver (Spark, ``k2.gaps.detect``) and the query tail
(``k2.medallion.tail``) both decide "is this an event" through ``KIND_HEADER``/``CONNECTION_KIND``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KIND_HEADER = "kind"
CONNECTION_KIND = b"connection"
CONNECTION_KEY = b"__k2_connection__"
CONNECTED, DISCONNECTED = "connected", "disconnected"
EVENTS = (CONNECTED, DISCONNECTED)


@dataclass(frozen=True)
class ConnectionEvent:
    event: str  # connected or disconnected
    at: dt.datetime  # the feed's clock, UTC
    connection: int  # the feed's connection number (1 = first since the feed started)
    reason: str = ""  # why a connection ended (idle_timeout, connection_closed, max_connection_age, ...)
    detail: str = ""
    url: str = ""

    def payload(self) -> bytes:
        return json.dumps(
            {
                "event": self.event,
                "at_us": int(self.at.timestamp() * 1_000_000),
                "connection": self.connection,
                "reason": self.reason,
                "detail": self.detail[:500],
                "url": self.url,
            },
            separators=(",", ":"),
        ).encode()


def is_connection_event(headers: Iterable[Any] | None) -> bool:
    """Whether a record's headers (Kafka's (key, value) tuples or Bronze's {key, value} structs) mark
    it as a connection event."""
    for header in headers or ():
        key, value = (header["key"], header["value"]) if isinstance(header, dict) else header
        if key == KIND_HEADER and value == CONNECTION_KIND:
            return True
    return False


MAX_AT_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z, as Spark's timestamps reach
INT32 = (-(2**31), 2**31 - 1)
# the payload's optional fields and their JSON types; a value of another type reads as null
OPTIONAL_FIELDS = {"connection": int, "reason": str, "detail": str, "url": str}


def parse_event(value: bytes | None) -> dict[str, Any] | None:
    """A connection event's fields, or None when the payload is not one (then the record takes the
    trade path and ends a dead letter like any unreadable payload). The same rule as the Spark form,
    ``k2.medallion.transforms.events.event_fields``: an object whose ``event`` is one of EVENTS and
    whose ``at_us`` is an integer in [0, MAX_AT_US]; other fields of the wrong type read as null."""
    try:
        doc = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    at_us = doc.get("at_us")
    if doc.get("event") not in EVENTS or type(at_us) is not int or not 0 <= at_us <= MAX_AT_US:
        return None

    def typed(key: str, kind: type) -> Any:
        v = doc.get(key)
        return v if type(v) is kind and (kind is not int or INT32[0] <= v <= INT32[1]) else None

    at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=at_us)
    return {
        "event": doc["event"],
        "event_time": at,
        **{key: typed(key, kind) for key, kind in OPTIONAL_FIELDS.items()},
    }


def connection_event(record: dict[str, Any]) -> dict[str, Any] | None:
    """A Bronze-shaped record's event fields when it is a connection event (header and payload)."""
    return parse_event(record["value"]) if is_connection_event(record.get("headers")) else None
