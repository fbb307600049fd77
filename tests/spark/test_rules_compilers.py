"""The anti-drift guarantee: each exchange's rules and Silver's checks are declared once
(``k2.exchanges.rules``, ``k2.medallion.rules``) and compiled three times: into Spark for the batch,
and for ``k2.query`` into DuckDB SQL (the exchange's canonical layout, vectorised) and Python (every
record DuckDB leaves). The same raw messages, good and bad (every poison record of the Spark tests,
unreadable payloads, each exchange's rendered trades, extra edge cases, some aimed at where DuckDB
takes over), go through Spark, Python alone, and DuckDB with Python: identical candidates, typed
values, reasons and details, and the same first copies kept."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from k2.exchanges import available, get_exchange
from k2.exchanges.duckdb import candidates_sql
from k2.feeds.events import connection_event
from k2.medallion import duckdb as silver_sql
from k2.medallion.silver import split_connection_events
from k2.medallion.tail import Classifier, Judging, first_copies
from k2.medallion.transforms.silver import classify, rank_copies, to_trades
from k2.query.sources import HEADERS
from tests.spark import test_poison_records as poison
from tests.spark.test_exchange_parsing import malformed_cases, sample_batch
from tests.spark.test_gaps import event_corpus

KAFKA_TS = poison.KAFKA_TS
COLUMNS = (
    "item_index",
    "exchange_symbol",
    "trade_id",
    "event_time",
    "price_text",
    "quantity_text",
    "taker_side",
    "symbol",
    "price",
    "quantity",
    "reason",
    "detail",
)


def corpus(name: str) -> list[bytes | None]:
    exchange = get_exchange(name)
    payloads: list[bytes | None] = [p for p, _ in malformed_cases(name).values()]
    payloads += exchange.render(sample_batch(name))
    if name == "binance":
        for i, case in enumerate(poison.BINANCE):
            payloads.append(poison.binance_payload(1000 + i, case.fields))
        payloads += [
            poison.binance_payload(7, {"p": '" 12.5 "'}),  # Spark trims decimal text
            poison.binance_payload(8, {"p": '"1.0000000000000000005"'}),  # rounds half up to 18 digits
            poison.binance_payload(9, {"s": "null"}),
            poison.binance_payload(12, {"p": '"1_000"'}),  # Python's Decimal would take it, Spark does not
            poison.binance_payload(13, {"q": r'"\u0661"'}),  # ARABIC-INDIC DIGIT ONE, as JSON escape
            poison.binance_payload(14, {"q": '"\u0661.5"'}),  # and raw (a Python escape: the character itself)
            poison.binance_payload(15, {"p": '"0x10"', "q": '"NaN"'}),
            poison.binance_payload(16, {"p": '"Infinity"'}),
            poison.binance_payload(10, {"e": '"aggTrade"'}),
            poison.binance_payload(11, {"T": str(poison.TRADE_MS - 8 * 86_400_000)}),  # stale
            # canonical, judged by DuckDB: zero, leading zeros, the largest plain values, the future
            poison.binance_payload(17, {"p": '"0.00"'}),
            poison.binance_payload(18, {"p": '"000123.50"', "q": '"7"'}),
            poison.binance_payload(19, {"p": '"9999999999.99999999"', "q": '"99999999999.99999999"'}),
            poison.binance_payload(20, {"p": '"9999.99999999"', "q": '"9999999.99999999"', "m": "true"}),
            poison.binance_payload(21, {"T": str(poison.TRADE_MS + 400_000)}),
            poison.binance_payload(22, {"p": '"65000.123456789"'}),  # 9 digits: rounds, left to Python
            poison.binance_payload(23, {"p": '"10000000000"'}),  # 1e10: left to Python
            # a trade time ahead of its Kafka timestamp (within the lead), twice; and trade 25 in the
            # layout first, then (not canonical) with a later time: the first copy keeps the first time
            poison.binance_payload(24, {"T": str(poison.TRADE_MS + 100_000)}),
            poison.binance_payload(24, {"T": str(poison.TRADE_MS + 100_000)}),
            poison.binance_payload(25, {}),
            poison.spaced(poison.binance_payload(25, {"T": str(poison.TRADE_MS + 100_000)})),
            b'{"stream":"x","data":[1,2]}',
            b'{"stream":"x","data":"trade"}',
            b"[1,2,3]",
            b"5",
        ]
    else:
        for i, case in enumerate(poison.KRAKEN):
            item = case.raw or poison.kraken_item(1000 + i, case.fields)
            payloads.append(poison.kraken_payload([poison.kraken_item(3000 + i, {}), item]))
        payloads += [
            poison.kraken_payload([poison.kraken_item(1, {})], kind="delta"),
            b'{"channel":"trade","type":5,"data":[{}]}',
            b'{"channel":"trade","data":[{}]}',
            b'{"channel":5,"type":"update","data":[]}',
            b'{"channel":"trade","type":"update","data":{"symbol":"BTC/USD"}}',
            poison.kraken_payload([poison.kraken_item(2, {"price": "1e-7", "qty": "12345678901.5"})]),
            poison.kraken_payload([poison.kraken_item(3, {"timestamp": '"2026-11-20T10:00:05.123456789Z"'})]),
            poison.kraken_payload([poison.kraken_item(4, {"timestamp": '"2026-02-30T10:00:05Z"'})]),
            poison.kraken_payload([poison.kraken_item(5, {"price": "0.1234567890123456789012345678901234567891"})]),
            poison.kraken_payload([poison.kraken_item(1, {}), poison.kraken_item(1, {})]),  # a copy in the message
            # canonical, judged by DuckDB: numbers Java writes in E notation, zeros, integers, offsets
            poison.kraken_payload(
                [
                    poison.kraken_item(6, {"qty": "0.0001"}),
                    poison.kraken_item(7, {"qty": "0.00012345", "price": "0.001"}),
                    poison.kraken_item(8, {"qty": "0.00"}),
                    poison.kraken_item(9, {"price": "65000", "qty": "2"}),
                    poison.kraken_item(10, {"price": "1234567.5", "side": '"sell"'}),
                    poison.kraken_item(11, {"timestamp": '"2026-11-20T04:30:05.123456789-05:30"'}),
                    poison.kraken_item(12, {"timestamp": '"2026-11-20T10:00:05Z"', "symbol": '"DOGE/USD"'}),
                    poison.kraken_item(13, {"timestamp": '"2026-11-20T10:08:05Z"'}),  # future
                ]
            ),
            poison.kraken_payload([poison.kraken_item(14, {"price": "12345678.5"})]),  # E7: left to Python
            poison.kraken_payload([poison.kraken_item(15, {"timestamp": '"2026-11-20T24:00:05Z"'})]),  # Python
        ]
    copies = [p for p in payloads if p][-3:]  # exact duplicates at later offsets
    return payloads + [poison.spaced(p) for p in payloads if p] + copies


def with_events(payloads: list[bytes | None]) -> tuple[list[bytes | None], list[list]]:
    """The corpus plus connection events, good and bad (k2.feeds.events), each with its headers."""
    events = event_corpus()
    return [*payloads, *(v for _, v, _ in events)], [
        *[poison.DEFAULT_HEADERS] * len(payloads),
        *(h for *_, h in events),
    ]


def spark_rows(
    spark: SparkSession, name: str, payloads: list[bytes | None], headers: list[list]
) -> tuple[dict, set, set]:
    exchange = get_exchange(name)
    rules = poison.rules_for(name)
    events, rest = split_connection_events(poison.bronze(spark, f"k2.{name}.raw", payloads, headers))
    classified = classify(exchange.parse_bronze(rest), rules)
    rows = {(r.kafka_offset, r.item_index): r.asDict() for r in classified.collect()}
    kept = rank_copies(classified).where(F.col("copy") == 1)
    trades = to_trades(kept, name, F.lit(poison.INGESTED_AT)).collect()
    routed = {r.kafka_offset for r in events.select("kafka_offset").collect()}
    return rows, {(t.kafka_offset, t.symbol, t.trade_id, t.quote_amount) for t in trades}, routed


def judging_for(name: str) -> Judging:
    """The Spark compiler's rules for ``name`` (poison.rules_for), as the other two compilers take them."""
    rules = poison.rules_for(name)
    return Judging(name, get_exchange(name).rules, rules.symbols, rules.max_event_lead_s, rules.max_event_age_s)


