"""Maximum sustained simulator+producer rate per exchange, against the bare produce ceiling.

Both are measured in the same run, on the same embedded broker, with the same producer
configuration and the same records: the bare loop produces pre-generated payloads (with the same
keys and headers) as fast as confluent-kafka can, so the ratio is what generation costs.

    .venv/bin/python benchmarks/feed_throughput.py [--messages 300000] [--repeats 3]

Prints a table and writes benchmarks/results/feed_throughput.json.
Targets (issue 3): Binance >= 50,000 msg/s and >= 70% of the bare ceiling.
"""

from __future__ import annotations

import argparse
import time

from _harness import embedded_broker, median, progress, write_results

from k2.exchanges import get_exchange
from k2.feeds.producer import TradeProducer, producer_config
from k2.feeds.runner import run_simulated_feed
from k2.feeds.simulator import TradeSimulator
from k2.kafka.topics import ensure_topics


def bare_loop(settings, exchange, payloads: list[bytes], keys: list[bytes], *, headers: bool) -> float:
    """msg/s of the plainest produce loop over ready-made records."""
    from confluent_kafka import Producer

    producer = Producer(producer_config(settings.kafka, **{"delivery.report.only.error": True}))
    topic = settings.topic_for(exchange.name)
    hdrs = (
        [
            ("exchange", exchange.name.encode()),
            ("format", exchange.payload_format.encode()),
            ("received_at", str(time.time_ns() // 1000).encode()),
        ]
        if headers
        else None
    )
    started = time.perf_counter()
    for payload, key in zip(payloads, keys, strict=True):
        while True:
            try:
                producer.produce(topic, payload, key, headers=hdrs)
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(60)
    elapsed = time.perf_counter() - started
    producer.close()
    assert remaining == 0, f"{remaining} records undelivered"
    return len(payloads) / elapsed


def simulated(settings, exchange, count: int) -> float:
    producer = TradeProducer(settings, exchange, report_successes=False)
    summary = run_simulated_feed(
        producer, exchange, list(exchange.default_symbols), rate=0, count=count, progress_every_s=3600
    )
    assert summary.ok, summary.delivery
    return summary.messages / summary.elapsed_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    results: dict = {"messages_per_run": args.messages, "repeats": args.repeats, "exchanges": {}}
    with embedded_broker() as settings:
        ensure_topics(settings)
        for name in ("binance", "kraken"):
            exchange = get_exchange(name)
            sim = TradeSimulator(
                exchange, list(exchange.default_symbols), seed=1, rate=0, start_us=time.time_ns() // 1000
            )
            payloads: list[bytes] = []
            keys: list[bytes] = []
            while len(payloads) < args.messages:
                batch = sim.next_batch()
                payloads += batch.payloads
                keys += batch.keys
            payloads, keys = payloads[: args.messages], keys[: args.messages]
            runs: dict[str, list[float]] = {"bare_no_headers": [], "bare_same_records": [], "simulator": []}
            for r in range(args.repeats):  # interleaved, so drift hits all three alike
                progress(f"{name} repeat {r + 1}/{args.repeats}")
                runs["bare_no_headers"].append(bare_loop(settings, exchange, payloads, keys, headers=False))
                runs["bare_same_records"].append(bare_loop(settings, exchange, payloads, keys, headers=True))
                runs["simulator"].append(simulated(settings, exchange, args.messages))
            med = {k: round(median(v)) for k, v in runs.items()}
            results["exchanges"][name] = {
                "msg_per_s_median": med,
                "runs": {k: [round(x) for x in v] for k, v in runs.items()},
                "simulator_vs_bare": round(med["simulator"] / med["bare_same_records"], 3),
                "avg_payload_bytes": round(sum(map(len, payloads)) / len(payloads), 1),
            }
    b = results["exchanges"]["binance"]
    results["targets"] = {
        "binance_min_msg_per_s": 50_000,
        "binance_min_ratio": 0.70,
        "met": b["msg_per_s_median"]["simulator"] >= 50_000 and b["simulator_vs_bare"] >= 0.70,
    }
    path = write_results("feed_throughput", results)

    print(f"{'exchange':10} {'bare, no headers':>18} {'bare, same records':>19} {'simulator':>11} {'ratio':>7}")
    for name, r in results["exchanges"].items():
        m = r["msg_per_s_median"]
        print(
            f"{name:10} {m['bare_no_headers']:>18,} {m['bare_same_records']:>19,} {m['simulator']:>11,} "
            f"{r['simulator_vs_bare']:>7.0%}"
        )
    print(f"targets met: {results['targets']['met']}  (written to {path})")


if __name__ == "__main__":
    main()
