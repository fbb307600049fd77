"""Silver + Gold for N Bronze trades on local[2], against DuckDB running the same transformation
in SQL over the same Parquet files, in the same run.

    .venv/bin/python benchmarks/batch_medallion.py [--trades 10000000] [--gates]

Both engines parse the same Bronze payloads, validate them with the same rules, de-duplicate per
(exchange, symbol, trade id), write Silver, then build 1m bars and roll them up to 5m, 1h and 1d,
writing every result. Spark runs K2's own job (spark_jobs/medallion.py: MERGE into Iceberg);
DuckDB writes Parquet files. Prints a table, writes benchmarks/results/batch_medallion.json.
Target (issue 6): Spark within 3x DuckDB's time. With ``--gates`` Spark runs K2's Great
Expectations gates too (DuckDB has none), and the table adds what each gate's steps cost against
the rest of its task, measured in the same run (issue 14: Silver's gate adds <= 25% on 10M trades).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

from _harness import progress, write_results

from k2.exchanges import get_exchange
from k2.feeds.simulator import TradeSimulator
from k2.lake.catalog import load_catalog
from k2.lake.tables import all_tables, bronze_table, ensure_tables
from k2.medallion.interval import Interval
from k2.settings import Settings

START_US = int(dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC).timestamp() * 1_000_000)


def fill_bronze(settings: Settings, trades: int, chunk: int = 1_000_000) -> list[str]:
    """Simulated Binance trades as Bronze rows (one trade per record); returns the data files."""
    import pyarrow as pa

    exchange = get_exchange("binance")
    table = load_catalog(settings.lake).load_table(bronze_table("binance").identifier)
    schema = table.schema().as_arrow()
    # 2,800 trades/s of event time: the whole set falls in one hour, like an hourly interval
    sim = TradeSimulator(exchange, list(exchange.default_symbols), seed=1, rate=2_800, start_us=START_US)
    written, offset = 0, 0
    while written < trades:
        payloads: list[bytes] = []
        keys: list[bytes] = []
        while len(payloads) < min(chunk, trades - written):
            batch = sim.next_batch()
            payloads += batch.payloads
            keys += batch.keys
        payloads, keys = payloads[: min(chunk, trades - written)], keys[: min(chunk, trades - written)]
        n = len(payloads)
        kafka_ts = [START_US + (offset + i) * 357 + 50_000 for i in range(n)]  # just after event time
        columns = {
            "kafka_topic": pa.array([settings.topic_for("binance")] * n),
            "kafka_partition": pa.array([0] * n, pa.int32()),
            "kafka_offset": pa.array(range(offset, offset + n), pa.int64()),
            "kafka_timestamp": pa.array(kafka_ts, pa.timestamp("us", "UTC")),
            "kafka_timestamp_type": pa.array([0] * n, pa.int32()),
            "key": pa.array(keys, pa.binary()),
            "value": pa.array(payloads, pa.binary()),
            "headers": pa.array([[]] * n, schema.field("headers").type),
            "ingested_at": pa.array(kafka_ts, pa.timestamp("us", "UTC")),
        }
        table.append(pa.Table.from_pydict(columns, schema=schema))
        written += n
        offset += n
        progress(f"bronze: {written:,} / {trades:,} trades")
    table = load_catalog(settings.lake).load_table(bronze_table("binance").identifier)
    return [task.file.file_path.removeprefix("file://") for task in table.scan().plan_files()]


def run_spark(settings: Settings, interval: Interval, gated: bool) -> dict:
    from k2.medallion.job import quality_gate, run
    from k2.spark import build_spark_session

    gate = quality_gate(settings) if gated else lambda *_: {}
    spark = build_spark_session(settings, "k2-bench-medallion")
    try:
        started = time.perf_counter()
        silver = run(spark, settings, "silver", interval, gate=gate)
        silver_s = time.perf_counter() - started
        gold = run(spark, settings, "gold", interval, gate=gate)
        total = time.perf_counter() - started
    finally:
        spark.stop()
    return {
        "seconds": round(total, 2),
        "silver_s": round(silver_s, 2),
        "gold_s": round(total - silver_s, 2),
        "silver_rows": silver.silver_new,
        "dead_letters": silver.dead_letters,
        "bars": gold.bars,
        "steps_s": {"silver": silver.steps_s, "gold": gold.steps_s},
    }


def gate_share(steps_s: dict[str, float]) -> dict[str, float]:
    """A task's gate steps (Silver's ``gate_bronze`` and ``gate_silver``, Gold's ``gates``) in
    seconds and as a share of its other steps: what the gates add to the task's time."""
    gates = sum(v for k, v in steps_s.items() if k.startswith("gate"))
    rest = sum(v for k, v in steps_s.items() if not k.startswith("gate"))
    return {"gates_s": round(gates, 2), "rest_s": round(rest, 2), "adds": round(gates / rest, 3) if rest else 0.0}


