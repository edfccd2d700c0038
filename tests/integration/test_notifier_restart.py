"""Kill -9 the notifier while receivers hold deliveries open, restart it: the rest is delivered,
nothing is lost, and nothing confirmed before the kill is sent again."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC
from pathlib import Path

import pytest
import yaml
from support import db_of, poll, produce_events

from bench.notifier_sinks import HttpSink
from services.common import processes as px
from services.contracts.envelope import make_event
from services.contracts.topics import ROADMAP_ALERTS
from services.contracts.webhooks import generate_secret
from services.notifier.domain import idempotency_key, retry_key_uuid
from services.notifier.settings import NotifierSettings

pytestmark = pytest.mark.integration
LOGS = Path(__file__).resolve().parents[2] / ".data" / "test-logs"
N = 12
CONCURRENCY = 4


def missed_event(i: int) -> dict:
    from datetime import datetime

    now = datetime.now(UTC)
    data = {"milestone_id": f"K-{i}", "title_th": f"ภารกิจ {i}", "workstream": "technology_access", "owner_agency": "dga",
            "due_date": "2026-11-01", "percent_complete": 30, "days_late": 20, "detected_at": now.isoformat()}
    return make_event("roadmap.milestone.missed", data, agency="dga", source="/services/roadmap/watcher",
                      id=f"missed:K-{i}:2026-11-01", time=now, partitionkey="dga").to_json_dict()


async def test_kill_mid_delivery_then_restart_delivers_the_rest_without_duplicates(settings_for, tmp_path):
    sink = await HttpSink("tok").start()
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({
        "recipients": {"owner": {"webhook": "hook", "line": "Uowner"}},
        "routes": [{"name": "dga", "match": {"agency": "dga"}, "recipients": ["owner"], "channels": ["webhook", "line"]}]}))
    settings = settings_for(NotifierSettings)
    env = {"NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "NEWNORMAL_MONGO_URI": settings.mongo_uri.get_secret_value(), "NEWNORMAL_MONGO_DB": settings.mongo_db,
           "NEWNORMAL_KAFKA_CONSUMER_GROUP_PREFIX": settings.kafka_consumer_group_prefix,
           "NEWNORMAL_KAFKA_SESSION_TIMEOUT_MS": "6000", "NEWNORMAL_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
           "NEWNORMAL_KAFKA_TOPIC_PARTITIONS": "2", "NEWNORMAL_NOTIFIER_ROUTES_FILE": str(routes),
           "NEWNORMAL_NOTIFIER_LINE_BASE_URL": sink.base_url, "NEWNORMAL_NOTIFIER_LINE_CHANNEL_ACCESS_TOKEN": "tok",
           "NEWNORMAL_NOTIFIER_WEBHOOK_URLS": json.dumps({"hook": sink.url("/webhook")}),
           "NEWNORMAL_NOTIFIER_WEBHOOK_SECRET": generate_secret(), "NEWNORMAL_NOTIFIER_LEASE_SECONDS": "3",
           "NEWNORMAL_NOTIFIER_CONCURRENCY": str(CONCURRENCY), "NEWNORMAL_NOTIFIER_CLAIM_BATCH": "8", "NEWNORMAL_NOTIFIER_SCHEDULER_TICK_SECONDS": "0.2",
           "NEWNORMAL_NOTIFIER_HTTP_TIMEOUT_SECONDS": "60", "NEWNORMAL_LOG_LEVEL": "WARNING"}
    sink.gate = asyncio.Event()
    sink.hold_after = 4  # four webhook deliveries complete, then the receiver holds every request open
    db = db_of(settings)
    procs = []

    async def start() -> px.ManagedProcess:
        port = px.free_port()
        proc = px.service("notifier", port, env, LOGS).start()
        procs.append(proc)
        await poll(lambda: asyncio.to_thread(px.http_ok, f"http://127.0.0.1:{port}/readyz"), 60, what="notifier ready")
        return proc

    try:
        first = await start()
        events = [missed_event(i) for i in range(N)]
        await produce_events(settings.kafka_bootstrap_servers, ROADMAP_ALERTS, events)
        await poll(lambda: _value(sink.held == CONCURRENCY), 30, what="deliveries held open by the receiver")

        sent_before = {d["key"] async for d in db.notifications.find({"state": "sent"})}
        in_flight = {d["key"] async for d in db.notifications.find({"state": "sending"})}
        first.kill()  # SIGKILL: no shutdown hook, leases stay on the documents
        # the 4 requests held open plus whatever was claimed into the local queue (never attempted)
        held_keys = {r.headers["idempotency-key"] for r in sink.of("/webhook") if r.status == 0}
        assert len(held_keys) == CONCURRENCY and held_keys <= in_flight
        assert len([k for k in sent_before if k.endswith("|webhook")]) == 4
        sink.hold_after = 10**9
        sink.gate.set()  # the held requests now reach the receiver, but nobody is left to record `sent`

        await start()

        async def all_sent():
            return await db.notifications.count_documents({"state": "sent"}) == 2 * N

        await poll(all_sent, 60, what="every notification sent after the restart")
        webhook_keys = [idempotency_key(e["id"], "owner", "webhook") for e in events]
        receipts = {k: len([r for r in sink.of("/webhook", ok_only=True) if r.headers.get("idempotency-key") == k])
                    for k in webhook_keys}
        assert all(n >= 1 for n in receipts.values()), receipts  # nothing lost
        assert all(receipts[k] == 1 for k in sent_before if k in receipts)  # confirmed ones never repeated
        repeated = {k for k, n in receipts.items() if n > 1}
        assert repeated <= held_keys and all(n <= 2 for n in receipts.values())  # at most once more, only in-flight ones
        # A receiver that deduplicates on Idempotency-Key processes each notification exactly once.
        assert len(set(sink.first_at) & set(webhook_keys)) == N
        # LINE confirms with its retry key: every message accepted exactly once.
        line_keys = {retry_key_uuid(idempotency_key(e["id"], "owner", "line")) for e in events}
        assert set(sink.accepted_line) == line_keys
        assert len(sink.of("/v2/bot/message/push", ok_only=True)) == N
        resumed = await db.notifications.count_documents({"key": {"$in": list(held_keys)}, "attempts": 2})
        assert resumed == CONCURRENCY  # the interrupted attempt counts: budgets stay honest
    finally:
        for proc in procs:
            proc.stop()
        await db.client.close()
        await sink.stop()


async def _value(v):
    return v
