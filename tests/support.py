"""Helpers for tests over the real servers: run an app, poll with a deadline, read topics, keys."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI
from pymongo import AsyncMongoClient

T = TypeVar("T")


class MovableClock:
    """A `services.common.clock.Clock` for tests: real time shifted by an offset, so retries still come due
    while a test sets or advances "now" (a deadline made to pass, a reminder made due)."""

    def __init__(self, start: datetime | None = None):
        self.set(start or datetime.now(UTC))

    def set(self, instant: datetime) -> None:
        self.offset = instant - datetime.now(UTC)

    def advance(self, delta: timedelta) -> None:
        self.offset += delta

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def eventually(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call `check()` (plain or async) until it returns something truthy or `timeout` seconds pass; return its last
    value either way, for callers that go on when a condition does not come (a fault's own bound)."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last or time.monotonic() >= deadline:
            return last
        await asyncio.sleep(interval)


async def poll(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "condition") -> Any:
    """Await `check()` until it returns something truthy; fail with `what` after `timeout` seconds."""
    last = await eventually(check, timeout, interval)
    if not last:
        raise AssertionError(f"{what} not reached within {timeout} s (last value: {last!r})")
    return last


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (consumers, watchers, ...) and give an HTTP client bound to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            yield client


async def make_key(settings, agency: str, role: str = "agency") -> str:
    from services.common.auth import Role, create_key

    client = AsyncMongoClient(settings.mongo_uri.get_secret_value())
    try:
        return await create_key(client[settings.mongo_db], agency, Role(role))
    finally:
        await client.close()


def point_cli_at(monkeypatch, settings) -> None:
    """Point the `newnormal` command line at the database of `settings`, as an operator's environment does."""
    monkeypatch.setenv("NEWNORMAL_MONGO_URI", settings.mongo_uri.get_secret_value())
    monkeypatch.setenv("NEWNORMAL_MONGO_DB", settings.mongo_db)


def db_of(settings):
    """A fresh client's database handle (the caller closes `handle.client`)."""
    return AsyncMongoClient(settings.mongo_uri.get_secret_value(), tz_aware=True)[settings.mongo_db]


def cloudevent(type_: str, data: dict, *, agency: str, id: str | None = None, source: str | None = None,
               time: str | None = None, **extra: Any) -> dict[str, Any]:
    """A structured-mode CloudEvent as an agency system would send it."""
    return {"specversion": "1.0", "id": id or uuid.uuid4().hex, "source": source or f"/agencies/{agency}/test",
            "type": type_, "agency": agency, "time": time or datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json", "data": data, **extra}


def kiosk_response(i: int, prefix: str) -> dict[str, Any]:
    """Response number `i` from dga's kiosk (id `<prefix>-<i>`): its channel, age group and day cycle with `i`."""
    return cloudevent("feedback.response.submitted", {
        "agency": "dga", "service_name": "ต่ออายุใบอนุญาต", "channel": ["online_web", "walk_in"][i % 2],
        "age_group": ["25_34", "60_plus"][i % 2], "satisfaction": 1 + i % 5, "tech_difficulty": "none",
        "aware_of_digital_channels": bool(i % 2), "submitted_at": f"2026-03-{1 + i % 20:02d}T09:30:00+07:00"},
        agency="dga", source="/agencies/dga/kiosk", id=f"{prefix}-{i}")


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
    """Put raw records on a topic, as an agency publishing directly to Kafka would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_events(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    """Structured-mode records, keyed by agency."""
    await produce(bootstrap, topic, [(e.get("agency", "").encode() or None, json.dumps(e).encode(),
                                      [("content-type", b"application/cloudevents+json")]) for e in events])


async def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """Every record currently on a topic (all partitions), without joining a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        async def known() -> set[int] | None:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
            return partitions

        partitions = await eventually(known, timeout)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while time.monotonic() < deadline:  # getmany waits for records itself: no sleep here
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                break
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


def header(record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode()
    return None


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a real socket in this test's event loop (Alertmanager and body-size checks need one)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await poll(started, 60, what="service started")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
