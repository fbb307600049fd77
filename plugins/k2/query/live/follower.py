"""Each exchange's topic followed from where Silver's work ends: every record judged once, on
arrival, into the query server's ``LiveStore``; Silver's coverage followed, so the store forgets what
a batch has processed; and queries told when the store holds every record Kafka had when they came."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from k2.kafka.topics import admin_client
from k2.log import get_logger
from k2.query.live.boundary import Processed, coverage_end, processed
from k2.query.live.store import LiveStore
from k2.query.sources import from_messages, outage
from k2.settings import Settings

log = get_logger(__name__)
REFRESH_S = 5.0  # how often the server looks for a new batch in the ledger and keeps minute partials
# records are judged together once this many have arrived, or after this long: a judging round has a
# fixed cost (five DuckDB statements, 15 ms on an idle core and several times that on loaded ones),
# which rounds of a few hundred records (a quiet feed) would pay again and again; a query that waits
# for records has them judged as soon as they arrive, whatever these say
JUDGE_AT = 5_000
JUDGE_EVERY_S = 5.0
# how long a poll waits for records: a query's end offsets are seen after a poll, so a waiting query
# waits half of it on average (a poll returns after this long with at most a few hundred records)
POLL_S = 0.02


@dataclass
class Feed:
    """One exchange's topic as the server follows it."""

    exchange: str
    topic: str
    processed: Processed | None = None
    positions: dict[int, int] = field(default_factory=dict)  # partition -> next offset to judge
    caught_up: bool = False  # reached the end offsets found when it started
    unusable: str = ""  # why the store cannot answer for this exchange
    judged: int = 0
    rounds: int = 0  # judgings, and the seconds they took: what a waiting query waits for
    judging_s: float = 0.0
    waiting: int = 0  # queries waiting for the store to reach Kafka's end offsets
    wanted: dict[int, int] = field(default_factory=dict)  # partition -> the end offset they wait for

    @property
    def answerable(self) -> bool:
        """Whether the store can answer for the exchange with what it holds: it caught up, nothing made
        it unusable, and Silver's coverage ends at known offsets."""
        return self.caught_up and not self.unusable and self.processed is not None and self.processed.exact


def judging_due(arrived: int, gathered_s: float, wanted: dict[int, int] | None, reached: dict[int, int]) -> bool:
    """Judge now: enough records are in, or they have waited long enough, or a query waits (``wanted``: the end
    offsets it waits for) and they have arrived (``reached``: next offset per partition), or nothing
    more has (an empty ``reached``). Judging once what a query waits for, not at every poll on the
    way, spares the query a round's fixed cost per poll."""
    if arrived >= JUDGE_AT or gathered_s >= JUDGE_EVERY_S:
        return True
    if wanted is None:
        return False
    return not reached or all(reached.get(p, 0) >= end for p, end in wanted.items())


