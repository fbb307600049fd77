"""Connection events (k2.feeds.events): what the feed writes is what the tail and Silver read back,
and only a record marked by its header and readable as an event is one."""

from __future__ import annotations

import datetime as dt

from k2.feeds.events import CONNECTION_KEY, ConnectionEvent, connection_event, is_connection_event, parse_event

AT = dt.datetime(2026, 11, 20, 10, 0, 12, 345678, tzinfo=dt.UTC)


def test_an_event_reads_back_as_written() -> None:
    event = ConnectionEvent("disconnected", AT, 3, "idle_timeout", "no frame for 30s", "wss://x")
    assert parse_event(event.payload()) == {
        "event": "disconnected",
        "event_time": AT,
        "connection": 3,
        "reason": "idle_timeout",
        "detail": "no frame for 30s",
        "url": "wss://x",
    }
    assert CONNECTION_KEY.startswith(b"__")  # no exchange spells a symbol so


def test_the_header_marks_an_event_in_kafka_and_bronze_form() -> None:
    assert is_connection_event([("exchange", b"binance"), ("kind", b"connection")])
    assert is_connection_event([{"key": "kind", "value": b"connection"}])
    assert not is_connection_event([("kind", b"trade")]) and not is_connection_event(None)
    payload = ConnectionEvent("connected", AT, 1).payload()
    assert connection_event({"value": payload, "headers": [("kind", b"connection")]})["event"] == "connected"
    assert connection_event({"value": payload, "headers": [("exchange", b"binance")]}) is None
    assert connection_event({"value": payload}) is None  # a record without headers (older callers)


def test_an_unreadable_event_is_none_and_wrong_typed_fields_read_as_null() -> None:
    for bad in (b"", b"x", b"[]", b'{"event":"paused","at_us":1}', b'{"event":"connected","at_us":true}'):
        assert parse_event(bad) is None, bad
    odd = parse_event(b'{"event":"connected","at_us":0,"connection":2147483648,"reason":5}')
    assert odd is not None and (odd["connection"], odd["reason"]) == (None, None)
