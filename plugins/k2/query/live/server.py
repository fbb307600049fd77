"""``k2 query serve``: consumes each exchange's topic from where Silver's work ends, judges each record
once into a ``LiveStore``, and answers ``k2.query`` over a Unix socket (only K2's user can connect:
0600, in K2_HOME). A query's unprocessed part comes from the store, to the end offsets Kafka holds
when it arrives; an exchange the store cannot answer for exactly (still catching up, records Kafka
no longer holds, a hole in Silver's coverage) is answered the way a query without the server is."""

from __future__ import annotations

import datetime as dt
import gc
import shutil
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from k2.errors import K2Error
from k2.log import get_logger
from k2.private import private_dir
from k2.query import hybrid
from k2.query.bars import partials
from k2.query.live.follower import Feed, Followers
from k2.query.live.protocol import read_request, send_answer, send_error, socket_path
from k2.query.live.store import LiveStore
from k2.query.partial import PartialAnswer, noted
from k2.query.sources import TailUnreadable
from k2.settings import Settings

log = get_logger(__name__)
Answer = TypeVar("Answer")
# a query read across a batch's commit is answered again (bars read the store after Silver)
ANSWER_ATTEMPTS = 3
# allocations (less deallocations) between young-generation collections: above the Kafka messages a
# judging round holds (JUDGE_AT, a catching-up poll of 20,000), so they die by reference count
# before a collection can promote them (see collect_less)
YOUNG_GC_THRESHOLD = 100_000


