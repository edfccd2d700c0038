"""Notifier fan-out benchmark: N alerts on `roadmap.alerts`, each routed to 3 channels (webhook, Slack,
LINE) against a local HTTP sink in its own process.

Measures notifications/s (first alert produced -> last notification recorded `sent`) and alert-to-delivery
latency (event time -> `sent_at`, p50/p99). Baseline in the same run, on the same broker, database and
sink: raw aiokafka getmany + insert_many of the same documents + httpx posting the same requests with the
same concurrency (no state machine, no leases, no rendering).

    python -m bench.notifier_fanout [--size 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient, monitoring

from bench.db_time import CommandTimes
from bench.harness import CpuSplit, peak_rss_mib, percentile, write_results
from services.common import processes as px
from services.contracts.envelope import make_event
from services.contracts.topics import ROADMAP_ALERTS
from services.contracts.webhooks import generate_secret, sign_headers
from services.notifier.main import create_app
from services.notifier.settings import NotifierSettings

LOGS = Path(__file__).resolve().parent.parent / ".data" / "bench-logs"
AGENCIES = ("dga", "ocsc", "opdc", "mdes", "moi")
CONCURRENCY = 64
WEBHOOK_SECRET = generate_secret()  # throw-away; the sink verifies every delivery with it


def alerts(n: int) -> list[dict]:
    out = []
    for i in range(n):
        now = datetime.now(UTC)
        agency = AGENCIES[i % len(AGENCIES)]
        data = {"milestone_id": f"B-{i}", "title_th": f"ภารกิจทดสอบ {i}", "title_en": f"Bench milestone {i}",
                "workstream": "technology_access", "owner_agency": agency, "due_date": "2026-11-01",
                "percent_complete": 40, "days_late": 3, "detected_at": now.isoformat()}
        out.append(make_event("roadmap.milestone.missed", data, agency=agency, source="/services/roadmap/watcher",
                              id=f"missed:B-{i}:2026-11-01", time=now, partitionkey=agency).to_json_dict())
    return out


async def produce(bootstrap: str, topic: str, events: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = []
        for e in events:
            e["time"] = datetime.now(UTC).isoformat()  # event time = when it was published
            futures.append(await producer.send(topic, json.dumps(e).encode(), key=e["agency"].encode(),
                                               headers=[("content-type", b"application/cloudevents+json")]))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def run_notifier(bootstrap: str, mongo_uri: str, sink_url: str, n: int, tmp: Path) -> dict:
    routes = tmp / "routes.yaml"
    routes.write_text(yaml.safe_dump({
        "recipients": {"owner": {"webhook": "hook", "slack": f"{sink_url}/slack", "line": "Ubench"}},
        "routes": [{"name": "all", "recipients": ["owner"], "channels": ["webhook", "slack", "line"]}]}))
    db_name = f"bench_{uuid.uuid4().hex[:8]}"
    settings = NotifierSettings(
        kafka_bootstrap_servers=bootstrap, mongo_uri=mongo_uri, mongo_db=db_name,
        kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", http_port=px.free_port(),
        notifier_routes_file=routes, notifier_line_base_url=sink_url, notifier_line_channel_access_token="bench-token",
        notifier_webhook_urls={"hook": f"{sink_url}/webhook"}, notifier_webhook_secret=WEBHOOK_SECRET,
        notifier_concurrency=CONCURRENCY, notifier_claim_batch=200, notifier_scheduler_tick_seconds=0.5,
        notifier_alertmanager_token="bench-alertmanager-token-not-for-production",
        notifier_ack_secret=secrets.token_urlsafe(32), log_level="WARNING")  # throw-away: no secret has a default
    app = create_app(settings)
    async with httpx.AsyncClient() as http:
        sink_before = (await http.get(f"{sink_url}/stats")).json()["ok"]
    client = AsyncMongoClient(mongo_uri, tz_aware=True)
    db = client[db_name]
    try:
        async with app.router.lifespan_context(app):
            events = alerts(n)
            started = time.perf_counter()
            await produce(bootstrap, ROADMAP_ALERTS, events)
            produced = time.perf_counter() - started
            expected = 3 * n
            # Watch the sink, not the database: a count over a 30k collection would steal the DB from the run.
            async with httpx.AsyncClient() as http:
                while (await http.get(f"{sink_url}/stats")).json()["ok"] < expected + sink_before:
                    await asyncio.sleep(0.5)
            while await db.notifications.count_documents({"state": {"$in": ["pending", "sending", "retrying"]}}):
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
        latencies = [(d["sent_at"] - d["event_time"]).total_seconds()
                     async for d in db.notifications.find({}, {"sent_at": 1, "event_time": 1})]
        retried = await db.notifications.count_documents({"attempts": {"$gt": 1}})
    finally:
        await client.drop_database(db_name)
        await client.close()
    return {"notifications": expected, "seconds": round(elapsed, 2), "produce_seconds": round(produced, 2),
            "notifications_per_s": round(expected / elapsed, 1),
            "latency_p50_s": round(percentile(latencies, 0.5), 3), "latency_p99_s": round(percentile(latencies, 0.99), 3),
            "latency_max_s": round(max(latencies), 3), "redelivered_attempts": retried}


async def run_baseline(bootstrap: str, mongo_uri: str, sink_url: str, n: int) -> dict:
    """The same work with raw drivers: getmany -> insert_many -> httpx POST x3 per alert (no state machine)."""
    topic = f"bench.baseline.{uuid.uuid4().hex[:6]}"
    events = alerts(n)
    db_name = f"bench_raw_{uuid.uuid4().hex[:8]}"
    client = AsyncMongoClient(mongo_uri, tz_aware=True)
    col = client[db_name].notifications
    await col.create_index("key", unique=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    latencies: list[float] = []
    sem = asyncio.Semaphore(CONCURRENCY)
    delivered = 0
    try:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=CONCURRENCY * 2)) as http:
            await consumer.start()
            started = time.perf_counter()
            producer_task = asyncio.create_task(produce(bootstrap, topic, events))

            async def post(path: str, body: dict, event_time: datetime) -> None:
                nonlocal delivered
                raw = json.dumps(body, ensure_ascii=False).encode()
                headers = {"Authorization": "Bearer bench-token", "X-Line-Retry-Key": str(uuid.uuid4()),
                           "Content-Type": "application/json"}
                if path == "/webhook":  # the raw path signs too (the sink verifies), so both sides pay for it
                    headers.update(sign_headers([WEBHOOK_SECRET], f"msg_{uuid.uuid4().hex}", raw))
                async with sem:
                    r = await http.post(f"{sink_url}{path}", content=raw, headers=headers)
                    r.raise_for_status()
                    delivered += 1
                    latencies.append((datetime.now(UTC) - event_time).total_seconds())

            tasks = []
            while delivered + len([t for t in tasks if not t.done()]) < 3 * n or any(not t.done() for t in tasks):
                batch = await consumer.getmany(timeout_ms=200, max_records=500)
                records = [r for recs in batch.values() for r in recs]
                if not records:
                    if len(tasks) >= 3 * n:
                        await asyncio.gather(*tasks)
                    continue
                docs, posts = [], []
                for rec in records:
                    e = json.loads(rec.value)
                    t = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
                    for ch, path, body in (("webhook", "/webhook", {"text": e["id"], "milestone": e["data"]}),
                                           ("slack", "/slack", {"text": e["id"], "blocks": [{"type": "section"}]}),
                                           ("line", "/v2/bot/message/push",
                                            {"to": "Ubench", "messages": [{"type": "text", "text": e["id"]}]})):
                        docs.append({"key": f"{e['id']}|owner|{ch}", "state": "pending", "event_time": t})
                        posts.append((path, body, t))
                await col.insert_many(docs, ordered=False)
                await consumer.commit()
                tasks.extend(asyncio.create_task(post(*p)) for p in posts)
            elapsed = time.perf_counter() - started
            await producer_task
    finally:
        await consumer.stop()
        await client.drop_database(db_name)
        await client.close()
    return {"notifications": 3 * n, "seconds": round(elapsed, 2), "notifications_per_s": round(3 * n / elapsed, 1),
            "latency_p50_s": round(percentile(latencies, 0.5), 3), "latency_p99_s": round(percentile(latencies, 0.99), 3)}


async def main_async(n: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    kafka_port, mongo_port, sink_port = px.free_port(), px.free_port(), px.free_port()
    kafka = px.tansu(kafka_port, LOGS).start()
    mongo = px.secantus(mongo_port, str(tmp / "db"), LOGS).start()
    sink = px.ManagedProcess("sink", [__import__("sys").executable, "-m", "bench.notifier_sinks", "--port", str(sink_port),
                              "--webhook-secret", WEBHOOK_SECRET],
                             LOGS / "notifier-sink.log", cwd=Path(__file__).resolve().parent.parent).start()
    bootstrap, mongo_uri, sink_url = f"127.0.0.1:{kafka_port}", f"mongodb://127.0.0.1:{mongo_port}", f"http://127.0.0.1:{sink_port}"
    try:
        px.wait_until(lambda: px.port_open(kafka_port), 30, "tansu", proc=kafka)
        px.wait_until(lambda: px.mongo_ready(mongo_uri), 60, "secantusdb", proc=mongo)
        px.wait_until(lambda: px.port_open(sink_port), 30, "sink", proc=sink)
        db_pid = mongo.popen.pid if mongo.popen else None
        with CpuSplit(db_pid) as base_cpu:  # what bounds each side: this process's CPU or the database's
            baseline = await run_baseline(bootstrap, mongo_uri, sink_url, n)
        baseline["cpu"] = base_cpu.report()
        print("baseline", baseline, flush=True)
        commands = CommandTimes()
        monitoring.register(commands)  # the notifier's client only: the baseline's was made before
        with CpuSplit(db_pid) as project_cpu:
            project = await run_notifier(bootstrap, mongo_uri, sink_url, n, tmp)
        project["cpu"] = project_cpu.report()
        project["database_seconds_by_command"] = commands.table(12)
        print("notifier", project, flush=True)
    finally:
        sink.stop()
        mongo.stop()
        kafka.stop()
    return {"size_alerts": n, "channels_per_alert": 3, "concurrency": CONCURRENCY, "notifier": project,
            "baseline_raw_drivers": baseline,
            "ratio_throughput_project_over_baseline": round(project["notifications_per_s"] / baseline["notifications_per_s"], 3),
            "ratio_p99_latency_project_over_baseline": round(project["latency_p99_s"] / baseline["latency_p99_s"], 3),
            "peak_rss_mib_bench_process": round(peak_rss_mib(), 1),
            "note": "sink in its own process; notifier, baseline, Tansu and SecantusDB share 2 cores with other work: indicative"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    results = asyncio.run(main_async(args.size))
    print(json.dumps(results, indent=2))
    print(write_results("notifier_fanout", results))


if __name__ == "__main__":
    main()
