"""Alert delivery through a real HTTP webhook on loopback: retries, the outbox, and e-mail config."""

from __future__ import annotations

import pytest

from k2.monitoring.alerts import send_alert
from k2.monitoring.notifiers import Alert, outbox
from tests.conftest import make_settings
from tests.fakes.webhook import WebhookReceiver
from tests.helpers import free_port


def test_unreachable_webhook_keeps_the_alert_until_it_is_delivered(tmp_path) -> None:
    with WebhookReceiver() as hook:
        settings = make_settings(tmp_path, alert_webhook_url=hook.url, alert_retry_backoff_s=0.01)
        hook.refuse = True
        alert = send_alert("critical", "test", "disk on fire", settings=settings)
        assert alert.delivery["webhook"].startswith("queued: HTTPError")
        assert [a.alert_id for a in outbox(settings).pending()] == [alert.alert_id]
        assert hook.received == []

        hook.refuse = False  # the next delivery (the next monitoring run) sends it, once
        outbox(settings).flush(settings.alerts)
        assert hook.severities("test") == ["critical"] and hook.alerts()[0]["alert_id"] == alert.alert_id
        assert outbox(settings).pending() == []
        outbox(settings).flush(settings.alerts)
        assert len(hook.received) == 1


def test_refused_connection_is_retried_with_backoff_then_queued(tmp_path) -> None:
    settings = make_settings(
        tmp_path,
        alert_webhook_url=f"http://127.0.0.1:{free_port()}/x",
        alert_delivery_attempts=3,
        alert_retry_backoff_s=0.5,
    )
    delays: list[float] = []
    box = outbox(settings)
    box.add([Alert("warning", "test", "nobody listens")])
    box.flush(settings.alerts, sleep=delays.append)
    assert delays == [0.5, 1.0]
    assert box.pending()[0].delivery["webhook"].startswith("queued: URLError")


def test_email_without_recipients_is_a_clear_error(tmp_path) -> None:
    from k2.errors import K2Error

    with pytest.raises(K2Error, match="K2_ALERT_EMAIL_TO is empty"):
        make_settings(tmp_path, alert_smtp_host="127.0.0.1")


def test_alert_is_mailed_through_a_real_smtp_conversation(tmp_path) -> None:
    from tests.fakes.smtp import SmtpReceiver

    with SmtpReceiver() as smtp:
        settings = make_settings(
            tmp_path,
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=smtp.port,
            alert_smtp_starttls=False,
            alert_email_to=("oncall@example.org", "data@example.org"),
            alert_email_from="k2@example.org",
        )
        alert = send_alert("critical", "monitor binance latency_p99_s", "p99 = 42 s", settings=settings)
    assert alert.delivery == {"email": "sent"} and outbox(settings).pending() == []
    (mail,) = smtp.messages
    assert mail["To"] == "oncall@example.org, data@example.org" and mail["From"] == "k2@example.org"
    assert mail["Subject"] == "[K2 CRITICAL] monitor binance latency_p99_s: p99 = 42 s"
    assert "p99 = 42 s" in mail.get_payload()


def test_unreachable_smtp_server_keeps_the_alert_queued(tmp_path) -> None:
    settings = make_settings(
        tmp_path,
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=free_port(),
        alert_email_to=("oncall@example.org",),
        alert_retry_backoff_s=0.01,
    )
    alert = send_alert("warning", "test", "mail server down", settings=settings)
    assert alert.delivery["email"].startswith("queued: ConnectionRefusedError")
    assert [a.alert_id for a in outbox(settings).pending()] == [alert.alert_id]