class QueryServer:
    def __init__(self, settings: Settings, store_dir: Path | None = None) -> None:
        self.settings = settings
        self.socket = socket_path(settings)
        self.store_dir = store_dir or settings.home / "query"
        self.followers = Followers(settings)
        self.feeds = self.followers.feeds
        self.answered = {"live": 0, "local": 0}
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._serving: threading.Thread | None = None
        self._request = threading.local()  # what the request a thread answers has used
        self.store: LiveStore | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        shutil.rmtree(self.store_dir, ignore_errors=True)  # a cache: rebuilt from Kafka at every start
        private_dir(self.store_dir)
        self.store = LiveStore(self.settings, self.store_dir / "spill")
        self.followers.start(self.store)
        private_dir(self.socket.parent)
        self.socket.unlink(missing_ok=True)
        server = _Server(str(self.socket), _Handler)
        server.owner = self
        self.socket.chmod(0o600)
        self._server = server
        self._serving = threading.Thread(target=server.serve_forever, name="k2-query-socket", daemon=True)
        self._serving.start()
        log.info("query.serving", socket=str(self.socket), exchanges=list(self.feeds))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.followers.stop()
        self.socket.unlink(missing_ok=True)
        if self.store is not None:
            self.store.close()
        shutil.rmtree(self.store_dir, ignore_errors=True)
        log.info("query.stopped", answered=self.answered)

    def wait_ready(self, timeout_s: float) -> bool:
        """Until every exchange's store has caught up (or cannot be used), for tests and `k2 up`."""
        return self.followers.wait_ready(timeout_s)

    # --- answering ---------------------------------------------------------------------------------
    def fresh(
        self, settings: Settings, exchange: str, start: dt.datetime, end: dt.datetime, symbols: list[str] | None
    ) -> hybrid.Fresh:
        """``hybrid.fresh_trades`` from the store when it holds every unprocessed record up to the end
        offsets Kafka has now; computed the way a query without the server does otherwise."""

        def from_store(offsets: dict[int, int]) -> hybrid.Fresh:
            return hybrid.Fresh(self.store.first_copies(exchange, start, end, symbols, offsets))

        def judged_now() -> hybrid.Fresh:
            answer = hybrid.fresh_trades(settings, exchange, start, end, symbols)
            self._add_seconds(answer.seconds)
            return answer

        return self._served(exchange, from_store, judged_now)

    def fresh_minutes(
        self, settings: Settings, exchange: str, start: dt.datetime, end: dt.datetime, symbols: list[str] | None
    ) -> pa.Table:
        """The minute partials (``k2.query.bars``) of what ``fresh`` gives, aggregated in the store."""

        def judged_now() -> pa.Table:
            answer = hybrid.fresh_trades(settings, exchange, start, end, symbols)
            self._add_seconds(answer.seconds)
            self._request.missing += answer.missing
            return partials(answer.trades)

        return self._served(
            exchange, lambda offsets: self.store.minute_partials(exchange, start, end, symbols, offsets), judged_now
        )

    def _served(
        self, exchange: str, from_store: Callable[[dict[int, int]], Answer], judged_now: Callable[[], Answer]
    ) -> Answer:
        """``from_store`` (given the offsets Silver has processed) once the store holds what Kafka has
        now, else ``judged_now``; counted for the request, with its steps' seconds."""
        feed = self.feeds.get(exchange)
        with self._timed("reach_end"):  # the broker's end offsets (end_offsets), the follower's poll and round
            live = self._live(feed)
        if live:
            with self._timed("store"):
                answer = from_store(feed.processed.offsets)
        else:
            answer = judged_now()
        with self.followers.changed:
            self.answered["live" if live else "local"] += 1
        self._request.served["live" if live else "local"] += 1
        return answer

    def _live(self, feed: Feed | None) -> bool:
        """Whether the store answers for the feed's exchange: it reached Kafka's end offsets, once per
        request (a later read of the store holds at least as much). With Kafka out of reach, the store
        answers with what it holds, and the answer says what it lacks."""
        if feed is None:
            return False
        reached = self._request.reached
        if feed.exchange not in reached:
            try:
                with self._timed("end_offsets"):
                    ends = self.followers.end_offsets(feed) if feed.answerable else None
                reached[feed.exchange] = ends is not None and self.followers.reached_end(feed, ends)
            except TailUnreadable as exc:
                lacking = f"the answer lacks {feed.exchange}'s records the query server had not read: {exc.cause}"
                self._request.missing.append(PartialAnswer(lacking, exc.fix))
                reached[feed.exchange] = feed.answerable
        return reached[feed.exchange] and not feed.unusable

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        """Adds the block's seconds to the request's ``step`` (summed over the request's exchanges)."""
        clock = time.perf_counter()
        try:
            yield
        finally:
            self._add_seconds({step: time.perf_counter() - clock})

    def _add_seconds(self, seconds: dict[str, float]) -> None:
        for step, spent in seconds.items():
            self._request.seconds[step] = self._request.seconds.get(step, 0.0) + spent

    def answer(self, request: dict[str, Any]) -> tuple[pa.Table, dict[str, Any]]:
        """The table a request asks for, and how its unprocessed part was answered: per exchange from
        the store (live) or judged now (local), and the seconds of its fresh steps."""
        op = request.get("op")
        if op not in ("trades", "bars"):
            raise K2Error(f"the query server has no operation {op!r}", "ask for trades, bars or status.")
        self._request.served, self._request.seconds = {"live": 0, "local": 0}, {}
        self._request.reached = {}  # exchange -> whether its store reached Kafka's end offsets
        self._request.missing = []  # what the answer lacks (k2.query.partial)
        begin, stop = (dt.datetime.fromisoformat(request[k]) for k in ("start", "end"))
        exchanges, symbols = request["exchanges"], request.get("symbols")
        for _ in range(ANSWER_ATTEMPTS):
            boundaries = self.followers.boundaries()
            if op == "trades":
                table = hybrid.trades(self.settings, exchanges, symbols, begin, stop, fresh=self.fresh)
            else:
                interval, minutes = request["interval"], self.fresh_minutes
                table = hybrid.bars(self.settings, interval, exchanges, symbols, begin, stop, self.fresh, minutes)
            if self.followers.boundaries() == boundaries:
                break
            # a batch was committed meanwhile: the store and Silver may have been read either side of it
            log.info("query.batch_meanwhile", op=op)
            self._request.reached = {}
        fresh_s = {step: round(spent, 3) for step, spent in self._request.seconds.items()}
        return noted(table, self._request.missing), {"served": self._request.served, "fresh_s": fresh_s}

    def status(self) -> dict[str, Any]:
        # `ready`: the one readiness rule, which `k2 up` waits for from another process
        return {"feeds": self.followers.status(), "ready": self.followers.ready(), "answered": dict(self.answered)}


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    owner: QueryServer


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        owner: QueryServer = self.server.owner  # type: ignore[attr-defined]
        began = time.perf_counter()  # the connection accepted and its thread started
        try:
            request = read_request(self.request)
            if request.get("op") == "status":
                self._reply(send_answer, None, owner.status())
                return
            clock = time.perf_counter()
            request_s = round(clock - began, 3)
            table, how = owner.answer(request)
            seconds = round(time.perf_counter() - clock, 3)
            if self._reply(send_answer, table, how | {"seconds": seconds}):
                sent_s = round(time.perf_counter() - clock - seconds, 3)
                log.info(
                    "query.answered", op=request.get("op"), rows=table.num_rows, request_s=request_s,
                    seconds=seconds, sent_s=sent_s, **how,
                )  # fmt: skip
        except K2Error as exc:
            self._reply(send_error, exc.cause, exc.fix)
        except Exception as exc:
            log.exception("query.failed")
            self._reply(send_error, f"the query server failed: {exc}", "", fallback=True)

    def _reply(self, send: Callable[..., None], *args: Any, **kwargs: Any) -> bool:
        """Sends an answer; False when the client had gone (its timeout, an interrupt): nothing to do."""
        try:
            send(self.request, *args, **kwargs)
            return True
        except ConnectionError as exc:
            log.warning("query.client_left", error=str(exc))
            return False


def collect_less() -> None:
    """Spares the server Python's cyclic garbage collections over its judging rounds. With the default
    threshold (700) the Kafka messages a round holds until it is judged (10,000 a second from Binance)
    were promoted to the oldest generation, and full collections over every object the process holds
    ran every few seconds: 27% of the server's CPU in a py-spy profile under load. The messages hold no
    cycles; they are freed by reference count once judged. The objects of its start-up (modules,
    settings) are frozen: no collection looks at them again."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, old)


def serve(settings: Settings) -> int:
    """Runs the server until SIGTERM or SIGINT."""
    import signal

    server = QueryServer(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    collect_less()
    try:
        stop.wait()
    finally:
        server.stop()
    return 0
