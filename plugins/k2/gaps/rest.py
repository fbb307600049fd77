"""Requests to an exchange's public REST API within its rate limits, never waiting without bound.

One :class:`RestClient` per exchange and repair run. It paces requests (the exchange's
``rest_request_interval_s``), honours ``Retry-After`` on HTTP 429 and 418 up to
``K2_GAPS_REPAIR_MAX_WAIT_S``, backs off exponentially on 5xx and network errors (at most
``K2_GAPS_REPAIR_RETRIES`` retries), and counts every wait against ``K2_GAPS_REPAIR_WAIT_BUDGET_S``:
past it, or past the retries, a request fails with a K2Error naming the cause. A stop request
(``stop`` set, e.g. by the Airflow task's on_kill) ends any wait at once.
"""

from __future__ import annotations

import email.utils
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from k2.errors import K2Error
from k2.exchanges import RestRateLimited
from k2.settings import GapRepairSettings

T = TypeVar("T")
RATE_LIMITED = (429, 418)  # 418: Binance's IP ban after ignored 429s
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
USER_AGENT = "k2-gap-repair"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


Transport = Callable[[str, float], Response]  # (url, timeout_s) -> response; raises OSError when unreachable


def urllib_transport(url: str, timeout_s: float) -> Response:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


class RepairStopped(Exception):
    """The repair was asked to stop (the task was killed) while it waited or between pages."""


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RestClient:
    """GETs pages from one exchange. ``sleep(seconds)`` waits and returns True when stopped
    (default: the stop event's wait); ``clock`` is monotonic seconds. Both are injectable for tests."""

    def __init__(
        self,
        exchange: str,
        limits: GapRepairSettings,
        *,
        interval_s: float,
        stop: threading.Event | None = None,
        transport: Transport = urllib_transport,
        sleep: Callable[[float], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.exchange = exchange
        self.limits = limits
        self.interval_s = interval_s
        self.stop = stop or threading.Event()
        self.transport = transport
        self._sleep = sleep or self.stop.wait
        self._clock = clock
        self._last_request: float | None = None
        self.requests = 0
        self.waited_s = 0.0  # time spent on rate limits and retries (the budget's use)
        self.rate_limited = 0  # answers that said "too many requests"
        self.retried = 0  # requests repeated after a 5xx or a network error

    def get(self, url: str, parse: Callable[[bytes], T]) -> T:
        """The parsed answer at ``url``; ``parse`` raising RestRateLimited counts as a 429."""
        failures = 0
        while True:
            self._pace()
            self.requests += 1
            try:
                response = self.transport(url, self.limits.request_timeout_s)
            except OSError as exc:  # refused, reset, timed out, DNS
                failures = self._retry(url, failures, f"{type(exc).__name__}: {exc}")
                continue
            if response.status in RATE_LIMITED:
                self._rate_limited(url, response.status, retry_after_s(response.headers.get("retry-after")))
                continue
            if response.status >= 500:
                failures = self._retry(url, failures, f"HTTP {response.status} {_preview(response.body)}")
                continue
            if response.status != 200:
                raise K2Error(
                    f"the {self.exchange} REST API refused {url}: HTTP {response.status} {_preview(response.body)}",
                    f"check the symbol and ids (and K2_{self.exchange.upper()}_REST_URL); "
                    "a 4xx is the request's fault, so it is not retried.",
                )
            try:
                return parse(response.body)
            except RestRateLimited as exc:
                self._rate_limited(url, response.status, None, str(exc))
            except ValueError as exc:
                raise K2Error(
                    f"the {self.exchange} REST API answered {url} with something that is no page of trades: {exc}",
                    f"check that K2_{self.exchange.upper()}_REST_URL points at the exchange's public REST API.",
                ) from None

    def _pace(self) -> None:
        if self._last_request is not None:
            due = self._last_request + self.interval_s - self._clock()
            if due > 0:
                self._wait(due)
        self._last_request = self._clock()

    def _rate_limited(self, url: str, status: int, asked_s: float | None, said: str = "") -> None:
        self.rate_limited += 1
        why = f"HTTP {status}" + (f" ({said})" if said else "")
        if asked_s is not None and asked_s > self.limits.max_wait_s:
            raise K2Error(
                f"the {self.exchange} REST API is rate limiting ({why}) and asks to wait {asked_s:g} s, longer than "
                f"K2_GAPS_REPAIR_MAX_WAIT_S={self.limits.max_wait_s:g}",
                "repair later (an HTTP 418 is an IP ban of 2 minutes to 3 days), or raise K2_GAPS_REPAIR_MAX_WAIT_S.",
            )
        # without Retry-After: back off as for a server error, by how many limits were hit in a row
        delay = asked_s if asked_s is not None else min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(self.rate_limited, 16))
        self._budgeted_wait(delay, f"{why} on {url}")

    def _retry(self, url: str, failures: int, why: str) -> int:
        if failures >= self.limits.retries:
            raise K2Error(
                f"the {self.exchange} REST API failed {failures + 1} times in a row on {url}; last: {why}",
                f"check that the exchange is reachable (K2_{self.exchange.upper()}_REST_URL) and repair again; "
                "K2_GAPS_REPAIR_RETRIES sets the retries.",
            )
        self.retried += 1
        self._budgeted_wait(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**failures), f"{why} on {url}")
        return failures + 1

    def _budgeted_wait(self, delay: float, why: str) -> None:
        if self.waited_s + delay > self.limits.wait_budget_s:
            raise K2Error(
                f"the {self.exchange} repair used its waiting budget: {self.waited_s:g} s spent on rate limits and "
                f"retries, and {why} asks {delay:g} s more "
                f"(K2_GAPS_REPAIR_WAIT_BUDGET_S={self.limits.wait_budget_s:g})",
                "repair again later, or raise K2_GAPS_REPAIR_WAIT_BUDGET_S.",
            )
        self.waited_s += delay
        self._wait(delay)

    def _wait(self, seconds: float) -> None:
        if self.stop.is_set() or self._sleep(seconds):
            raise RepairStopped()


def _preview(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace")
