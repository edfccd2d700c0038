"""Notifier over the real broker and database, delivering to real receivers started in the test:
aiosmtpd for e-mail, an HTTP sink for webhook/Slack/Teams/LINE, and a real Alertmanager."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from support import MovableClock, db_of, make_key, poll, produce_events, serving

from bench.notifier_sinks import HttpSink, SmtpSink
from services.common import processes as px
from services.contracts.envelope import make_event
from services.contracts.thai_calendar import BANGKOK
from services.contracts.topics import ROADMAP_ALERTS
from services.contracts.webhooks import WebhookVerificationError, generate_secret, verify
from services.notifier.channels import make_msgid_from_key
from services.notifier.domain import idempotency_key, retry_key_uuid
from services.notifier.main import create_app
from services.notifier.settings import NotifierSettings

pytestmark = pytest.mark.integration
LOGS = Path(__file__).resolve().parents[2] / ".data" / "test-logs"
SECRET = generate_secret()  # Standard Webhooks signing secret, whsec_<base64>
LINE_TOKEN = "line-test-token"
AM_TOKEN = "am-secret-for-the-receiver-test"


def alert_event(kind: str, milestone: str, *, agency: str = "dga", due: date = date(2026, 11, 20), days_late: int = 5,
                now: datetime, percent: float = 60) -> dict:
    data = {"milestone_id": milestone, "title_th": f"ระบบสารบรรณอิเล็กทรอนิกส์ {milestone}",
            "title_en": f"e-Saraban rollout {milestone}", "workstream": "technology_access", "owner_agency": agency,
            "due_date": due.isoformat(), "percent_complete": percent, "days_late": days_late,
            "reason": "งบประมาณล่าช้า", "detected_at": now.isoformat()}
    if kind == "recovered":
        data["completed_on"] = (due + timedelta(days=days_late)).isoformat()
    event = make_event(f"roadmap.milestone.{kind}", data, agency=agency, source="/services/roadmap/watcher",
                       id=f"{kind}:{milestone}:{due.isoformat()}", time=now, partitionkey=agency)
    return event.to_json_dict()


def write_routes(tmp_path: Path, sink: HttpSink) -> Path:
    doc = {
        "recipients": {
            "owner": {"email": "owner@dga.go.th", "webhook": "sink-webhook", "slack": sink.url("/slack"),
                      "teams": "sink-teams", "line": "Uowner0001"},
            "director": {"email": "director@opdc.go.th"},
            "ops": {"slack": sink.url("/slack"), "webhook": "sink-webhook"},
            "pmo": {"email": "pmo@opdc.go.th"},
            "badline": {"line": "Ubadrecipient"},
        },
        "routes": [
            {"name": "dga", "match": {"agency": "dga", "type": ["at_risk", "missed", "recovered"]},
             "recipients": ["owner"], "channels": ["email", "webhook", "slack", "teams", "line"],
             "reminder_interval": "1h", "escalate_after_days": 2, "escalation_recipients": ["director"]},
            {"name": "mdes", "match": {"agency": "mdes"}, "recipients": ["badline"], "channels": ["line"]},
            {"name": "ops", "match": {"type": "operational"}, "recipients": ["ops"], "channels": ["slack", "webhook"]},
            {"name": "ops-critical", "match": {"type": "operational", "labels": {"severity": "critical"}},
             "recipients": ["pmo"], "channels": ["email"]},
        ],
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def notifier_settings(settings_for, tmp_path: Path, sink: HttpSink, smtp: SmtpSink, **extra) -> NotifierSettings:
    return settings_for(
        NotifierSettings, notifier_routes_file=write_routes(tmp_path, sink), notifier_smtp_port=smtp.port,
        notifier_line_base_url=sink.base_url, notifier_line_channel_access_token=LINE_TOKEN,
        notifier_webhook_secret=SECRET,
        notifier_webhook_urls={"sink-webhook": sink.url("/webhook"), "sink-teams": sink.url("/teams")},
        notifier_retry_base_seconds=0.05, notifier_retry_max_seconds=0.5, notifier_scheduler_tick_seconds=0.2,
        notifier_alertmanager_token=AM_TOKEN, dashboard_url="https://dash.example.go.th", **extra)


async def _true(value):
    return value


async def _sent(db, key: str):
    doc = await db.notifications.find_one({"key": key})
    return doc if doc and doc["state"] == "sent" else None


def webhook_for(sink: HttpSink, key: str, ok_only: bool = True):
    return [r for r in sink.of("/webhook", ok_only) if r.headers.get("idempotency-key") == key]


async def test_alerts_reach_every_channel_with_retries_reminders_escalation_alertmanager_and_api(
        settings_for, kafka_bootstrap, tmp_path):
    sink = await HttpSink(LINE_TOKEN, webhook_secrets=[SECRET]).start()  # verifies every webhook it receives
    smtp = SmtpSink().__enter__()
    am = None
    try:
        settings = notifier_settings(settings_for, tmp_path, sink, smtp)
        # Wednesday 25 Nov 2026, 10:00 Bangkok: a working day inside working hours.
        clock = MovableClock(datetime(2026, 11, 25, 10, 0, tzinfo=BANGKOK))
        app = create_app(settings, clock=clock)
        service = app.state.notifier
        office_key = await make_key(settings, "opdc", "programme_office")
        agency_key = await make_key(settings, "dga", "agency")
        office = {"X-API-Key": office_key}
        async with serving(app, settings.http_port) as client:
            # --- 1. A missed milestone reaches every channel within seconds; the webhook answers 500, 500, 200.
            sink.script["/webhook"] = [500, (500, {"Retry-After": "0"})]
            missed = alert_event("missed", "M-1", now=clock())
            await produce_events(kafka_bootstrap, ROADMAP_ALERTS, [missed])
            key_webhook = idempotency_key(missed["id"], "owner", "webhook")
            key_email = idempotency_key(missed["id"], "owner", "email")
            await poll(lambda: _true(webhook_for(sink, key_webhook)), 20, what="webhook delivery")
            await poll(lambda: _true(smtp.to("owner@dga.go.th")), 20, what="e-mail delivery")
            await poll(lambda: _true(sink.of("/slack", True) and sink.of("/teams", True)
                                     and sink.of("/v2/bot/message/push", True)), 20, what="slack, teams, line")
            attempts = [r for r in sink.of("/webhook") if r.headers.get("idempotency-key") == key_webhook]
            assert [r.status for r in attempts] == [500, 500, 200]  # exactly one successful delivery
            ok = attempts[-1]
            # Standard Webhooks: the delivery verifies with verify(); every retry carried the same webhook-id.
            verify(ok.raw, ok.headers, [SECRET])
            with pytest.raises(WebhookVerificationError):
                verify(ok.raw, ok.headers, [generate_secret()])
            assert {r.headers["webhook-id"] for r in attempts} == {ok.headers["webhook-id"]}
            assert ok.body["milestone"]["milestone_id"] == "M-1" and ok.body["alert_type"] == "missed"
            assert ok.body["days_late"] == 5 and "address" not in json.dumps(ok.body)

            email = smtp.to("owner@dga.go.th")[0]
            assert email["Message-ID"] == make_msgid_from_key(key_email)
            assert email.get_content_type() == "multipart/alternative"
            text = email.get_body(("plain",)).get_content()
            html = email.get_body(("html",)).get_content()
            assert "ภารกิจเลยกำหนด" in email["Subject"]
            # Thai first (BE date, Thai agency name), English below, link to the dashboard.
            assert text.index("กำหนดเสร็จ 20 พ.ย. 2569") < text.index("Milestone missed")
            assert "ล่าช้า 5 วัน" in text and "สำนักงานพัฒนารัฐบาลดิจิทัล" in text
            assert "https://dash.example.go.th/d/newnormal-roadmap?var-milestone=M-1" in text
            assert "<table>" in html and "20 พ.ย. 2569" in html

            line = sink.of("/v2/bot/message/push", True)[0]
            assert line.body["to"] == "Uowner0001"
            # The personal acknowledge link rides along as a buttons template with a URI action.
            assert line.body["messages"][1]["template"]["actions"][0]["uri"].startswith(settings.notifier_public_url)
            assert line.headers["x-line-retry-key"] == retry_key_uuid(idempotency_key(missed["id"], "owner", "line"))
            assert line.body["messages"][0]["text"].startswith("⚠️ ภารกิจเลยกำหนด")
            assert all(not r.problems for r in sink.received)
            assert "ภารกิจเลยกำหนด" in sink.of("/slack", True)[0].body["text"]

            db = db_of(settings)
            try:
                async def webhook_doc():
                    doc = await db.notifications.find_one({"key": key_webhook})
                    return doc if doc["state"] == "sent" else None

                doc = await poll(webhook_doc, 10, what="webhook notification recorded sent")
                assert doc["attempts"] == 3
                # Every attempt keeps the receiver's answer: two 500s, then the 200.
                assert [(a["outcome"], a["status"]) for a in doc["deliveries"]] == [("retry", 500), ("retry", 500),
                                                                                    ("sent", 200)]
                line_id = idempotency_key(missed["id"], "owner", "line")
                line_doc = await poll(lambda: _sent(db, line_id), 10, what="LINE notification recorded sent")
                receipt = line_doc["deliveries"][-1]["receipt"]
                assert receipt == f"HTTP 200; x-line-request-id: {sink.accepted_line[retry_key_uuid(line_id)]}"

                # --- 2. The same alert redelivered by Kafka sends nothing again (an at_risk behind it proves it was read).
                at_risk = alert_event("at_risk", "M-2", now=clock(), days_late=0)
                await produce_events(kafka_bootstrap, ROADMAP_ALERTS, [missed, at_risk])
                await poll(lambda: _true(webhook_for(sink, idempotency_key(at_risk["id"], "owner", "webhook"))), 20,
                           what="at_risk delivery")
                assert len(webhook_for(sink, key_webhook, ok_only=False)) == 3
                assert len([m for m in smtp.to("owner@dga.go.th") if m["Message-ID"] == make_msgid_from_key(key_email)]) == 1
                assert await db.notifications.count_documents({"event_id": missed["id"]}) == 5

                # --- 3. Reminders on a controllable clock; escalation after 2 days missed.
                clock.advance(timedelta(hours=1, minutes=1))
                await poll(lambda: _true([m for m in smtp.to("owner@dga.go.th")
                                          if "แจ้งเตือนซ้ำครั้งที่ 1" in m["Subject"]]), 20, what="reminder 1")
                await poll(lambda: _true(webhook_for(sink, idempotency_key(missed["id"], "owner", "webhook",
                                                                           prefix="reminder:1"))), 10, what="reminder hook")
                assert not smtp.to("director@opdc.go.th")
                clock.advance(timedelta(days=2))
                await poll(lambda: _true(smtp.to("director@opdc.go.th")), 20, what="escalation e-mail")
                escalation = smtp.to("director@opdc.go.th")[0]
                assert "ยกระดับ" in escalation["Subject"]
                assert "ล่าช้า 7 วัน" in escalation.get_body(("plain",)).get_content()  # days late as of the clock
                reminders = await db.notifications.count_documents({"kind": "reminder", "channel": "email"})
                assert reminders == 2  # reminder 1 and one catch-up reminder, not a burst of 48

                # --- 4. Recovered stops the reminders.
                recovered = alert_event("recovered", "M-1", now=clock(), percent=100)
                await produce_events(kafka_bootstrap, ROADMAP_ALERTS, [recovered])
                await poll(lambda: _true([m for m in smtp.to("owner@dga.go.th") if "กลับมาตามแผน" in m["Subject"]]),
                           20, what="recovered e-mail")
                await poll(lambda: _count_active(db), 10, what="schedule stopped")
                clock.advance(timedelta(days=1))
                assert await service.schedule_once() == 0

                # --- 5. A permanent 4xx fails at once, is listed, and an operator retry delivers it.
                sink.fail_addresses["Ubadrecipient"] = 400
                await produce_events(kafka_bootstrap, ROADMAP_ALERTS, [alert_event("missed", "M-3", agency="mdes", now=clock())])

                async def failed():
                    r = await client.get("/v1/notifications", params={"state": "failed"}, headers=office)
                    assert r.status_code == 200, r.text
                    return r.json()["items"]

                items = await poll(failed, 20, what="failed notification")
                assert items[0]["channel"] == "line" and items[0]["attempts"] == 1 and items[0]["last_status"] == 400
                assert "address" not in items[0]
                # An agency key reads only the notifications about its own milestones (the failed one is mdes').
                r = await client.get("/v1/notifications", params={"limit": 500}, headers={"X-API-Key": agency_key})
                assert r.status_code == 200 and r.json()["items"], r.text
                assert {(i["agency"], i["kind"] in ("alert", "reminder", "escalation")) for i in r.json()["items"]} \
                    == {("dga", True)}
                del sink.fail_addresses["Ubadrecipient"]
                r = await client.post(f"/v1/notifications/{items[0]['id']}/retry", headers=office)
                assert r.status_code == 200 and r.json()["state"] == "pending"

                async def resent():
                    r = await client.get("/v1/notifications", params={"milestone": "M-3"}, headers=office)
                    return r.json()["items"][0]["state"] == "sent"

                await poll(resent, 20, what="retried notification sent")
                r = await client.post(f"/v1/notifications/{items[0]['id']}/retry", headers=office)
                assert r.status_code == 409
                assert (await client.post("/v1/notifications/nope/retry", headers=office)).status_code == 404
                r = await client.get("/v1/notifications", params={"state": "sent", "channel": "email", "milestone": "M-1"},
                                     headers=office)
                kinds = sorted(i["kind"] for i in r.json()["items"])
                assert kinds == ["alert", "alert", "escalation", "reminder", "reminder"]

                # --- 6. Test notification through a route, end to end.
                r = await client.post("/v1/test-notification", json={"route": "ops", "alert_type": "operational",
                                                                     "wait_seconds": 15}, headers=office)
                assert r.status_code == 200
                assert sorted((i["channel"], i["state"]) for i in r.json()["items"]) == [("slack", "sent"), ("webhook", "sent")]
                assert (await client.post("/v1/test-notification", json={"route": "nope"}, headers=office)).status_code == 404

                # --- 7. A real Alertmanager fires into the receiver (bearer token), firing then resolved.
                assert (await client.post("/v1/alertmanager", json={"version": "4"},
                                          headers={"Authorization": f"Bearer {AM_TOKEN}"})).status_code == 400
                assert (await client.post("/v1/alertmanager", json={})).status_code == 401
                am_port = px.free_port()
                config = tmp_path / "alertmanager.yml"
                # As deployed: Alertmanager reads the credential from a file (credentials_file).
                token_file = tmp_path / "am-token"
                token_file.write_text(AM_TOKEN + "\n", encoding="utf-8")
                token_file.chmod(0o600)
                config.write_text(yaml.safe_dump({
                    "route": {"receiver": "notifier", "group_by": ["alertname"], "group_wait": "1s",
                              "group_interval": "1s", "repeat_interval": "1h"},
                    "receivers": [{"name": "notifier", "webhook_configs": [{
                        "url": f"http://127.0.0.1:{settings.http_port}/v1/alertmanager", "send_resolved": True,
                        "http_config": {"authorization": {"credentials_file": str(token_file)}}}]}]}))
                am = px.alertmanager(am_port, config, tmp_path / "am-data", LOGS).start()
                am_url = f"http://127.0.0.1:{am_port}"
                await poll(lambda: asyncio.to_thread(px.http_ok, f"{am_url}/-/ready"), 30, what="alertmanager ready")
                started = datetime.now(UTC)
                alert = {"labels": {"alertname": "NewnormalConsumerLagHigh", "severity": "critical", "agency": "dga",
                                    "topic": "roadmap.alerts"},
                         "annotations": {"summary": "Consumer lag above 1000 records"}, "startsAt": started.isoformat()}
                async with httpx.AsyncClient(base_url=am_url) as am_client:
                    assert (await am_client.post("/api/v2/alerts", json=[alert])).status_code == 200

                    def ops_slack(word: str):
                        return [r for r in sink.of("/slack", True) if "NewnormalConsumerLagHigh" in r.body["text"]
                                and word in r.body["text"]]

                    await poll(lambda: _true(ops_slack("การแจ้งเตือนระบบ")), 30, what="operational alert on slack")
                    await poll(lambda: _true(smtp.to("pmo@opdc.go.th")), 20, what="critical alert e-mail")
                    assert "NewnormalConsumerLagHigh" in smtp.to("pmo@opdc.go.th")[0]["Subject"]
                    resolved = {**alert, "endsAt": datetime.now(UTC).isoformat()}
                    assert (await am_client.post("/api/v2/alerts", json=[resolved])).status_code == 200
                    await poll(lambda: _true(ops_slack("แก้ไขแล้ว")), 30, what="resolved alert on slack")
                def ops_hooks():
                    return [r for r in sink.of("/webhook", True) if r.body.get("kind") == "operational"
                            and r.body["operational"]["alertname"] == "NewnormalConsumerLagHigh"]

                await poll(lambda: _true({r.body["operational"]["status"] for r in ops_hooks()} == {"firing", "resolved"}),
                           20, what="firing and resolved on the webhook")
                ops_hooks = ops_hooks()
                assert ops_hooks[0].body["agency"] == "dga"

                # --- 8. Metrics, once everything is delivered.
                await poll(lambda: _count_open(db), 20, what="all notifications delivered")
                text = (await client.get("/metrics")).text
                assert metric(text, 'newnormal_notifier_notifications_total{channel="webhook",outcome="sent"}') >= 5
                assert metric(text, 'newnormal_notifier_retries_total{channel="webhook"}') == 2
                assert metric(text, 'newnormal_notifier_notifications_total{channel="line",outcome="failed"}') == 1
                assert metric(text, 'newnormal_notifier_pending{channel="email"}') == 0
                assert metric(text, 'newnormal_notifier_failed{channel="line"}') == 0
                assert metric(text, "newnormal_notifier_delivery_seconds_count") >= 20
                assert await db.notifications.count_documents({"state": {"$ne": "sent"}}) == 0
            finally:
                await db.client.close()
    finally:
        if am is not None:
            am.stop()
        smtp.__exit__(None, None, None)
        await sink.stop()


async def _count_open(db):
    return await db.notifications.count_documents({"state": {"$ne": "sent"}}) == 0


async def _count_active(db):
    return await db.notifier_reminders.count_documents({"active": True}) == 0 and \
        await db.notifier_reminders.count_documents({}) > 0


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not exported"
    return float(m.group(1))
