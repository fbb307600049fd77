"""Incidents: one per (exchange, metric) while the metric is over a threshold.

An incident alerts when it opens, once more if it escalates from warning to critical, and once
when it resolves (the metric stayed under its thresholds for ``resolve_after_s``). Nothing repeats
every minute. The open incidents are persisted in monitoring's shared documents
(k2.monitoring.shared: ``$K2_HOME/monitoring/incidents.json``, or the catalog's database), so a
scheduler restart, or the next run on another worker, neither alerts again nor forgets.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field

from k2.docstore import DocStore
from k2.monitoring.thresholds import Thresholds

SEVERITY_RANK = {"warning": 1, "critical": 2}


@dataclass
class Incident:
    incident_id: str
    exchange: str
    metric: str
    severity: str  # warning / critical: only ever rises
    opened_at: float
    value: float
    threshold: float
    clear_since: float | None = None


@dataclass(frozen=True)
class IncidentEvent:
    kind: str  # opened / escalated / resolved
    severity: str  # warning / critical / resolved
    incident: Incident
    value: float
    threshold: float
    at: float

    @property
    def message(self) -> str:
        i = self.incident
        if self.kind == "resolved":
            return (
                f"{i.exchange} {i.metric} back to {self.value:g} (under {self.threshold:g}) after "
                f"{self.at - i.opened_at:.0f}s: resolved"
            )
        return f"{i.exchange} {i.metric} = {self.value:g}, above the {self.severity} threshold {self.threshold:g}"


@dataclass
class IncidentBook:
    open: dict[str, Incident] = field(default_factory=dict)  # "exchange/metric" -> incident

    def evaluate(
        self,
        exchange: str,
        values: Mapping[str, float | None],
        thresholds: Thresholds,
        now: float,
        resolve_after_s: float,
    ) -> list[IncidentEvent]:
        """Update the incidents of one exchange with its latest metric values."""
        events = []
        for metric, value in values.items():
            key = f"{exchange}/{metric}"
            threshold = thresholds.of(exchange, metric)
            level = threshold.level(value)
            incident = self.open.get(key)
            if value is None:
                continue  # unknown this time (e.g. Kafka unreachable): neither open nor resolve
            if incident is None:
                if level:
                    limit = getattr(threshold, level)
                    incident = Incident(uuid.uuid4().hex[:12], exchange, metric, level, now, value, limit)
                    self.open[key] = incident
                    events.append(IncidentEvent("opened", level, incident, value, limit, now))
                continue
            incident.value = value
            if level is None:
                incident.clear_since = incident.clear_since or now
                if now - incident.clear_since >= resolve_after_s:
                    del self.open[key]
                    limit = threshold.warning if threshold.warning is not None else threshold.critical
                    events.append(IncidentEvent("resolved", "resolved", incident, value, limit or 0.0, now))
                continue
            incident.clear_since = None
            if SEVERITY_RANK[level] > SEVERITY_RANK[incident.severity]:
                incident.severity = level
                incident.threshold = getattr(threshold, level)
                events.append(IncidentEvent("escalated", level, incident, value, incident.threshold, now))
        return events

    def of_exchange(self, exchange: str) -> list[Incident]:
        return [i for i in self.open.values() if i.exchange == exchange]


class IncidentStore:
    """The persisted book, read-modify-written under an exclusive lock."""

    def __init__(self, docs: DocStore) -> None:
        self.docs = docs

    def load(self) -> IncidentBook:
        data = self.docs.read("incidents") or {}
        return IncidentBook({k: Incident(**v) for k, v in (data.get("open") or {}).items()})

    @contextlib.contextmanager
    def transaction(self) -> Iterator[IncidentBook]:
        with self.docs.exclusive("incidents", wait=True):
            book = self.load()
            yield book
            self.docs.write("incidents", {"open": {k: asdict(v) for k, v in book.open.items()}})
