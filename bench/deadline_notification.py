"""Time from a milestone deadline passing to the e-mail arriving at an SMTP sink (goal: p99 under 5 s).

Project path: the roadmap service (in process, with a movable clock) plans milestones due on
successive Bangkok days; for each, the clock is set 2 s before the deadline (end of the Bangkok
day) and then runs on in real time. Its deadline watcher publishes `roadmap.milestone.missed`; the
notifier (child process) consumes it and sends the e-mail to an aiosmtpd sink in this process.
Latency = sink arrival - the real instant the deadline passed.
Baseline: a raw aiokafka producer publishes an alert record at the deadline; a raw consumer
(getmany) sends the e-mail with aiosmtplib to the same sink. For reference, the issue records a
Prometheus rule -> Alertmanager path (15 s evaluation, default 30 s group_wait) at 32 s.
Usage: python -m bench.deadline_notification [--milestones 8]
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiosmtplib
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiosmtpd.controller import Controller

from bench.harness import peak_rss_mib, summary, write_results
from bench.platform_stack import LOGS, SHARED_NOTE, Stack
from services.common import processes as px
from services.common.kafka import EventPublisher
from services.contracts.envelope import make_event
from services.contracts.thai_calendar import bangkok_day, end_of_bangkok_day
from services.roadmap.main import create_app
from services.roadmap.settings import RoadmapSettings

OWNER = "mdes"


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[float, str]] = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((time.perf_counter(), str(msg["subject"] or "")))
        return "250 OK"

    async def first(self, marker: str, after: float, timeout: float = 120) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for at, subject in self.messages:
                if marker in subject and "missed" in subject.lower() and at >= after:
                    return at
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no e-mail for {marker}")


class MovableClock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def project(stack: Stack, sink: Sink, smtp_port: int, milestones: int) -> tuple[list[float], float]:
    db = "bench_deadline"
    notifier = px.service("notifier", px.free_port(), stack.env(
        db, NEWNORMAL_NOTIFIER_SMTP_PORT=str(smtp_port), NEWNORMAL_NOTIFIER_QUIET_START_HOUR="0",
        NEWNORMAL_NOTIFIER_QUIET_END_HOUR="0", NEWNORMAL_NOTIFIER_SCHEDULER_TICK_SECONDS="0.2"), LOGS).start()
    stack.procs.append(notifier)
    clock = MovableClock()
    settings = RoadmapSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db=db,
                               kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", kafka_session_timeout_ms=6000,
                               kafka_heartbeat_interval_ms=500, http_port=px.free_port(), log_level="WARNING")
    app = create_app(settings, clock=clock)
    publisher = EventPublisher(settings)
    run = uuid.uuid4().hex[:6]
    today = bangkok_day(clock())
    latencies: list[float] = []
    async with app.router.lifespan_context(app):
        await publisher.start()
        try:
            # Plan every milestone up front: one per Bangkok day from tomorrow on.
            days = [today + timedelta(days=i + 1) for i in range(milestones)]
            for i, due in enumerate(days):
                await publisher.publish(make_event("roadmap.milestone.planned", {
                    "milestone_id": f"BENCH-{run}-{i}", "title_th": f"ภารกิจทดสอบ BENCH-{run}-{i}", "title_en": f"Bench {i}",
                    "workstream": "technology_access", "owner_agency": OWNER, "due_date": due.isoformat(),
                }, agency=OWNER, source=f"/agencies/{OWNER}/bench", id=f"plan-{run}-{i}", time=datetime.now(UTC)))
            px.wait_until(lambda: px.http_ok(f"http://127.0.0.1:{notifier.env['NEWNORMAL_NOTIFIER_PORT']}/readyz"), 180,
                          "notifier", proc=notifier)
            await _planned(stack, db, milestones, run)
            for i, due in enumerate(days):
                deadline = end_of_bangkok_day(due)
                # Two seconds before the deadline on the service's clock; from here on it runs in real time.
                clock.offset = deadline - timedelta(seconds=2) - datetime.now(UTC)
                passed_at = time.perf_counter() + 2.0
                arrived = await sink.first(f"BENCH-{run}-{i}", after=passed_at)
                latencies.append(arrived - passed_at)
                print(f"milestone {i}: deadline -> e-mail {latencies[-1]:.2f} s", flush=True)
        finally:
            await publisher.stop()
    return latencies, peak_rss_mib(notifier.popen.pid)


async def _planned(stack: Stack, db: str, n: int, run: str) -> None:
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(stack.uri)
    try:
        for _ in range(600):
            if await client[db].events.count_documents({"source": f"/agencies/{OWNER}/bench", "id": {"$regex": f"^plan-{run}-"}}) >= n:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("milestones not planned")
    finally:
        await client.close()


async def baseline(stack: Stack, sink: Sink, smtp_port: int, n: int) -> list[float]:
    topic = "bench.deadline.raw"
    await stack.create_topic(topic, 1)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="latest", session_timeout_ms=6000, heartbeat_interval_ms=500)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    stop = asyncio.Event()

    async def relay() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    alert = json.loads(r.value)
                    await aiosmtplib.send(f"Subject: missed {alert['marker']}\r\n\r\nmissed\r\n", sender="a@example.org",
                                          recipients=["b@example.org"], hostname="127.0.0.1", port=smtp_port)

    task = asyncio.ensure_future(relay())
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # the 'latest' position is fetched after assignment
        latencies = []
        for _i in range(n):
            marker = f"RAW-{uuid.uuid4().hex[:8]}"
            t0 = time.perf_counter()
            await (await producer.send(topic, json.dumps({"marker": marker}).encode()))
            latencies.append(await sink.first(marker, after=t0) - t0)
        return latencies
    finally:
        stop.set()
        await task
        await producer.stop()
        await consumer.stop()


async def main(milestones: int) -> dict:
    sink = Sink()
    smtp_port = px.free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        with Stack() as stack:
            base = await baseline(stack, sink, smtp_port, milestones)
            lat, rss = await project(stack, sink, smtp_port, milestones)
    finally:
        controller.stop()
    p, b = summary(lat), summary(base)
    return {"note": SHARED_NOTE, "milestones": milestones, "goal_p99_s": 5.0,
            "project_deadline_to_email_s": p, "baseline_raw_kafka_to_smtp_s": b,
            "ratio_p50": p["p50"] / b["p50"], "ratio_p99": p["p99"] / b["p99"],
            "reference_prometheus_alertmanager_s": 32,
            "peak_rss_mib": {"notifier": rss, "bench_process (roadmap in process)": peak_rss_mib()}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--milestones", type=int, default=8)
    a = ap.parse_args()
    result = asyncio.run(main(a.milestones))
    print(json.dumps(result, indent=2))
    print(write_results("deadline_notification", result))
