"""The query server's recent trades (``k2.query.live.recent``): a window they hold is answered from
them exactly as the store's own read answers it, from any offsets on and for any symbols; a window
that reaches trades let go, or holds a copy that may not be its trade's only one, is left to the store."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from k2.exchanges import get_exchange
from k2.feeds.simulator import TradeSimulator
from k2.query.live.recent import MERGE_EVERY, MERGE_ROWS
from k2.query.live.store import LiveStore
from k2.query.sources import RECORD_SCHEMA
from k2.settings import Settings

UTC = dt.UTC
T = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
RATE = 200  # messages a second: a simulator's batch (2,048 messages) is about 10 s of a feed
PARTITIONS = 3


def polls(batches: int) -> list[pa.Table]:
    """Binance's simulated trades as a feed publishes them, one poll per simulator batch: keyed by
    symbol to a partition, stamped by Kafka 0.2 s after their event."""
    binance = get_exchange("binance")
    start_us = int(T.timestamp() * 1e6)
    simulator = TradeSimulator(binance, list(binance.default_symbols), seed=7, rate=RATE, start_us=start_us)
    offsets, out = [0] * PARTITIONS, []
    for b in range(batches):
        batch = simulator.next_batch()
        partitions = [hash(key) % PARTITIONS for key in batch.keys]
        rows = []
        for i, (payload, p) in enumerate(zip(batch.payloads, partitions, strict=True)):
            stamp = T + dt.timedelta(seconds=(b * len(batch.payloads) + i) / RATE + 0.2)
            rows.append((p, offsets[p], payload, stamp))
            offsets[p] += 1
        columns = list(zip(*rows, strict=True))
        out.append(
            pa.table(
                {
                    "kafka_topic": ["t.binance.raw"] * len(rows),
                    "kafka_partition": pa.array(columns[0], pa.int32()),
                    "kafka_offset": pa.array(columns[1], pa.int64()),
                    "kafka_timestamp": list(columns[3]),
                    "ingested_at": [None] * len(rows),
                    "value": pa.array(columns[2], pa.binary()),
                    "headers": [[] for _ in rows],
                },
                schema=RECORD_SCHEMA,
            )
        )
    return out


def stores(
    tmp_path, recent_s: float, merge_every: int = MERGE_EVERY, merge_rows: int = MERGE_ROWS
) -> tuple[LiveStore, LiveStore]:
    """A store keeping ``recent_s`` seconds of recent trades, merged by ``merge_every`` rounds or
    ``merge_rows`` trades, and one keeping none, fed the same polls."""
    made = []
    for name, keep in (("recent", recent_s), ("plain", 0)):
        settings = Settings.from_env({}, home=tmp_path / name, exchanges=["binance"], query_recent_s=keep)
        made.append(LiveStore(settings, tmp_path / name / "spill"))
    made[0]._recent["binance"]._merge_every, made[0]._recent["binance"]._merge_rows = merge_every, merge_rows
    for poll in polls(6):  # about a minute
        for store in made:
            store.add("binance", poll)
    return made[0], made[1]


def rows(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table.column(c).to_pylist() for c in table.schema.names), strict=True))


# the six polls' rounds kept merged two by two, merged by 300 trades (BTCUSDT's rounds hold more: they
# stay alone), or single, as judged (the defaults merge by more than six)
MERGES = {"by_two": (2, MERGE_ROWS), "by_300_trades": (MERGE_EVERY, 300), "single": (MERGE_EVERY, MERGE_ROWS)}


@pytest.fixture(params=list(MERGES))
def pair(tmp_path, request):
    recent, plain = stores(tmp_path, 600, *MERGES[request.param])
    yield recent, plain
    recent.close()
    plain.close()


@pytest.mark.parametrize("symbols", [None, ["BTCUSDT"], ["ETH-USDT", "SOLUSDT"], ["DOGE-EUR"]])
@pytest.mark.parametrize("from_offsets", [{}, {0: 250, 1: 40}])
def test_recent_trades_answer_as_the_store_reads(pair, symbols, from_offsets) -> None:
    recent, plain = pair
    for window in ((T, T + dt.timedelta(minutes=2)), (T + dt.timedelta(seconds=13.3), T + dt.timedelta(seconds=41.7))):
        named = recent._named("binance", symbols)
        kept = recent._recent["binance"].trades(*window, named, from_offsets)
        assert kept is not None  # answered from the recent trades, not the store
        answer = recent.first_copies("binance", *window, symbols, from_offsets)
        assert answer.schema == plain.first_copies("binance", *window, symbols, from_offsets).schema
        assert rows(answer) == rows(plain.first_copies("binance", *window, symbols, from_offsets))
        if symbols != ["DOGE-EUR"]:
            assert answer.num_rows > 100  # about trades, not two empty answers


def test_rounds_are_kept_merged_in_one_chunk(tmp_path) -> None:
    recent, plain = stores(tmp_path, recent_s=600, merge_every=2)
    try:
        window = (T, T + dt.timedelta(minutes=2))
        answer = recent._recent["binance"].trades(*window, {"BTC-USDT"}, {})
        assert answer.column("price").num_chunks == 3  # six rounds, two by two
        assert rows(answer) == rows(plain.first_copies("binance", *window, ["BTCUSDT"], {}))
    finally:
        recent.close()
        plain.close()


@pytest.mark.parametrize("merge", list(MERGES))
def test_a_window_reaching_trades_let_go_is_read_from_the_store(tmp_path, merge) -> None:
    recent, plain = stores(tmp_path, 20, *MERGES[merge])  # about the last two polls kept
    try:
        late = (T + dt.timedelta(seconds=45), T + dt.timedelta(minutes=2))
        whole = (T, T + dt.timedelta(minutes=2))
        assert recent._recent["binance"].trades(*late, {"BTC-USDT"}, {}) is not None
        assert recent._recent["binance"].trades(*whole, {"BTC-USDT"}, {}) is None
        for window in (late, whole):
            answer = recent.first_copies("binance", *window, ["BTCUSDT"], {})
            assert rows(answer) == rows(plain.first_copies("binance", *window, ["BTCUSDT"], {}))
            assert answer.num_rows > 100
    finally:
        recent.close()
        plain.close()


def test_a_window_with_a_contested_copy_is_read_from_the_store(pair) -> None:
    recent, plain = pair
    again = polls(1)[0].slice(100, 5)  # five records delivered twice: their trades' later copies are contested
    offsets = again.column("kafka_offset").to_pylist()
    again = again.set_column(2, "kafka_offset", pa.array([o + 100_000 for o in offsets], pa.int64()))
    for store in (recent, plain):
        store.add("binance", again)
    window = (T, T + dt.timedelta(minutes=2))
    assert recent._recent["binance"].trades(*window, recent._named("binance", None), {}) is None
    answer = recent.first_copies("binance", *window, None, {})
    assert rows(answer) == rows(plain.first_copies("binance", *window, None, {}))
    assert set(offsets) <= set(answer.column("kafka_offset").to_pylist())  # the first copies, not the later ones