DUCKDB_SQL = """
CREATE TEMP TABLE parsed AS
SELECT kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, ingested_at,
       decode(value) AS payload
FROM read_parquet({files});

CREATE TEMP TABLE candidates AS
SELECT *, json_extract_string(doc, '$.data.s') AS exchange_symbol,
       json_extract_string(doc, '$.data.t') AS trade_id,
       make_timestamp(TRY_CAST(json_extract_string(doc, '$.data.T') AS BIGINT) * 1000) AS event_time,
       TRY_CAST(json_extract_string(doc, '$.data.p') AS DECIMAL(38,18)) AS price,
       TRY_CAST(json_extract_string(doc, '$.data.q') AS DECIMAL(38,18)) AS quantity,
       CASE json_extract_string(doc, '$.data.m') WHEN 'true' THEN 'sell' WHEN 'false' THEN 'buy' END AS taker_side,
       json_extract_string(doc, '$.data.e') AS kind
FROM (SELECT *, CASE WHEN json_valid(payload) THEN payload END AS doc FROM parsed);

CREATE TEMP TABLE classified AS
SELECT *, CASE
    WHEN doc IS NULL THEN 'malformed_json'
    WHEN kind IS DISTINCT FROM 'trade' THEN 'not_a_trade'
    WHEN exchange_symbol NOT IN {symbols} THEN 'unknown_symbol'
    WHEN trade_id IS NULL THEN 'missing_trade_id'
    WHEN price IS NULL THEN 'invalid_price' WHEN price <= 0 THEN 'non_positive_price'
    WHEN quantity IS NULL THEN 'invalid_quantity' WHEN quantity <= 0 THEN 'non_positive_quantity'
    WHEN taker_side IS NULL THEN 'invalid_side' WHEN event_time IS NULL THEN 'invalid_timestamp'
    WHEN event_time > kafka_timestamp + INTERVAL 300 SECOND THEN 'future_timestamp'
    WHEN event_time < kafka_timestamp - INTERVAL 604800 SECOND THEN 'stale_timestamp'
  END AS reason
FROM candidates;

COPY (SELECT kafka_topic, kafka_partition, kafka_offset, reason, payload FROM classified WHERE reason IS NOT NULL)
  TO '{out}/dead_letter.parquet' (FORMAT parquet, COMPRESSION zstd);

CREATE TEMP TABLE silver AS
SELECT 'binance' AS exchange, exchange_symbol, trade_id, event_time, price, quantity,
       CAST(CAST(price AS DECIMAL(19,8)) * CAST(quantity AS DECIMAL(19,8)) AS DECIMAL(38,18)) AS quote_amount,
       taker_side,
       kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, ingested_at AS bronze_ingested_at
FROM classified WHERE reason IS NULL
QUALIFY row_number() OVER (PARTITION BY exchange_symbol, trade_id ORDER BY kafka_partition, kafka_offset) = 1;
COPY silver TO '{out}/silver.parquet' (FORMAT parquet, COMPRESSION zstd);

CREATE TEMP TABLE bars_1m AS
SELECT exchange, exchange_symbol AS symbol, time_bucket(INTERVAL 1 MINUTE, event_time) AS bar_start,
       arg_min(price, (event_time, length(trade_id), trade_id)) AS open, max(price) AS high, min(price) AS low,
       arg_max(price, (event_time, length(trade_id), trade_id)) AS close,
       sum(quantity) AS volume_base, sum(quote_amount) AS volume_quote, count(*) AS trade_count,
       sum(CASE WHEN taker_side = 'buy' THEN quantity ELSE 0 END) AS taker_buy_base,
       sum(CASE WHEN taker_side = 'sell' THEN quantity ELSE 0 END) AS taker_sell_base
FROM silver GROUP BY ALL;
COPY (SELECT *, volume_quote / volume_base AS vwap FROM bars_1m) TO '{out}/ohlcv_1m.parquet' (FORMAT parquet);
"""

