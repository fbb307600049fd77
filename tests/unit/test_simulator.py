import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal

import pytest

from k2.errors import K2Error
from k2.exchanges import get_exchange
from k2.feeds.simulator import MALFORMED_KINDS, FaultPlan, TradeSimulator

START_US = 1_750_000_000_000_000


def simulator(name: str, seed: int = 7, faults: FaultPlan | None = None, rate: float = 1000) -> TradeSimulator:
    ex = get_exchange(name)
    return TradeSimulator(ex, list(ex.default_symbols), seed=seed, rate=rate, start_us=START_US, faults=faults)


@pytest.mark.parametrize("name", ["binance", "kraken"])
def test_same_seed_same_bytes_other_seed_other_bytes(name: str) -> None:
    a, b, c = simulator(name), simulator(name), simulator(name, seed=8)
    first = [a.next_batch().payloads for _ in range(2)]
    assert first == [b.next_batch().payloads for _ in range(2)]
    assert first[0] != c.next_batch().payloads


def test_binance_trades_are_on_the_grid_with_contiguous_ids_per_symbol() -> None:
    sim = simulator("binance")
    ex = sim.exchange
    ids = defaultdict(list)
    for payload in sim.next_batch().payloads:
        data = json.loads(payload)["data"]
        inst = ex.instruments[data["s"]]
        assert -Decimal(data["p"]).as_tuple().exponent == inst.price_decimals
        assert -Decimal(data["q"]).as_tuple().exponent == inst.qty_decimals
        assert Decimal(data["p"]) > 0 and Decimal(data["q"]) > 0
        assert abs(float(data["p"]) / inst.reference_price - 1) < 0.2
        ids[data["s"]].append(data["t"])
    assert len(ids) == len(ex.default_symbols)
    for series in ids.values():
        assert series == list(range(series[0], series[0] + len(series)))


def test_event_time_follows_the_rate() -> None:
    sim = simulator("binance", rate=2000)
    times = [json.loads(p)["data"]["T"] for p in sim.next_batch().payloads]
    assert times[0] >= START_US // 1000
    assert times == sorted(times)
    # 2048 messages at 2000 msg/s span about 1.024 s of event time
    assert 1000 <= times[-1] - times[0] <= 1030


def test_kraken_batches_several_trades_and_starts_with_snapshots() -> None:
    batch = simulator("kraken").next_batch()
    docs = [json.loads(p) for p in batch.payloads]
    assert any(len(d["data"]) > 1 for d in docs)
    assert all(len({t["symbol"] for t in d["data"]}) == 1 for d in docs)
    assert batch.trade_counts == [len(d["data"]) for d in docs]
    snapshots = [d["data"][0]["symbol"] for d in docs if d["type"] == "snapshot"]
    assert sorted(snapshots) == sorted(get_exchange("kraken").default_symbols)


def test_fault_plan_parsing() -> None:
    assert FaultPlan.parse("") == FaultPlan()
    assert FaultPlan.parse("duplicate=0.01, late=0.2") == FaultPlan(duplicate=0.01, late=0.2)
    for bad, message in [("dup=0.1", "unknown fault kind"), ("late=x", "not a number"), ("late=0.9", "outside")]:
        with pytest.raises(K2Error, match=message):
            FaultPlan.parse(bad)


@pytest.mark.parametrize("name", ["binance", "kraken"])
def test_every_fault_is_reported_and_real(name: str) -> None:
    sim = simulator(name, faults=FaultPlan(duplicate=0.05, malformed=0.1, late=0.05, out_of_order=0.05))
    batch = sim.next_batch()
    kinds = {f.kind for f in batch.faults.values()}
    assert kinds == {"duplicate", "malformed", "late", "out_of_order"}
    variants = {f.detail for f in batch.faults.values() if f.kind == "malformed"}
    assert variants == set(MALFORMED_KINDS)
    price = sim.exchange.price_field
    for index, fault in batch.faults.items():
        payload = batch.payloads[index]
        if fault.kind == "duplicate":
            assert payload == batch.payloads[index - 1]
        elif fault.kind == "malformed":
            _assert_broken(name, payload, fault.detail, price, len(fault.trade_ids))
        elif fault.kind == "late":
            clean_after = next(i for i in range(index + 1, len(batch.payloads)) if i not in batch.faults)
            assert _trade_time_s(name, payload) < _trade_time_s(name, batch.payloads[clean_after]) - 29
    assert len(batch.payloads) == len(batch.keys) == len(batch.trade_counts)


def _trade_time_s(name: str, payload: bytes) -> float:
    doc = json.loads(payload)
    if name == "binance":
        return doc["data"]["T"] / 1000
    return dt.datetime.fromisoformat(doc["data"][0]["timestamp"]).timestamp()


def _assert_broken(name: str, payload: bytes, variant: str, price_field: str, trades: int) -> None:
    """The damage is real; in a batch message (Kraken) only the first trade is damaged."""
    if variant in ("truncated_json", "not_utf8", "empty"):
        with pytest.raises(ValueError):
            json.loads(payload)
        return
    text = payload.decode()
    if variant == "missing_price":
        assert text.count(f'"{price_field}":') == trades - 1
    elif variant == "bad_number":
        assert f'"{price_field}":"abc"' in text
    elif variant == "non_positive_price":
        assert f'"{price_field}":"-1"' in text or f'"{price_field}":0' in text
    elif variant == "future_time":
        assert _trade_time_s(name, payload) > START_US / 1e6 + 30 * 365 * 86400
    elif variant == "ancient_time":
        assert _trade_time_s(name, payload) < START_US / 1e6 - 30 * 365 * 86400