def python_rows(name: str, payloads: list[bytes | None], headers: list[list]) -> tuple[dict, set, set]:
    tail = Classifier(judging_for(name))
    records = [
        {
            "kafka_topic": f"k2.{name}.raw",
            "kafka_partition": 0,
            "kafka_offset": offset,
            "kafka_timestamp": KAFKA_TS,
            "ingested_at": poison.INGESTED_AT,
            "value": payload,
            "headers": h,
        }
        for offset, (payload, h) in enumerate(zip(payloads, headers, strict=True))
    ]
    classified = tail.candidates(records)
    rows = {(r["kafka_offset"], r["item_index"]): r for r in classified}
    assert len(rows) == len(classified)  # one outcome per item
    kept = {(t["kafka_offset"], t["symbol"], t["trade_id"], t["_quote"]) for t in first_copies(classified)}
    routed = {r["kafka_offset"] for r in records if connection_event(r) is not None}
    return rows, kept, routed


def records_table(name: str, payloads: list[bytes | None], headers: list[list] | None = None) -> pa.Table:
    count = len(payloads)
    headers = headers or [poison.DEFAULT_HEADERS] * count
    return pa.table(
        {
            "kafka_topic": [f"k2.{name}.raw"] * count,
            "kafka_partition": pa.array([0] * count, pa.int32()),
            "kafka_offset": pa.array(range(count), pa.int64()),
            "kafka_timestamp": pa.array([KAFKA_TS] * count, silver_sql.TIME),
            "ingested_at": pa.array([poison.INGESTED_AT] * count, silver_sql.TIME),
            "value": pa.array(payloads, pa.binary()),
            "headers": pa.array([[{"key": k, "value": v} for k, v in h] for h in headers], HEADERS),
        }
    )


