"""Servers and helpers the platform benchmarks share: their own Tansu and SecantusDB, services as
child processes, API keys, event generation and the raw-driver baseline consumer."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import BulkWriteError

from services.common import processes as px
from services.contracts.envelope import document_id
from services.contracts.webhooks import generate_secret
from services.simulator.model import World

LOGS = Path(__file__).resolve().parent.parent / ".data" / "bench-logs"
SHARED_NOTE = "measured while the machine (2 cores) was shared with other jobs: figures are indicative; compare ratios"


class Stack:
    """Tansu + SecantusDB on free ports; services started on demand. SecantusDB keeps its data in memory
    unless `storage` names a directory (the large benchmarks: on WiredTiger files, as in production)."""

    def __init__(self, storage: Path | None = None) -> None:
        self.kafka_port, self.mongo_port = px.free_port(), px.free_port()
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.uri = f"mongodb://127.0.0.1:{self.mongo_port}"
        self.storage = storage
        self.procs: list[px.ManagedProcess] = []

    def __enter__(self) -> Self:
        LOGS.mkdir(parents=True, exist_ok=True)
        kafka = px.tansu(self.kafka_port, LOGS).start()
        self.procs.append(kafka)
        px.wait_until(lambda: px.port_open(self.kafka_port), 30, "tansu", proc=kafka)
        self.mongo = px.secantus(self.mongo_port, str(self.storage) if self.storage else ":memory:", LOGS).start()
        self.procs.append(self.mongo)
        px.wait_until(lambda: px.mongo_ready(self.uri), 60, "secantusdb", proc=self.mongo)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def env(self, db: str, **extra: str) -> dict[str, str]:
        return {"NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "NEWNORMAL_MONGO_URI": self.uri,
                "NEWNORMAL_MONGO_DB": db, "NEWNORMAL_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "NEWNORMAL_KAFKA_HEARTBEAT_INTERVAL_MS": "500", "NEWNORMAL_LOG_LEVEL": "WARNING",
                "NEWNORMAL_METRICS_CACHE_SECONDS": "0",
                # Secrets have no defaults in code: throw-away ones for a benchmark run.
                "NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET": "bench-learner-hmac-secret-not-for-production",
                "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN": "bench-alertmanager-token-not-for-production",
                "NEWNORMAL_NOTIFIER_ACK_SECRET": secrets.token_urlsafe(32),
                # The routes file's ops webhook is signed (Standard Webhooks): the notifier refuses to start without.
                "NEWNORMAL_NOTIFIER_WEBHOOK_SECRET": generate_secret(),
                "NEWNORMAL_KAFKA_CONSUMER_GROUP_PREFIX": f"bench-{uuid.uuid4().hex[:6]}", **extra}

    def service(self, name: str, db: str, **extra: str) -> tuple[px.ManagedProcess, str]:
        port = px.free_port()
        proc = px.service(name, port, self.env(db, **extra), LOGS).start()
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        px.wait_until(lambda: px.http_ok(f"{url}/readyz"), 180, name, proc=proc)
        return proc, url

    async def keys(self, db: str, agencies: list[str]) -> dict[str, str]:
        from services.common.auth import create_key

        client = AsyncMongoClient(self.uri)
        try:
            return {a: await create_key(client[db], a) for a in agencies}
        finally:
            await client.close()

    async def create_topic(self, name: str, partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()


def feedback_events(n: int, seed: int = 1, agency: str | None = None, source_suffix: str = "bench") -> list[dict[str, Any]]:
    world = World(seed, datetime.now(UTC), agencies=12)
    now = datetime.now(UTC)
    events = []
    for _ in range(n):
        e = world.feedback_response(now)
        if agency is not None:
            e["agency"] = e["data"]["agency"] = agency
        e["source"] = f"/agencies/{e['agency']}/{source_suffix}"
        events.append(e)
    return events


async def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> float:
    """Raw aiokafka producer, pipelined: every send first, then every ack. Returns seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        t0 = time.perf_counter()
        futures = [await producer.send(topic, json.dumps(e).encode(), key=e["agency"].encode(),
                                       headers=[("content-type", b"application/cloudevents+json")]) for e in events]
        await asyncio.gather(*futures)
        return time.perf_counter() - t0
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, uri: str, db: str, topic: str, expected: int, group: str,
                      timeout: float = 300, collection: str = "events", max_records: int = 500,
                      id_key: bool = False) -> float:
    """The baseline: getmany + insert_many(ordered=False) under a unique (source, id) index, commit after.
    id_key=True: the stricter variant, keyed by `_id` {source, id} instead (as the project stores events),
    which spares the database the secondary index.
    Returns seconds from start (group join included, as for the platform consumer) to `expected` stored."""
    client = AsyncMongoClient(uri)
    coll = client[db][collection]
    if not id_key:
        await coll.create_index([("source", ASCENDING), ("id", ASCENDING)], unique=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=max_records, session_timeout_ms=6000,
                                heartbeat_interval_ms=500)
    t0 = time.perf_counter()
    await consumer.start()
    stored = 0
    try:
        while stored < expected and time.perf_counter() - t0 < timeout:
            batch = await consumer.getmany(timeout_ms=200, max_records=max_records)
            docs = [json.loads(r.value) for records in batch.values() for r in records]
            if id_key:
                for doc in docs:
                    doc["_id"] = document_id(str(doc.get("source")), str(doc.get("id")))
            if docs:
                try:
                    await coll.insert_many(docs, ordered=False)
                except BulkWriteError as exc:  # duplicate keys are "already stored"; anything else is a failure
                    if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                        raise
                await consumer.commit()
                stored += len(docs)
        return time.perf_counter() - t0
    finally:
        await consumer.stop()
        await client.close()


async def count(uri: str, db: str, collection: str = "events") -> int:
    client = AsyncMongoClient(uri)
    try:
        return await client[db][collection].count_documents({})
    finally:
        await client.close()


async def wait_count(uri: str, db: str, expected: int, timeout: float = 300, collection: str = "events") -> float:
    client = AsyncMongoClient(uri)
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < timeout:
            if await client[db][collection].count_documents({}) >= expected:
                return time.perf_counter() - t0
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{expected} documents not stored within {timeout} s")
    finally:
        await client.close()