ROLL_UP = """
COPY (SELECT exchange, symbol, time_bucket(INTERVAL {width}, bar_start) AS bar_start,
             arg_min(open, bar_start) AS open, max(high) AS high, min(low) AS low, arg_max(close, bar_start) AS close,
             sum(volume_base) AS volume_base, sum(volume_quote) AS volume_quote,
             sum(volume_quote) / sum(volume_base) AS vwap, sum(trade_count) AS trade_count,
             sum(taker_buy_base) AS taker_buy_base, sum(taker_sell_base) AS taker_sell_base
      FROM bars_1m GROUP BY ALL) TO '{out}/ohlcv_{name}.parquet' (FORMAT parquet);
"""


def run_duckdb(files: list[str], out: Path) -> dict:
    import duckdb

    symbols = "(" + ", ".join(f"'{s}'" for s in get_exchange("binance").instruments) + ")"
    con = duckdb.connect(config={"threads": str(os.cpu_count() or 2), "memory_limit": "8GB"})
    started = time.perf_counter()
    con.execute(DUCKDB_SQL.format(files=[str(f) for f in files], out=out, symbols=symbols))
    for name, width in (("5m", "5 MINUTE"), ("1h", "1 HOUR"), ("1d", "1 DAY")):
        con.execute(ROLL_UP.format(width=width, name=name, out=out))
    seconds = time.perf_counter() - started
    silver_rows = con.execute("SELECT count(*) FROM silver").fetchone()[0]
    bars = con.execute("SELECT count(*) FROM bars_1m").fetchone()[0]
    con.close()
    return {"seconds": round(seconds, 2), "silver_rows": silver_rows, "bars_1m": bars}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--gates", action="store_true", help="run K2's quality gates in Spark's tasks too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="k2-bench-batch-") as home:
        settings = Settings.from_env(
            {},
            home=Path(home),
            spark_ui_enabled="false",
            exchanges=("binance",),
            spark_driver_memory=args.driver_memory,
        )
        ensure_tables(load_catalog(settings.lake), all_tables(settings))
        progress(f"writing {args.trades:,} Bronze trades")
        files = fill_bronze(settings, args.trades)
        day = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
        interval = Interval("binance", day, day + dt.timedelta(days=1))
        progress("DuckDB: Silver + Gold in SQL")
        out = Path(home) / "duckdb"
        out.mkdir()
        duck = run_duckdb(files, out)
        progress(f"Spark (K2's job, local mode{', gated' if args.gates else ''}): Silver + Gold into Iceberg")
        spark = run_spark(settings, interval, args.gates)
    ratio = spark["seconds"] / duck["seconds"]
    results = {
        "trades": args.trades,
        "spark": spark,
        "duckdb": duck,
        "spark_over_duckdb": round(ratio, 2),
        "target_ratio": 3.0,
        "met": ratio <= 3.0,
        "rows_per_s": {"spark": round(args.trades / spark["seconds"]), "duckdb": round(args.trades / duck["seconds"])},
        "gates": args.gates,
    }
    if args.gates:
        results["gate_share"] = {task: gate_share(steps) for task, steps in spark["steps_s"].items()}
    print(f"{'engine':<8} {'seconds':>9} {'trades/s':>10} {'silver rows':>12}")
    for name in ("spark", "duckdb"):
        r = results[name]
        print(f"{name:<8} {r['seconds']:>9.1f} {results['rows_per_s'][name]:>10,} {r['silver_rows']:>12,}")
    print(f"Spark / DuckDB = {ratio:.2f} (target <= 3.0: {'met' if results['met'] else 'NOT met'})")
    for task, share in results.get("gate_share", {}).items():
        target = " (target <= 25%)" if task == "silver" else ""
        print(
            f"{task} gates {share['gates_s']:.1f} s on {share['rest_s']:.1f} s of its other steps: "
            f"+{share['adds']:.0%}{target}"
        )
    print(f"results: {write_results('batch_medallion', results)}")


if __name__ == "__main__":
    main()
