"""A broker outage under a supervised stream, on a broker of the test's own (the session's broker
serves the other tests): stopped mid-stream for longer than the stream allows Kafka to be gone,
restarted; the stream stops itself as `kafka_unreachable`, the supervisor waits the outage out
without giving up, and Bronze ends up holding every record Kafka holds, once."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from k2.runtime.broker import LocalKafkaBroker
from k2.streams.state import StreamPaths, read_json
from k2.streams.supervisor import StreamSupervisor
from tests.helpers import free_port, wait_for
from tests.integration.stream_support import (
    EXCHANGE,
    BackgroundFeed,
    Checks,
    bronze_coordinates,
    ensure_topics_and_tables,
    isolated_installation,
    running_job,
)
from tests.integration.test_bronze_streams import end_offsets

pytestmark = pytest.mark.integration

OUTAGE_S = 60  # three times the allowance: detected well before the end, then waited out
ALLOWED_S = 20  # K2_STREAM_KAFKA_OUTAGE_S, 60 by default


@pytest.fixture
def own_broker(jars, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    settings = isolated_installation(
        tmp_path / "home",
        free_port(),
        free_port(),
        monkeypatch,
        K2_STREAM_STALL_TIMEOUT_S="30",
        K2_STREAM_MAX_RESTARTS_PER_HOUR="3",  # an outage counted as restarts would end supervision
        K2_STREAM_KAFKA_OUTAGE_S=str(ALLOWED_S),
    )
    broker = LocalKafkaBroker(settings)
    broker.start()
    ensure_topics_and_tables(settings)
    yield settings, broker
    StreamSupervisor(settings, EXCHANGE).request_stop(timeout_s=60)
    broker.stop()


def test_a_broker_down_for_longer_than_the_stream_allows_is_waited_out_and_bronze_loses_nothing(
    own_broker, tmp_path: Path
) -> None:
    settings, broker = own_broker
    paths = StreamPaths.of(settings, EXCHANGE)
    feed = BackgroundFeed(settings, rate=500, client_log=tmp_path / "feed-kafka-client.log")
    checks = Checks(every_s=3)
    try:
        wait_for(lambda: running_job(paths), 240, "the supervised stream's first batch")
        broker.stop()
        stopped_at = time.monotonic()
        # the stream stops itself once no broker answered its probes (every ALLOWED_S / 3) for ALLOWED_S,
        # long before Spark's Kafka source would give up (about 3.5 min); then the supervisor's next check
        wait_for(lambda: (read_json(paths.supervisor) or {}).get("outage"), 60, "the supervisor to see the outage")
        assert time.monotonic() - stopped_at < OUTAGE_S
        stream_log = paths.log_file.read_text(errors="replace")  # the stream's own words, not Spark's failure
        gone_for = [int(s) for s in re.findall(r"no Kafka broker at \S+ answered for (\d+) s", stream_log)]
        assert gone_for and ALLOWED_S <= gone_for[0] <= ALLOWED_S + 10, stream_log[-3000:]
        # the outage lasts its full length: the stream is down and the supervisor keeps waiting
        wait_for(lambda: time.monotonic() - stopped_at >= OUTAGE_S, OUTAGE_S + 10, "the outage to last", interval=1)
        assert (read_json(paths.supervisor) or {}).get("gave_up_at") is None
        broker.start()
        restarted_at = time.time()
        wait_for(lambda: running_job(paths, after=restarted_at), 300, "the stream to run again after the outage")
        summary = feed.finish()
        assert summary.delivery.delivered > 0
        ends = end_offsets(settings)
        wait_for(lambda: len(bronze_coordinates(settings)) >= sum(ends.values()), 300, "Bronze to catch up with Kafka")
        coords = bronze_coordinates(settings)
        assert len(coords) == len(set(coords)), "a record is in Bronze twice"
        for partition, end in ends.items():
            assert sorted(o for p, o in coords if p == partition) == list(range(end)), f"partition {partition} gap"
        # the first check that finds the stream making progress again ends the outage (and alerts once)
        wait_for(lambda: (read_json(paths.supervisor) or {}).get("outage") is None, 60, "a check to end the outage")
        assert (read_json(paths.supervisor) or {}).get("gave_up_at") is None
    finally:
        feed.stop()
        log = checks.stop()  # the alerts, as the checks raised them
        StreamSupervisor(settings, EXCHANGE).request_stop(timeout_s=60)
    assert "is waiting: Kafka" in log or "is waiting: kafka" in log.lower(), log[-3000:]
    assert "runs again after" in log
