"""Alert channels and the outbox that makes delivery reliable.

Every alert goes to the log. A Slack-compatible webhook and SMTP e-mail are used when configured.
An alert is first written to the outbox (monitoring's shared documents, k2.monitoring.shared:
``$K2_HOME/monitoring/outbox.json`` or the catalog's database), then delivered;
a channel that fails after its retries keeps the alert in the outbox with the error, and the next
monitoring run tries again. A dead webhook or mail server therefore never loses an alert, and a
delivery attempt is bounded in time so it never holds up monitoring for long.
"""

from __future__ import annotations

import contextlib
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage

from k2.docstore import DocStore
from k2.log import get_logger
from k2.settings import AlertSettings, Settings

log = get_logger("k2.alerts")

SEVERITIES = ("info", "warning", "critical", "resolved")
ICONS = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
    "resolved": ":white_check_mark:",
}


@dataclass
class Alert:
    severity: str
    source: str  # what raised it: "monitor binance latency_p99_s", "deadline k2_medallion", ...
    message: str
    at: float = field(default_factory=time.time)
    alert_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # channel -> "sent" or the last error; channels not listed are still to do
    delivery: dict[str, str] = field(default_factory=dict)
    attempts: int = 0

    @property
    def text(self) -> str:
        return f"[K2 {self.severity.upper()}] {self.source}: {self.message}"


class Channel:
    name = "channel"

    def send(self, alert: Alert) -> None:
        raise NotImplementedError


class WebhookChannel(Channel):
    """Slack-compatible incoming webhook: a JSON body with ``text`` (other fields are extras)."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url, self.timeout_s = url, timeout_s

    def send(self, alert: Alert) -> None:
        body = json.dumps(
            {
                "text": f"{ICONS.get(alert.severity, '')} {alert.text}".strip(),
                "k2": {
                    "alert_id": alert.alert_id,
                    "severity": alert.severity,
                    "source": alert.source,
                    "message": alert.message,
                    "at": alert.at,
                },
            }
        ).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered HTTP {response.status}")


class SmtpChannel(Channel):
    name = "email"

    def __init__(self, alerts: AlertSettings, timeout_s: float = 10.0) -> None:
        self.alerts, self.timeout_s = alerts, timeout_s

    def send(self, alert: Alert) -> None:
        s = self.alerts
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = alert.text[:200], s.email_from, ", ".join(s.email_to)
        msg.set_content(
            f"{alert.text}\n\nalert id {alert.alert_id}, raised at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(alert.at))}\n"
        )
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=self.timeout_s) as smtp:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password)
            smtp.send_message(msg)


def channels(alerts: AlertSettings) -> list[Channel]:
    out: list[Channel] = []
    if alerts.webhook_url:
        out.append(WebhookChannel(alerts.webhook_url))
    if alerts.smtp_host:
        out.append(SmtpChannel(alerts))
    return out


class Outbox:
    """Alerts not yet delivered on every channel, persisted under an exclusive lock: in monitoring's
    shared documents, or, while those are out of reach (the catalog's database is down, which is
    itself worth an alert), in ``local`` files on this host, delivered by the next flush here."""

    def __init__(self, docs: DocStore, local: DocStore | None = None) -> None:
        self.docs = docs
        self.local = local

    @staticmethod
    @contextlib.contextmanager
    def _locked(docs: DocStore) -> Iterator[list[Alert]]:
        with docs.exclusive("outbox", wait=True):
            pending = _pending(docs)
            yield pending
            docs.write("outbox", {"pending": [asdict(a) for a in pending]})

    def _stores(self) -> list[DocStore]:
        return [self.docs] if self.local is None else [self.local, self.docs]

    def add(self, alerts: list[Alert]) -> None:
        try:
            with self._locked(self.docs) as pending:
                pending.extend(alerts)
        except Exception as exc:
            if self.local is None:
                raise
            log.warning("alert.outbox_local", alerts=len(alerts), error=f"{type(exc).__name__}: {exc}"[:500])
            with self._locked(self.local) as pending:
                pending.extend(alerts)

    def pending(self) -> list[Alert]:
        found = []
        for docs in self._stores():
            try:
                found += _pending(docs)
            except Exception as exc:
                log.warning("alert.outbox_unreadable", error=f"{type(exc).__name__}: {exc}"[:500])
        return found

    def flush(self, alerts: AlertSettings, sleep: Callable[[float], None] = time.sleep) -> list[Alert]:
        """Deliver what is pending; returns the alerts attempted, with their delivery state."""
        attempted: list[Alert] = []
        for docs in self._stores():
            try:
                with self._locked(docs) as pending:
                    attempted += _deliver_all(pending, alerts, sleep)
            except Exception as exc:
                if docs is not self.docs or self.local is None:
                    raise
                log.warning("alert.outbox_unreachable", error=f"{type(exc).__name__}: {exc}"[:500])
        return attempted


def _pending(docs: DocStore) -> list[Alert]:
    return [Alert(**a) for a in (docs.read("outbox") or {}).get("pending", [])]


def _deliver_all(pending: list[Alert], alerts: AlertSettings, sleep: Callable[[float], None]) -> list[Alert]:
    """Tries each pending alert on each channel it has not reached; keeps the undelivered in ``pending``."""
    targets = channels(alerts)
    for alert in pending:
        alert.attempts += 1
        for channel in targets:
            if alert.delivery.get(channel.name) != "sent":
                alert.delivery[channel.name] = _deliver(channel, alert, alerts, sleep)
    attempted = list(pending)
    pending[:] = [a for a in pending if any(a.delivery.get(c.name) != "sent" for c in targets)]
    return attempted


def _deliver(channel: Channel, alert: Alert, alerts: AlertSettings, sleep: Callable[[float], None]) -> str:
    delay = alerts.retry_backoff_s
    for attempt in range(1, alerts.delivery_attempts + 1):
        try:
            channel.send(alert)
        except (OSError, urllib.error.URLError, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "alert.delivery_failed", channel=channel.name, alert_id=alert.alert_id, attempt=attempt, error=error
            )
            if attempt < alerts.delivery_attempts:
                sleep(delay)
                delay *= 2
        else:
            log.info("alert.delivered", channel=channel.name, alert_id=alert.alert_id, severity=alert.severity)
            return "sent"
    return f"queued: {error}"


def outbox(settings: Settings) -> Outbox:
    from k2.docstore import FileDocs, shared_beyond_host
    from k2.monitoring.shared import monitoring_docs

    docs = monitoring_docs(settings)
    return Outbox(docs, FileDocs(settings.monitoring_dir) if shared_beyond_host(docs) else None)
