"""Query the lake to the last second: trades and OHLCV bars from Silver/Gold, unprocessed Bronze and
the Kafka tail, merged by the batch's own rules; results as Arrow, pandas, CSV, Parquet or a table,
and SQL over them in DuckDB (the k2 command's query subcommand).

    >>> import k2.query as q
    >>> q.trades(["binance"], ["BTCUSDT"], since="60s")                 # pyarrow.Table
    >>> q.bars("1m", ["binance"], ["BTC-USDT"], since="1h").to_pandas()
    >>> q.sql("SELECT symbol, count(*) AS n FROM trades GROUP BY 1", ["binance"], since="5m")

With the broker out of reach, an answer holds what Silver, Gold and Bronze hold and warns
``q.PartialAnswer`` (``q.partial_notes(table)`` lists what it lacks); to fail instead:
``warnings.simplefilter("error", q.PartialAnswer)``.
"""

from __future__ import annotations

from k2.query.api import bars, connect, sql, trades, window
from k2.query.partial import PartialAnswer, partial_notes

__all__ = ["PartialAnswer", "bars", "connect", "partial_notes", "sql", "trades", "window"]
