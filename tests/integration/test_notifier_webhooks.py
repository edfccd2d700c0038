"""Webhook signatures end to end: an alert on the real broker, the notifier running with its real HTTP client, and
receivers that verify every request with services.contracts.webhooks.verify (Standard Webhooks), as a receiver
built by someone else would."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from support import poll, produce_events

from bench.notifier_sinks import HttpSink
from services.contracts.envelope import make_event
from services.contracts.thai_calendar import BANGKOK
from services.contracts.topics import ROADMAP_ALERTS
from services.contracts.webhooks import WebhookVerificationError, generate_secret, sign_headers, verify
from services.notifier.domain import RoutingError, idempotency_key
from services.notifier.main import create_app
from services.notifier.settings import NotifierSettings

pytestmark = pytest.mark.integration
NEW, OLD = generate_secret(), generate_secret()


def missed_alert(milestone: str) -> dict:
    now = datetime.now(UTC)
    data = {"milestone_id": milestone, "title_th": f"ภารกิจ {milestone}", "workstream": "technology_access",
            "owner_agency": "dga", "due_date": "2026-11-01", "percent_complete": 40, "days_late": 9,
            "detected_at": now.isoformat()}
    return make_event("roadmap.milestone.missed", data, agency="dga", source="/services/roadmap/watcher",
                      id=f"missed:{milestone}:2026-11-01", time=now, partitionkey="dga").to_json_dict()


def write_routes(tmp_path: Path, legacy_url: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({
        "recipients": {"verifier": {"webhook": "signed-hook"},
                       "legacy": {"webhook": legacy_url, "webhook_signing": "none"}},
        "routes": [{"name": "dga", "match": {"agency": "dga"}, "recipients": ["verifier", "legacy"],
                    "channels": ["webhook"]}]}), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def serve(app, port: int):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())

    async def started():
        return server.started

    await poll(started, 60, what="notifier started")
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_deliveries_verify_across_a_retry_and_a_rotation_and_the_opt_out_goes_unsigned(settings_for, tmp_path):
    # The receiver has not rotated yet: it knows only the old secret, while the notifier signs with both.
    signed_sink = await HttpSink(webhook_secrets=[OLD]).start()
    plain_sink = await HttpSink().start()
    try:
        settings = settings_for(
            NotifierSettings, notifier_routes_file=write_routes(tmp_path, plain_sink.url("/webhook")),
            notifier_webhook_urls={"signed-hook": signed_sink.url("/webhook")},
            notifier_webhook_secrets={"signed-hook": f"{NEW} {OLD}"}, notifier_webhook_secret=None,
            notifier_retry_base_seconds=0.05, notifier_retry_max_seconds=0.2, notifier_scheduler_tick_seconds=0.2)
        # Wednesday 10:00 in Bangkok, so no quiet hours; webhook timestamps use the real clock regardless.
        offset = datetime(2026, 11, 25, 10, 0, tzinfo=BANGKOK) - datetime.now(UTC)
        app = create_app(settings, clock=lambda: datetime.now(UTC) + offset)
        signed_sink.script["/webhook"] = [503]  # the first attempt fails after verification: one retry
        async with serve(app, settings.http_port):
            alert = missed_alert("W-1")
            await produce_events(settings.kafka_bootstrap_servers, ROADMAP_ALERTS, [alert])
            key = idempotency_key(alert["id"], "verifier", "webhook")

            async def signed_delivered():
                return [r for r in signed_sink.of("/webhook", ok_only=True) if r.headers.get("idempotency-key") == key]

            async def plain_delivered():
                return plain_sink.of("/webhook", ok_only=True)

            await poll(signed_delivered, 30, what="signed webhook delivered after a retry")
            await poll(plain_delivered, 30, what="unsigned webhook delivered")

        attempts = [r for r in signed_sink.of("/webhook") if r.headers.get("idempotency-key") == key]
        assert [r.status for r in attempts] == [503, 200]
        assert all(not r.problems for r in signed_sink.received)  # the sink verified each request itself
        first, ok = attempts
        assert first.headers["webhook-id"] == ok.headers["webhook-id"]  # receivers de-duplicate on it
        assert len(ok.headers["webhook-signature"].split(" ")) == 2
        for known in ([OLD], [NEW], [NEW, OLD]):
            verify(ok.raw, ok.headers, known)
        with pytest.raises(WebhookVerificationError) as info:
            verify(ok.raw, ok.headers, [generate_secret()])
        assert info.value.reason == "no_matching_signature"
        with pytest.raises(WebhookVerificationError) as info:  # replayed ten minutes later: refused
            verify(ok.raw, ok.headers, [OLD], now=int(ok.headers["webhook-timestamp"]) + 600)
        assert info.value.reason == "timestamp_too_old"
        assert ok.body["milestone"]["milestone_id"] == "W-1"

        [plain] = plain_sink.of("/webhook", ok_only=True)
        assert "webhook-signature" not in plain.headers and plain.headers["webhook-id"].startswith("msg_")
    finally:
        await signed_sink.stop()
        await plain_sink.stop()


def test_the_notifier_refuses_to_start_with_an_unsigned_webhook_not_opted_out(settings_for, tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("recipients:\n  ops: {webhook: ops-hook}\nroutes:\n  - {name: ops, recipients: [ops]}\n",
                    encoding="utf-8")
    with pytest.raises(RoutingError, match=r"ops \(ops-hook\) have no signing secret"):
        create_app(settings_for(NotifierSettings, notifier_routes_file=path, notifier_webhook_secret=None))
    app = create_app(settings_for(NotifierSettings, notifier_routes_file=path, notifier_webhook_secret=NEW))
    assert app.state.notifier.routing.unsigned_webhooks == frozenset()


async def test_a_tampered_or_stale_delivery_is_refused_by_the_verifying_sink():
    sink = await HttpSink(webhook_secrets=[OLD]).start()
    try:
        body = b'{"id":"x"}'
        now = int(datetime.now(UTC).timestamp())
        async with httpx.AsyncClient() as client:
            good = sign_headers([OLD], "msg_x", body, timestamp=now)
            stale = sign_headers([OLD], "msg_x", body, timestamp=now - int(timedelta(minutes=6).total_seconds()))
            answers = [(await client.post(sink.url("/webhook"), content=content, headers=headers)).status_code
                       for content, headers in ((body, good), (b'{"id":"y"}', good), (body, stale), (body, {}))]
        assert answers == [200, 401, 401, 401]
        assert [r.problems for r in sink.received[1:]] == [["webhook signature: no_matching_signature"],
                                                         ["webhook signature: timestamp_too_old"],
                                                         ["webhook signature: missing_header"]]
    finally:
        await sink.stop()
