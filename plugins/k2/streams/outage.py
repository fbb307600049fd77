"""A running stream's own view of a Kafka outage: Spark's Kafka source fails the query only after
three offset requests of up to a minute each (about 3.5 minutes with the broker gone), so the
supervisor would learn of an outage that late. The stream's watch loop asks the broker itself, now
and then, and stops as ``kafka_unreachable`` once nothing answered for K2_STREAM_KAFKA_OUTAGE_S."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# a probe is a metadata request from a fresh client: cheap, but not for every 5 s look
PROBE_EVERY_S = 15.0


class KafkaOutage(Exception):
    """No broker answered for ``down_s`` seconds."""

    def __init__(self, down_s: float) -> None:
        super().__init__(f"no Kafka broker answered for {down_s:.0f} s")
        self.down_s = down_s


class BrokerWatch:
    """Tracks since when ``probe`` (True: a broker answered) has been failing."""

    def __init__(
        self,
        probe: Callable[[], bool],
        allowed_s: float,
        every_s: float = PROBE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe = probe
        self.allowed_s = allowed_s
        self.every_s = min(every_s, allowed_s / 3)  # at least three probes before giving up on the broker
        self.clock = clock
        self._probed_at = -math.inf
        self._down_since: float | None = None

    def down_for(self) -> float:
        """Seconds since the first of the consecutive failed probes (0 while a broker answers),
        probing when the last probe is ``every_s`` old."""
        now = self.clock()
        if now - self._probed_at >= self.every_s:
            self._probed_at = now
            if self.probe():
                self._down_since = None
            elif self._down_since is None:
                self._down_since = now
        return 0.0 if self._down_since is None else now - self._down_since

    def check(self) -> None:
        """Raises KafkaOutage once the broker has been gone for ``allowed_s``."""
        down_s = self.down_for()
        if down_s >= self.allowed_s:
            raise KafkaOutage(down_s)
