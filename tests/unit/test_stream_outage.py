"""The stream's own outage rule: a broker gone for the allowed time stops the stream; a broker that
answers in between resets the count; probes are spaced, not made on every look."""

from __future__ import annotations

import pytest

from k2.streams.outage import BrokerWatch, KafkaOutage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_broker_gone_for_the_allowed_time_raises_with_how_long() -> None:
    clock, answers = Clock(), []
    watch = BrokerWatch(lambda: answers.append(clock.now) or False, allowed_s=60, every_s=15, clock=clock)
    for _ in range(12):  # one look every 5 s for 55 s: gone, but not long enough
        watch.check()
        clock.now += 5
    assert answers == [1000.0, 1015.0, 1030.0, 1045.0]  # probed every 15 s, not on each look
    clock.now = 1060.0
    with pytest.raises(KafkaOutage) as outage:
        watch.check()
    assert outage.value.down_s == 60.0 and "60 s" in str(outage.value)


def test_a_broker_that_answers_in_between_starts_the_count_again() -> None:
    clock, replies = Clock(), iter([False, False, True, False, False, False, False, False])
    watch = BrokerWatch(lambda: next(replies), allowed_s=50, every_s=15, clock=clock)
    for _ in range(7):  # down at 1000 and 1015, up at 1030, down again from 1045 (45 s at 1090)
        watch.check()
        clock.now += 15
    with pytest.raises(KafkaOutage) as outage:
        watch.check()  # at 1105: 60 s since 1045, not 105 s since 1000
    assert outage.value.down_s == 60.0


def test_a_short_allowance_is_probed_at_least_three_times() -> None:
    assert BrokerWatch(lambda: True, allowed_s=20, every_s=15).every_s == pytest.approx(20 / 3)


class WaitingQuery:
    """A streaming query that waits for data: it never ends by itself."""

    def awaitTermination(self, timeout_s: float) -> bool:  # pyspark's name
        return False


def test_a_query_waiting_for_data_under_an_ended_application_stops_the_stream(tmp_path) -> None:
    import threading

    from k2.docstore import FileDocs
    from k2.streams.job import StreamExit, watch

    looks = []
    ended = iter([False, False, True])
    with pytest.raises(StreamExit) as stopped:
        watch(
            WaitingQuery(),
            FileDocs(tmp_path),  # no stop request, no lease
            threading.Event(),
            lambda state, **fields: looks.append(state),
            every_s=0,
            application_ended=lambda: next(ended),
        )
    assert stopped.value.reason == "application_ended" and "master" in stopped.value.cause
    assert looks == ["running", "running"]  # it beat while the application lived