def duckdb_rows(name: str, payloads: list[bytes | None], headers: list[list]) -> tuple[dict, set, list, set]:
    """Through k2.query's path: connection events dropped, then DuckDB for canonical, plain messages,
    Python for the rest. Also the reasons of the candidates DuckDB judged itself, and the events."""
    judging = judging_for(name)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("_given", records_table(name, payloads, headers))
        con.execute("CREATE TEMP TABLE records AS SELECT * FROM _given")
        silver_sql.drop_connection_events(con, "records")
        left = {r[0] for r in con.sql("SELECT kafka_offset FROM records").fetchall()}
        routed = set(range(len(payloads))) - left
        table = silver_sql.classify(con, "records", judging)
        rows = {
            (r["kafka_offset"], r["item_index"]): r
            for r in con.sql(f"SELECT * FROM {table}").to_arrow_table().to_pylist()
        }
        kept = con.sql(silver_sql.first_copies_sql(table)).to_arrow_table().to_pylist()
        handled = f"(SELECT * FROM ({candidates_sql(judging.rules, 'records')}) WHERE handled)"
        judged = silver_sql.classified_sql(handled, judging)
        reasons = [r[0] for r in con.sql(f"SELECT reason FROM ({judged})").fetchall()]
    return rows, {(t["kafka_offset"], t["symbol"], t["trade_id"], t["quote_amount"]) for t in kept}, reasons, routed


def _naive(value: object) -> object:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if isinstance(value, dt.datetime) else value


@pytest.mark.parametrize("name", available())
def test_spark_and_tail_compilers_agree(spark: SparkSession, name: str) -> None:
    payloads, headers = with_events(corpus(name))
    batch, batch_kept, batch_events = spark_rows(spark, name, payloads, headers)
    tail, tail_kept, tail_events = python_rows(name, payloads, headers)
    # connection events are neither trades nor dead letters on either path; unreadable ones are dead letters
    assert batch_events == tail_events and len(batch_events) == 5
    assert not batch_events & {offset for offset, _ in batch}
    assert sorted(batch) == sorted(tail)
    for key in sorted(batch):
        expected = {c: _naive(batch[key][c]) for c in COLUMNS}
        got = {c: _naive(tail[key][c]) for c in COLUMNS}
        assert got == expected, f"{name} offset {key[0]} item {key[1]}: {payloads[key[0]]!r}"
    assert tail_kept == batch_kept
    reasons = {r["reason"] for r in tail.values()}
    assert None in reasons and len(reasons) > 15  # valid trades and many kinds of rejects went through both
    sql, sql_kept, judged, sql_events = duckdb_rows(name, payloads, headers)
    assert sql_events == batch_events
    assert sorted(sql) == sorted(batch)
    for key in sorted(batch):
        expected = {c: _naive(batch[key][c]) for c in COLUMNS}
        got = {c: _naive(sql[key][c]) for c in COLUMNS}
        assert got == expected, f"{name} (DuckDB) offset {key[0]} item {key[1]}: {payloads[key[0]]!r}"
    assert sql_kept == batch_kept
    # DuckDB itself judged valid trades and rejects of several kinds (not only Python's leftovers)
    assert judged.count(None) >= 20
    assert {"unknown_symbol", "non_positive_price", "quote_amount_overflow", "future_timestamp"} <= set(judged)


@pytest.mark.parametrize("name", available())
def test_a_window_skips_only_records_that_cannot_bear_on_it(name: str) -> None:
    """k2.query judges only the records that can matter to a window's first copies: the same trades
    as judging every record, for windows around, inside, after and beside the corpus's trades."""
    judging = judging_for(name)
    records = records_table(name, corpus(name))
    base = KAFKA_TS.replace(second=0)
    skipped = 0
    for lo, hi in ((0, 6), (5, 6), (6, 700), (-(10**6), 10**6), (300, 600), (60, 200)):
        window = tuple(f"TIMESTAMPTZ '{(base + dt.timedelta(seconds=s)).isoformat()}'" for s in (lo, hi))
        outcomes = []
        for narrowed in (False, True):
            with duckdb.connect() as con:
                con.execute("SET TimeZone = 'UTC'")
                con.register("records", records)
                if narrowed:
                    table = silver_sql.classify_window(con, "records", judging, window)
                else:
                    table = silver_sql.classify(con, "records", judging)
                inside = f"event_time >= {window[0]} AND event_time < {window[1]}"
                kept = f"SELECT * FROM ({silver_sql.first_copies_sql(table)}) WHERE {inside}"
                trades = con.sql(f"SELECT kafka_offset, item_index, symbol, trade_id, price FROM ({kept})").fetchall()
                judged = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            outcomes.append((sorted(trades), judged))
        assert outcomes[1][0] == outcomes[0][0], (lo, hi)
        skipped += outcomes[0][1] - outcomes[1][1]
    assert skipped > 0
