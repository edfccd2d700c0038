"""Fault injection with exact counting, for one consuming service (CI: `test_faults.py`) or several at once on one
broker and one database (on demand: `make faults-full`, `full.py`).

Each service ("lane") runs as a real process (`python -m services.cli run <service>`); per lane two agency clients keep
sending unique events (one over HTTP with retries, one straight to Kafka) with poison records and deliberate resends
mixed in. Meanwhile:

1. the service processes are killed with SIGKILL while consuming (round robin over the lanes), and restarted;
2. the database server is stopped for 20 s, then restarted on the same port and storage path;
3. the broker is frozen (SIGSTOP; Tansu keeps its data in memory, so it is not killed) until an HTTP intake answers
   503 with Retry-After, then thawed (SIGCONT); the clients retry what was not taken;
4. malformed, invalid, unknown-agency and oversized (> 64 KiB) records are mixed in throughout.

Afterwards the database and the dead-letter topics are counted exactly, per lane, and the platform metrics of each
final process are compared with the database over a final tranche (per-process counters reset on restart, so only
the tranche the final process handled alone is comparable).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from support import eventually, header, poll, read_topic

from bench.harness import platform_counters
from services.common import processes as px
from services.contracts.topics import dlq
from services.simulator.model import World

DB = "faults"
LOGS = Path(__file__).resolve().parents[2] / ".data" / "test-logs" / "faults"
DB_OUTAGE_SECONDS = 20.0
POISON_KINDS = ("invalid_json", "invalid_data", "unknown_agency", "event_too_large")
RETRY_AFTER_CAP = 2.0  # the client honours Retry-After but caps it to keep the run short
# The clients' own pauses (their behaviour under faults, not waits for readiness):
RECONNECT_PAUSE_SECONDS = 0.3  # an HTTP client's back-off after a refused connection
RESEND_PAUSE_SECONDS = 0.5  # a Kafka producer's back-off before re-sending what the broker did not confirm
CONDITION_POLL_SECONDS = 0.1  # how often a fault step looks at the condition it waits for
VERIFY_RETRY_SECONDS = 1.0  # between `verify` runs while a sweep completes what a SIGKILL left half-done
TOPICS = {"feedback": "feedback.events", "training": "training.events", "roadmap": "roadmap.events"}
POISON_TYPES = {"feedback": "feedback.response.submitted", "training": "training.course.completed",
                "roadmap": "roadmap.milestone.progressed"}


@dataclass(frozen=True)
class Plan:
    """What a run does: which services, how many kills, how fast each client sends, and how many events the lanes
    must have had accepted (together) before the clients stop (0: stop when the faults are over)."""

    services: tuple[str, ...]
    kills: int = 3
    kafka_rate: float = 70.0  # events per second from each lane's Kafka client
    http_rate: float = 50.0  # events per second from each lane's HTTP client
    events: int = 0
    settle_seconds: float = 120.0  # for the backlog to drain once the clients stop
    # After this long an unfinished write is a dead writer's (the sweep finishes it); a live write stops at half of
    # it. Three services and their servers on two cores make a batch slower than one does: the full run needs more.
    grace_seconds: float = 5.0


MAX_DRAIN_SECONDS = 3600.0  # a drain that still makes progress after an hour is a failure too


def _poison(service: str, kind: str, marker: str) -> bytes:
    base = {"specversion": "1.0", "id": marker, "source": "/agencies/rd/faults", "type": POISON_TYPES[service],
            "agency": "rd", "time": datetime.now(UTC).isoformat()}
    if kind == "invalid_json":
        return f"{marker} {{this is not json".encode()
    if kind == "invalid_data":
        return json.dumps({**base, "data": {"agency": "rd", "satisfaction": 9, "percent_complete": 900}}).encode()
    if kind == "unknown_agency":
        return json.dumps({**base, "agency": "nosuchagency", "source": "/agencies/nosuchagency/x", "data": {}}).encode()
    return json.dumps({**base, "data": {}, "pad": "x" * (70 * 1024)}).encode()


class Lane:
    """One consuming service under fault: its process, its clients' bookkeeping."""

    def __init__(self, name: str, env: dict[str, str], world: World):
        self.name = name
        self.topic = TOPICS[name]
        self.http_port = px.free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.env = env
        self.process = px.service(name, self.http_port, env, LOGS)
        self.world = world
        self.sent_http: dict[tuple[str, str], dict] = {}
        self.sent_kafka: dict[tuple[str, str], dict] = {}
        self.sent_final: dict[tuple[str, str], dict] = {}  # the final tranche's new events
        self.resent_duplicates = 0
        self.poison: list[tuple[str, str]] = []
        self.http_503 = 0
        self.http_503_with_retry_after = 0
        self.http_503_reasons: Counter = Counter()
        self.http_connection_errors = 0
        self.kafka_send_failures = 0
        self.last_http_accept = 0.0
        self.kills: list[float] = []
        self.restart_to_ready_s: list[float] = []

    @property
    def accepted(self) -> dict[tuple[str, str], dict]:
        return {**self.sent_http, **self.sent_kafka}

    def events(self, n: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        if self.name == "feedback":
            return [self.world.feedback_response(now) for _ in range(n)]
        if self.name == "training":
            return [self.world.training_completion(now) for _ in range(n)]
        # A live update on an open milestone (the world falls back to a feedback response when none is open).
        return [e for e in (self.world.roadmap_update(now) for _ in range(n)) if e["type"].startswith("roadmap.")]

    def start(self) -> float:
        t0 = time.monotonic()
        self.process.start()
        px.wait_until(lambda: px.http_ok(f"{self.url}/healthz"), 120, self.name, proc=self.process)
        return time.monotonic() - t0


class Scenario:
    def __init__(self, tmp: Path, plan: Plan):
        self.plan = plan
        self.kafka_port, self.mongo_port = px.free_port(), px.free_port()
        self.storage = str(tmp / "secantus")
        self.uri = f"mongodb://127.0.0.1:{self.mongo_port}"
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.env = {
            "NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "NEWNORMAL_MONGO_URI": self.uri,
            "NEWNORMAL_MONGO_DB": DB, "NEWNORMAL_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "NEWNORMAL_KAFKA_HEARTBEAT_INTERVAL_MS": "500", "NEWNORMAL_CONSUMER_MAX_RECORDS": "100",
            "NEWNORMAL_PUBLISH_TIMEOUT_SECONDS": "3", "NEWNORMAL_API_KEY_CACHE_SECONDS": "10",
            "NEWNORMAL_METRICS_CACHE_SECONDS": "0", "NEWNORMAL_KAFKA_TOPIC_PARTITIONS": "2",
            "NEWNORMAL_MONGO_SERVER_SELECTION_TIMEOUT_MS": "2000", "NEWNORMAL_LOG_LEVEL": "WARNING",
            "NEWNORMAL_KAFKA_CONSUMER_GROUP_PREFIX": f"faults-{uuid.uuid4().hex[:6]}",
            # A rollup batch left unfinished by a SIGKILL is completed by the sweeper after the grace period.
            "NEWNORMAL_FEEDBACK_SWEEP_GRACE_SECONDS": str(plan.grace_seconds),
            "NEWNORMAL_FEEDBACK_SWEEP_INTERVAL_SECONDS": "2",
            "NEWNORMAL_STALE_CLAIM_SECONDS": str(plan.grace_seconds),  # the same for training
            "NEWNORMAL_RECOVERY_INTERVAL_SECONDS": "2",
            # Secrets have no defaults in code: a run outside pytest (`make faults-full`) makes throw-away ones.
            "NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET": os.environ.get("NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET")
            or secrets.token_urlsafe(32),
        }
        self.kafka = px.tansu(self.kafka_port, LOGS)
        self.mongo = px.secantus(self.mongo_port, self.storage, LOGS)
        # Small progress steps for long runs: the roadmap lane's reports must not dry up with the plan finished.
        self.world = World(8, datetime.now(UTC), agencies=12, progress_step=min(1.0, 5_000 / max(plan.events, 1)))
        self.lanes = [Lane(name, self.env, self.world) for name in plan.services]
        self.keys: dict[str, str] = {}
        self.recovery: dict[str, Any] = {}
        self.stop_feeding = asyncio.Event()
        self.feeders: list[asyncio.Future] = []

    # --- helpers -----------------------------------------------------------------------------
    async def stored(self) -> int | None:
        try:
            return await self.db.events.count_documents({})
        except PyMongoError:  # the database is stopped on purpose during one fault
            return None

    async def wait_stored_increase(self, timeout: float) -> float:
        """Seconds until the audit trail grows (processing has resumed)."""
        t0 = time.monotonic()

        async def readable() -> tuple[int] | None:
            count = await self.stored()
            return None if count is None else (count,)  # a tuple, so that a count of 0 is still "readable"

        (base,) = await poll(readable, timeout, what="the audit trail readable after a fault")

        async def grew() -> bool:
            count = await self.stored()
            return count is not None and count > base

        await poll(grew, max(0.1, t0 + timeout - time.monotonic()), what="progress after a fault")
        return time.monotonic() - t0

    def accepted_total(self) -> int:
        return sum(len(lane.sent_http) + len(lane.sent_kafka) for lane in self.lanes)

    # --- the clients -------------------------------------------------------------------------
    async def http_client(self, lane: Lane) -> None:
        async with httpx.AsyncClient(timeout=15) as client:
            while not self.stop_feeding.is_set():
                t0 = time.monotonic()
                batch = lane.events(25)
                for agency in {e["agency"] for e in batch}:
                    await self.post_until_accepted(lane, client, [e for e in batch if e["agency"] == agency])
                await asyncio.sleep(max(0.0, 25 / self.plan.http_rate - (time.monotonic() - t0)))  # the client's pace

    async def post_until_accepted(self, lane: Lane, client: httpx.AsyncClient, events: list[dict]) -> None:
        pending = events
        while pending:
            try:
                resp = await client.post(f"{lane.url}/v1/events", content=json.dumps(pending),
                                         headers={"Content-Type": "application/cloudevents-batch+json",
                                                  "X-API-Key": self.keys[pending[0]["agency"]]})
            except httpx.HTTPError:
                lane.http_connection_errors += 1
                await asyncio.sleep(RECONNECT_PAUSE_SECONDS)
                continue
            try:
                body = resp.json()
            except ValueError:
                raise AssertionError(f"HTTP {resp.status_code} without a problem body: {resp.text[:200]}") from None
            for item in body.get("accepted", []):
                key = (item["source"], item["id"])
                lane.sent_http[key] = next(e for e in pending if (e["source"], e["id"]) == key)
            if resp.status_code == 202:
                lane.last_http_accept = time.monotonic()
                assert not body["rejected"], body
                return
            assert resp.status_code == 503, (resp.status_code, body)
            lane.http_503 += 1
            lane.http_503_reasons[body.get("reason", "?")] += 1
            retry_after = resp.headers.get("retry-after")
            if retry_after is not None:
                lane.http_503_with_retry_after += 1
            if "not_accepted" in body:  # only what Kafka did not take is sent again
                not_taken = {(i["source"], i["id"]) for i in body["not_accepted"]}
                pending = [e for e in pending if (e["source"], e["id"]) in not_taken]
            await asyncio.sleep(min(RETRY_AFTER_CAP, float(retry_after or 1)))

    async def kafka_client(self, lane: Lane) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=4000,
                                    linger_ms=5)
        await producer.start()
        try:
            n = 0
            while not self.stop_feeding.is_set():
                t0 = time.monotonic()
                records: list[tuple[bytes, dict | None]] = [(json.dumps(e).encode(), e) for e in lane.events(30)]
                if n % 3 == 0:  # poison mixed into the stream, one of each kind in turn
                    kind = POISON_KINDS[(n // 3) % len(POISON_KINDS)]
                    marker = f"poison-{kind}-{n}"
                    lane.poison.append((kind, marker))
                    records.insert(len(records) // 2, (_poison(lane.name, kind, marker), None))
                if n % 5 == 1 and lane.sent_kafka:  # a resend of an event already acknowledged
                    event = next(iter(lane.sent_kafka.values()))
                    records.append((json.dumps(event).encode(), None))
                    lane.resent_duplicates += 1
                await self.send_until_acked(lane, producer, records)
                n += 1
                await asyncio.sleep(max(0.0, 30 / self.plan.kafka_rate - (time.monotonic() - t0)))  # the client's pace
        finally:
            await producer.stop()

    async def send_until_acked(self, lane: Lane, producer: AIOKafkaProducer,
                               records: list[tuple[bytes, dict | None]]) -> None:
        pending = records
        while pending:
            futures = []
            for value, _ in pending:
                try:
                    futures.append(await asyncio.wait_for(producer.send(
                        lane.topic, value, key=b"faults", headers=[("content-type", b"application/cloudevents+json")]), 5))
                except Exception as exc:
                    futures.append(exc)
            failed = []
            for (value, event), fut in zip(pending, futures):
                try:
                    if isinstance(fut, Exception):
                        raise fut
                    await asyncio.wait_for(fut, 10)
                    if event is not None:
                        lane.sent_kafka[(event["source"], event["id"])] = event
                except Exception:
                    failed.append((value, event))
            if failed:
                lane.kafka_send_failures += len(failed)
                await asyncio.sleep(RESEND_PAUSE_SECONDS)
            pending = failed

    # --- the faults --------------------------------------------------------------------------
    async def kill_consumers(self) -> None:
        """`plan.kills` SIGKILLs, round robin over the lanes, each while its process is consuming."""
        for i in range(self.plan.kills):
            lane = self.lanes[i % len(self.lanes)]
            await self.wait_stored_increase(60)  # mid-stream: it is consuming right now
            t0 = time.monotonic()
            os.kill(lane.process.popen.pid, signal.SIGKILL)
            lane.process.popen.wait(10)
            lane.restart_to_ready_s.append(round(await asyncio.to_thread(lane.start), 2))
            resumed = await self.wait_stored_increase(90)
            lane.kills.append(round(time.monotonic() - t0, 2))
            assert resumed >= 0

    async def stop_database(self) -> None:
        await self.wait_stored_increase(60)
        self.mongo.stop()
        stopped = time.monotonic()
        await asyncio.sleep(DB_OUTAGE_SECONDS)  # the fault itself lasts 20 s (not a readiness wait)
        self.mongo = px.secantus(self.mongo_port, self.storage, LOGS).start()
        restarted = time.monotonic()
        px.wait_until(lambda: px.mongo_ready(self.uri), 60, "secantusdb", proc=self.mongo)
        resumed = await self.wait_stored_increase(90)
        self.recovery["database_outage_s"] = round(restarted - stopped, 2)
        self.recovery["database_restart_to_resumed_s"] = round(time.monotonic() - restarted, 2)
        self.recovery["database_resumed_after_ready_s"] = round(resumed, 2)

    async def freeze_broker(self) -> None:
        def refusals() -> list[int]:
            return [lane.http_503_reasons["broker_unavailable"] for lane in self.lanes]

        before_503 = refusals()
        os.kill(self.kafka.popen.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            # Frozen until every service's intake has refused (each client saw the outage; the feeders stopping
            # first ends it too); at most 60 s, then the fault goes on.
            await eventually(lambda: all(now > then for now, then in zip(refusals(), before_503))
                             or any(f.done() for f in self.feeders), 60, CONDITION_POLL_SECONDS)
        finally:
            os.kill(self.kafka.popen.pid, signal.SIGCONT)
        thawed = time.monotonic()
        self.recovery["broker_outage_s"] = round(thawed - frozen, 2)
        await eventually(lambda: all(lane.last_http_accept >= thawed for lane in self.lanes), 60, CONDITION_POLL_SECONDS)
        self.recovery["broker_thaw_to_http_accepted_s"] = round(min(lane.last_http_accept for lane in self.lanes) - thawed, 2)
        resumed = await self.wait_stored_increase(90)
        self.recovery["broker_thaw_to_stored_s"] = round(time.monotonic() - thawed, 2)
        assert resumed >= 0

    # --- the run -----------------------------------------------------------------------------
    async def start(self) -> None:
        from services.common.auth import create_key

        self.kafka.start()
        px.wait_until(lambda: px.port_open(self.kafka_port), 30, "tansu", proc=self.kafka)
        self.mongo.start()
        px.wait_until(lambda: px.mongo_ready(self.uri), 60, "secantusdb", proc=self.mongo)
        admin = AsyncMongoClient(self.uri)
        for agency in self.world.agencies:
            self.keys[agency] = await create_key(admin[DB], agency)
        await admin.close()
        for lane in self.lanes:
            await asyncio.to_thread(lane.start)
            px.wait_until(lambda lane=lane: px.http_ok(f"{lane.url}/readyz"), 120, lane.name, proc=lane.process)
        self.client = AsyncMongoClient(self.uri, serverSelectionTimeoutMS=1000)
        self.db = self.client[DB]
        for lane in self.lanes:
            if lane.name == "roadmap":  # the plan first, so that the live updates find their milestones
                plans = self.world.plan_events()
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
                await producer.start()
                try:
                    await self.send_until_acked(lane, producer, [(json.dumps(e).encode(), e) for e in plans])
                finally:
                    await producer.stop()

    async def oversized_at_the_door(self, lane: Lane) -> tuple[int, str | None]:
        """An oversized event over HTTP is refused at the door with a reason."""
        big = {**lane.events(1)[0], "pad": "x" * (70 * 1024)}
        async with httpx.AsyncClient(timeout=15) as c:
            r = await c.post(f"{lane.url}/v1/events", json=big, headers={"Content-Type": "application/cloudevents+json",
                                                                         "X-API-Key": self.keys[big["agency"]]})
        return r.status_code, r.json().get("reason")

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        await self.start()
        oversized = {lane.name: await self.oversized_at_the_door(lane) for lane in self.lanes}
        self.feeders = [asyncio.ensure_future(feed(lane)) for lane in self.lanes
                        for feed in (self.http_client, self.kafka_client)]
        try:
            await self.kill_consumers()
            await self.stop_database()
            await self.freeze_broker()
            await self.wait_stored_increase(30)
            # Full size: the clients go on until the lanes together have had `plan.events` accepted.
            await poll(lambda: self.accepted_total() >= self.plan.events or any(f.done() for f in self.feeders),
                       max(60.0, 3 * self.plan.events / (len(self.lanes) * (self.plan.http_rate + self.plan.kafka_rate))),
                       1.0, f"{self.plan.events} events accepted")
        finally:
            self.stop_feeding.set()
            await asyncio.gather(*self.feeders)
        total = sum(len(lane.accepted) for lane in self.lanes)

        await self.drained(total)
        keys = Counter([(d["source"], d["id"]) async for d in self.db.events.find({}, {"_id": 0, "source": 1, "id": 1})])
        # Counted before the final tranches (which are counted separately, each from its own lane's metrics).
        lanes = {lane.name: self.count(lane, keys) for lane in self.lanes}
        for lane in self.lanes:
            final = await self.final_tranche(lane, await self.stored() or 0)
            figures = lanes[lane.name]
            figures["events_sent"] += final["sent"]
            figures["events_accepted"] += final["valid_new"]
            figures.update({
                "http_oversized": oversized[lane.name], "final_tranche": final,
                "dead_letters": await self.dead_letters(lane),
                "rollups_verify": await asyncio.to_thread(self.verify_rollups, lane),
                **({"milestones": await self.milestone_facts(lane)} if lane.name == "roadmap" else {}),
                "recovery": {"consumer_kill": lane.kills, "restart_to_ready_s": lane.restart_to_ready_s}})
        await self.client.close()
        return {"services": list(self.plan.services), "kills": self.plan.kills, "lanes": lanes,
                "events_accepted": total, "recovery": self.recovery,
                "wall_seconds": round(time.monotonic() - started, 1)}

    async def drained(self, total: int) -> None:
        """Wait until every accepted event is stored. A backlog drains at its own speed on a loaded machine: what
        fails the run is a stall, the count not growing for `settle_seconds`, not a slow drain."""
        progress = {"count": -1, "since": time.monotonic()}

        async def settled() -> bool:
            count = await self.stored()
            if count == total:
                return True
            if count is not None and count != progress["count"]:
                progress.update(count=count, since=time.monotonic())
            elif time.monotonic() - progress["since"] > self.plan.settle_seconds:
                raise AssertionError(f"{progress['count']} of {total} accepted events stored, no progress for "
                                     f"{self.plan.settle_seconds} s; {await self.unsettled()}")
            return False

        await poll(settled, MAX_DRAIN_SECONDS, 0.5, "every accepted event stored")

    async def unsettled(self) -> dict[str, Any]:
        """What a drain that did not finish left: per lane, accepted events not stored, and stored events no lane
        accepted (by source), so that a failed run says where to look."""
        keys = Counter([(d["source"], d["id"]) async for d in self.db.events.find({}, {"_id": 0, "source": 1, "id": 1})])
        accepted = {k for lane in self.lanes for k in lane.accepted}
        return {"missing": {lane.name: sum(1 for k in lane.accepted if k not in keys) for lane in self.lanes},
                "twice": sum(1 for n in keys.values() if n > 1),
                "unexpected_by_source": dict(Counter(source for source, _ in keys if (source, _) not in accepted)
                                             .most_common(5)),
                "consumer_lag_records": {lane.name: (await _scrape(lane)).get(("newnormal_consumer_lag_records", ""))
                                         for lane in self.lanes if lane.process.running}}

    def count(self, lane: Lane, keys: Counter) -> dict[str, Any]:
        accepted = lane.accepted
        others = {k for other in self.lanes if other is not lane for k in other.accepted}
        mine = {k: n for k, n in keys.items() if k not in others}
        return {
            "events_sent": len(accepted) + lane.resent_duplicates + len(lane.poison),
            "events_accepted": len(accepted),
            "accepted_over_http": len(lane.sent_http), "accepted_over_kafka": len(lane.sent_kafka),
            "deliberate_resends": lane.resent_duplicates,
            "poison_records_sent": dict(Counter(k for k, _ in lane.poison)),
            "http_503_responses": lane.http_503, "http_503_with_retry_after": lane.http_503_with_retry_after,
            "http_503_by_reason": dict(lane.http_503_reasons),
            "http_connection_errors_retried": lane.http_connection_errors,
            "kafka_sends_retried": lane.kafka_send_failures,
            # Counted before the final tranche (which is counted separately).
            "stored": sum(1 for k in accepted if k in keys), "stored_documents": sum(keys[k] for k in accepted if k in keys),
            "duplicates_in_db": sum(n - 1 for n in mine.values() if n > 1),
            "accepted_not_stored": len(set(accepted) - set(keys)),
            "stored_not_accepted": len(set(mine) - set(accepted)),
        }

    async def milestone_facts(self, lane: Lane) -> dict[str, Any]:
        """Every accepted roadmap event is a fact of its milestone once: none twice, none missing, none foreign."""
        facts = Counter([f["key"] async for d in self.db.milestones.find({}, {"facts.key": 1}) for f in d.get("facts", [])])
        from services.roadmap.domain import fact_key

        wanted = {fact_key(s, i) for s, i in [*lane.accepted, *lane.sent_final]}
        return {"milestones": await self.db.milestones.count_documents({}), "facts": sum(facts.values()),
                "facts_twice": sum(n - 1 for n in facts.values() if n > 1),
                "accepted_not_a_fact": len(wanted - set(facts)), "facts_not_accepted": len(set(facts) - wanted)}

    async def final_tranche(self, lane: Lane, stored_before: int) -> dict[str, Any]:
        """A tranche the lane's final process handles alone: its counter deltas must equal what the DB gained."""
        # Redeliveries of the fault phase may still be in flight after everything is stored: count from a quiet
        # consumer, or their outcomes land in this tranche's deltas.
        before = await self.quiet_counters(lane)
        new = lane.events(200)
        old = list(lane.sent_kafka.values())[:50]
        poison = [(kind, f"poison-final-{kind}-{i}") for i in range(2) for kind in POISON_KINDS]
        lane.poison.extend(poison)
        records = [(json.dumps(e).encode(), e) for e in new] + [(json.dumps(e).encode(), None) for e in old] \
            + [(_poison(lane.name, k, m), None) for k, m in poison]
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            await self.send_until_acked(lane, producer, records)
        finally:
            await producer.stop()
        lane.sent_final.update({(e["source"], e["id"]): e for e in new})

        async def done() -> bool:
            m = await _scrape(lane)
            handled = sum(m.get(("newnormal_consumer_records_total", o), 0) - before.get(("newnormal_consumer_records_total", o), 0)
                          for o in ("stored", "duplicate", "dead_lettered"))
            return handled >= len(records) and await self.stored() == stored_before + len(new)

        await poll(done, 60, 0.2, f"final tranche handled by {lane.name}")
        after = await self.quiet_counters(lane)
        delta = {k[1]: after.get(k, 0) - before.get(k, 0) for k in after if k[0] == "newnormal_consumer_records_total"}
        reasons = {k[1]: after.get(k, 0) - before.get(k, 0) for k in after if k[0] == "newnormal_dead_letter_records_total"}
        return {"sent": len(records), "valid_new": len(new), "resent_old": len(old), "poison": len(poison),
                "db_gained": (await self.stored()) - stored_before,
                "metric_deltas": {k: v for k, v in delta.items() if v},
                "dead_letter_reason_deltas": {k: v for k, v in reasons.items() if v}}

    async def quiet_counters(self, lane: Lane) -> dict[tuple[str, str], float]:
        """The consumer's counters once two readings a second apart agree (nothing being handled)."""
        last: list = [None]

        async def steady():
            now = await _scrape(lane)
            same = now == last[0]
            last[0] = now
            return now if same else None

        return await poll(steady, 60, 1.0, f"{lane.name} consumer counters steady")

    async def dead_letters(self, lane: Lane) -> dict[str, Any]:
        records = await read_topic(self.bootstrap, dlq(lane.topic), timeout=20)
        by_marker: dict[str, list[str]] = {}
        unexpected: Counter = Counter()
        for r in records:
            text = (r.value or b"")[:300].decode("utf-8", "replace")
            m = re.search(r"poison-(?:final-)?[a-z_]+-\d+", text)
            if m:
                by_marker.setdefault(m.group(0), []).append(header(r, "dlq-reason") or "")
            else:
                unexpected[header(r, "dlq-reason") or "?"] += 1
        expected = {marker: kind for kind, marker in lane.poison}
        return {
            "records": len(records),
            "distinct_poison_records": len(by_marker),
            "missing": sorted(set(expected) - set(by_marker)),
            "wrong_reason": sorted(m for m, reasons in by_marker.items() if set(reasons) != {expected.get(m)}),
            "unexpected": len(records) - sum(len(v) for v in by_marker.values()),
            "unexpected_by_reason": dict(unexpected),
            # A crash after the dead-letter publish and before the commit re-publishes it (at-least-once).
            "republished_after_crash": sum(len(v) - 1 for v in by_marker.values()),
            "by_reason": dict(Counter(expected[m] for m in by_marker if m in expected)),
        }

    def verify_rollups(self, lane: Lane) -> dict[str, Any] | None:
        """`newnormal <service> verify` (rollups == full recount) when the service has it. Rollup batches a
        SIGKILL left half-applied are completed by the service's sweeper, so this polls until they converge."""
        cli = Path(__file__).resolve().parents[2] / "services" / lane.name / "cli.py"
        if not cli.exists() or "verify" not in cli.read_text(encoding="utf-8"):
            return None
        t0 = time.monotonic()
        runs: list[subprocess.CompletedProcess[str]] = []

        def converged() -> bool:
            runs.append(subprocess.run([sys.executable, "-m", "services.cli", lane.name, "verify"], check=False,
                                       capture_output=True, text=True, env={**os.environ, **self.env}, timeout=120))
            return runs[-1].returncode == 0

        with contextlib.suppress(TimeoutError):  # not converged in 60 s: reported, and the run fails on it
            px.wait_until(converged, 60, "rollups equal to a full recount", interval=VERIFY_RETRY_SECONDS)
        proc, attempts = runs[-1], len(runs)
        return {"returncode": proc.returncode, "attempts": attempts, "converged_after_s": round(time.monotonic() - t0, 1),
                "output": (proc.stdout + proc.stderr)[-300:]}

    def stop_all(self) -> None:
        for proc in [lane.process for lane in self.lanes] + [self.mongo, self.kafka]:
            if proc.popen is not None and proc.running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.popen.pid, signal.SIGCONT)  # a frozen broker must be thawed to stop
                proc.stop()


async def _scrape(lane: Lane) -> dict[tuple[str, str], float]:
    """Platform counters of a lane's running process: (metric, outcome-or-reason) -> value, for its topic."""
    async with httpx.AsyncClient(timeout=10) as c:
        return platform_counters((await c.get(f"{lane.url}/metrics")).text, lane.topic)


def violations(results: dict[str, Any]) -> list[str]:
    """Everything a run must show, as the list of what it did not (empty: it held)."""
    out: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            out.append(what)

    rec = results["recovery"]
    check(rec["database_outage_s"] >= DB_OUTAGE_SECONDS, "database outage shorter than planned")
    check(rec["broker_thaw_to_http_accepted_s"] >= 0, "no HTTP accept after the broker thawed")
    check(sum(len(lane["recovery"]["consumer_kill"]) for lane in results["lanes"].values()) == results["kills"],
          "not every planned SIGKILL happened")
    check(sum(lane["http_503_by_reason"].get("broker_unavailable", 0) for lane in results["lanes"].values()) >= 1,
          "the frozen broker never made an intake answer 503")
    for name, lane in results["lanes"].items():
        check(lane["accepted_not_stored"] == 0, f"{name}: accepted events not stored (lost)")
        check(lane["stored_not_accepted"] == 0, f"{name}: stored events nobody had accepted")
        check(lane["duplicates_in_db"] == 0 and lane["stored"] == lane["stored_documents"], f"{name}: stored twice")
        check(lane["http_503_with_retry_after"] == lane["http_503_responses"], f"{name}: a 503 without Retry-After")
        check(tuple(lane["http_oversized"]) == (413, "event_too_large"), f"{name}: oversized event not refused at the door")
        if lane["rollups_verify"] is not None:
            check(lane["rollups_verify"]["returncode"] == 0, f"{name}: rollups differ from a recount")
        if "milestones" in lane:
            m = lane["milestones"]
            check(m["facts_twice"] == 0 and m["facts_not_accepted"] == 0, f"{name}: a fact twice or from nowhere")
        dead = lane["dead_letters"]
        check(dead["missing"] == [] and dead["wrong_reason"] == [] and dead["unexpected"] == 0,
              f"{name}: poison records not dead-lettered exactly, with their reasons")
        check(set(dead["by_reason"]) == set(POISON_KINDS), f"{name}: not every kind of poison dead-lettered")
        final = lane["final_tranche"]
        deltas = final["metric_deltas"]
        check(final["db_gained"] == final["valid_new"], f"{name}: final tranche not stored exactly")
        check(deltas.get("dead_lettered", 0) == final["poison"]
              and final["dead_letter_reason_deltas"] == {k: 2 for k in POISON_KINDS}, f"{name}: dead-letter metrics")
        check(deltas.get("stored", 0) + deltas.get("duplicate", 0) == final["valid_new"] + final["resent_old"]
              and deltas.get("stored", 0) == final["db_gained"], f"{name}: consumer metrics disagree with the database")
    return out