class Followers:
    """One thread per exchange's topic and one following Silver's coverage, sharing the store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.feeds = {ex: Feed(ex, settings.topic_for(ex)) for ex in settings.exchanges}
        self.changed = threading.Condition()  # guards the feeds; notified whenever one changes
        self.store: LiveStore | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._admin: Any = None  # confluent_kafka.admin.AdminClient: end offsets and partitions
        self._admin_lock = threading.Lock()

    def start(self, store: LiveStore) -> None:
        self.store = store
        for feed in self.feeds.values():
            self._spawn(f"k2-query-{feed.exchange}", self._follow, feed)
        self._spawn("k2-query-ledger", self._refresh)

    def stop(self) -> None:
        self._stopping.set()
        with self.changed:
            self.changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def _ready(self) -> bool:
        """Every exchange's store has caught up or cannot be used: the server answers as it will."""
        return all(f.caught_up or f.unusable for f in self.feeds.values())

    def ready(self) -> bool:
        with self.changed:
            return self._ready()

    def wait_ready(self, timeout_s: float) -> bool:
        """Until ready, for tests and the server's start-up."""
        with self.changed:
            return self.changed.wait_for(self._ready, timeout=timeout_s)

    def boundaries(self) -> list[Processed | None]:
        with self.changed:
            return [feed.processed for feed in self.feeds.values()]

    def status(self) -> dict[str, dict[str, Any]]:
        with self.changed:
            feeds = {
                ex: {
                    "caught_up": f.caught_up,
                    "unusable": f.unusable or None,
                    "judged": f.judged,
                    "rounds": f.rounds,
                    "judging_s": round(f.judging_s, 3),
                    "covered_until": f.processed.covered_until.isoformat() if f.processed else None,
                }
                for ex, f in self.feeds.items()
            }
        for ex in feeds:
            feeds[ex]["candidates"] = self.store.rows(ex) if self.store else 0
        return feeds

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _boundary(self, feed: Feed) -> Processed | None:
        """Silver's coverage, retried until the catalog answers (or the server stops)."""
        while not self._stopping.is_set():
            try:
                return processed(self.settings, feed.exchange)
            except Exception as exc:  # the catalog may still be starting: try again
                log.warning("query.coverage_unknown", exchange=feed.exchange, error=str(exc))
                self._stopping.wait(REFRESH_S)
        return None

    def _follow(self, feed: Feed) -> None:
        from confluent_kafka import Consumer, TopicPartition

        boundary = self._boundary(feed)
        if boundary is None:
            return
        consumer = Consumer(self._consumer_conf(feed))
        try:
            partitions = self._partitions(consumer, feed)
            if partitions is None:
                return
            starts, ends = {}, {}
            for p in partitions:
                low, ends[p] = consumer.get_watermark_offsets(TopicPartition(feed.topic, p), timeout=10)
                starts[p] = max(boundary.offsets.get(p, low), low)
                if boundary.offsets.get(p, low) < low:
                    self._set(feed, unusable=f"Kafka no longer holds offsets {boundary.offsets[p]}-{low - 1} "
                              f"of partition {p}, which Silver has not processed")  # fmt: skip
            with self.changed:
                feed.processed, feed.positions = boundary, dict(starts)
            consumer.assign([TopicPartition(feed.topic, p, starts[p]) for p in partitions])
            log.info("query.following", exchange=feed.exchange, topic=feed.topic, start_offsets=starts)
            arrived, since = [], time.monotonic()
            reached: dict[int, int] = {}  # next offset per partition after the records arrived so far
            while not self._stopping.is_set():
                polled = consumer.consume(20_000, timeout=POLL_S)
                arrived += polled
                for message in polled:
                    if not message.error():
                        reached[message.partition()] = message.offset() + 1
                wanted = self.wanted(feed)
                gathered_s, latest = time.monotonic() - since, reached if polled else {}
                # catching up, each poll is judged at once: it is large, and `k2 up` waits for it
                if arrived and (not feed.caught_up or judging_due(len(arrived), gathered_s, wanted, latest)):
                    self._judge(feed, arrived)
                    arrived, since = [], time.monotonic()
                if not feed.caught_up and all(feed.positions[p] >= ends[p] for p in partitions):
                    self._set(feed, caught_up=True)
                    log.info("query.caught_up", exchange=feed.exchange, candidates=self.store.rows(feed.exchange))
        except Exception as exc:
            log.exception("query.follow_failed", exchange=feed.exchange)
            self._set(feed, unusable=f"following {feed.topic} failed: {exc}")
        finally:
            consumer.close()

    def wanted(self, feed: Feed) -> dict[int, int] | None:
        """The end offsets waiting queries need and the store has not reached; None: no query waits."""
        with self.changed:
            if not feed.waiting:
                return None
            return {p: end for p, end in feed.wanted.items() if feed.positions.get(p, 0) < end}

    def _consumer_conf(self, feed: Feed) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.settings.kafka.bootstrap_servers,
            "group.id": f"k2-query-{feed.exchange}",
            "enable.auto.commit": False,
            "log_level": 0,
        }

    def _partitions(self, consumer, feed: Feed) -> list[int] | None:
        while not self._stopping.is_set():
            try:
                return sorted(consumer.list_topics(feed.topic, timeout=10).topics[feed.topic].partitions)
            except Exception as exc:  # the broker may still be starting
                log.warning("query.topic_unreadable", topic=feed.topic, error=str(exc))
                self._stopping.wait(REFRESH_S)
        return None

    def _judge(self, feed: Feed, messages: list) -> None:
        good = [m for m in messages if not m.error()]
        if not good:
            return
        clock = time.perf_counter()
        records = from_messages(feed.topic, good)
        self.store.add(feed.exchange, records)
        last = records.group_by("kafka_partition").aggregate([("kafka_offset", "max")]).to_pydict()
        reached = {p: o + 1 for p, o in zip(last["kafka_partition"], last["kafka_offset_max"], strict=True)}
        with self.changed:
            feed.positions.update(reached)
            feed.judged += len(good)
            feed.rounds += 1
            feed.judging_s += time.perf_counter() - clock
            self.changed.notify_all()

    def _set(self, feed: Feed, **changes) -> None:
        with self.changed:
            for name, value in changes.items():
                setattr(feed, name, value)
            self.changed.notify_all()

    def _refresh(self) -> None:
        """Follows Silver's coverage: after a batch, the store forgets what Silver now holds. Keeps
        the minute partials of the rounds judged meanwhile, so a bars query finds few to aggregate."""
        while not self._stopping.wait(REFRESH_S):
            for feed in self.feeds.values():
                if feed.processed is None:
                    continue
                try:
                    self.store.keep_minutes(feed.exchange)
                except Exception as exc:  # the next bars query aggregates them instead
                    log.warning("query.minutes_not_kept", exchange=feed.exchange, error=str(exc))
                try:
                    self._check_partitions(feed)
                    until, _ = coverage_end(self.settings, feed.exchange)
                    if until == feed.processed.covered_until:
                        continue
                    boundary = processed(self.settings, feed.exchange)
                    with self.changed:
                        feed.processed = boundary
                    forgotten = self.store.prune(feed.exchange, boundary.offsets) if boundary.exact else 0
                    log.info(
                        "query.silver_advanced", exchange=feed.exchange, covered_until=until.isoformat(),
                        forgotten=forgotten, exact=boundary.exact, reason=boundary.reason or None,
                    )  # fmt: skip
                except Exception as exc:  # the old coverage stays in force: it only errs low
                    log.warning("query.coverage_unknown", exchange=feed.exchange, error=str(exc))

    def reached_end(self, feed: Feed, ends: dict[int, int]) -> bool:
        """Waits until the store holds the feed's records up to ``ends``, the end offsets Kafka had when
        the query came (``end_offsets``). False: it cannot answer for the exchange, or did not get
        there within the query's tail timeout."""
        if not feed.answerable:
            return False
        with self.changed:
            # the follower judges these once they arrive instead of gathering more
            feed.waiting += 1
            for partition, end in ends.items():
                feed.wanted[partition] = max(end, feed.wanted.get(partition, 0))
            try:
                return (
                    self.changed.wait_for(
                        lambda: all(feed.positions.get(p, 0) >= end for p, end in ends.items()) or bool(feed.unusable),
                        timeout=self.settings.batch.query_tail_timeout_s,
                    )
                    and not feed.unusable
                )
            finally:
                feed.waiting -= 1
                if not feed.waiting:
                    feed.wanted.clear()

    def end_offsets(self, feed: Feed) -> dict[int, int]:
        """Kafka's end offsets of the feed's partitions, all in one request: asked one partition at a
        time, a query waited for three round trips to a broker that shares loaded cores. Raises
        ``TailUnreadable`` when Kafka does not answer."""
        from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        down = outage(self.settings.kafka.bootstrap_servers)
        down.check(feed.topic)
        # read_committed, as the follower's consumer reads: the end it can reach
        wanted = {TopicPartition(feed.topic, p): OffsetSpec.latest() for p in list(feed.positions)}
        futures = self._admin_client().list_offsets(
            wanted, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=5
        )
        try:
            return {tp.partition: future.result().offset for tp, future in futures.items()}
        except KafkaException as exc:
            raise down.record(feed.topic, exc) from None

    def _admin_client(self):  # -> confluent_kafka.admin.AdminClient, thread-safe once made
        with self._admin_lock:
            if self._admin is None:
                self._admin = admin_client(self.settings.kafka)
            return self._admin

    def _check_partitions(self, feed: Feed) -> None:
        """A partition added to the topic after the server started is not followed: say so, and
        answer for the exchange without the store until a restart."""
        now = set(self._admin_client().list_topics(feed.topic, timeout=5).topics[feed.topic].partitions)
        added = sorted(now - set(feed.positions))
        if feed.positions and added and not feed.unusable:
            self._set(
                feed,
                unusable=f"{feed.topic} has partitions {added} the server does not follow; "
                "restart K2 (`k2 down`, then `k2 up`) to follow them",
            )
            log.warning("query.partitions_added", topic=feed.topic, partitions=added)
