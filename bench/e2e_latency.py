"""End-to-end latency at a fixed load: HTTP accepted (202) -> visible in the database the read API serves.

Project: batches of 50 CloudEvents POSTed to the feedback service 10 times a second (500 ev/s); a
watcher polls the `events` audit collection by `_id` (`document_id`, the key events are stored under) until
every event of a batch is visible. Baseline: the same load through a raw aiokafka producer (ack) -> raw
getmany + insert_many consumer keyed by the same `_id` -> visible, on the same broker and database. (An
earlier watcher looked events up by top-level source and id, which have no index since events are keyed by
`_id`: it timed its own collection scans, p99 33.7 s.)
Usage: python -m bench.e2e_latency [--rate 500] [--duration 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from bench.harness import peak_rss_mib, summary, write_results
from bench.platform_stack import SHARED_NOTE, Stack, feedback_events, raw_consume
from services.contracts.envelope import document_id

BATCH = 50


async def watch(uri: str, db: str, pending: asyncio.Queue, latencies: list[float], done: asyncio.Event) -> None:
    """Take batches in order; a batch is visible when all its ids are found."""
    client = AsyncMongoClient(uri)
    coll = client[db].events
    try:
        while not (done.is_set() and pending.empty()):
            try:
                accepted_at, source, ids = await asyncio.wait_for(pending.get(), 0.5)
            except TimeoutError:
                continue
            keys = [document_id(source, i) for i in ids]
            while await coll.count_documents({"_id": {"$in": keys}}) < len(ids):
                await asyncio.sleep(0.01)
            latencies.append(time.perf_counter() - accepted_at)
    finally:
        await client.close()


async def drive(rate: float, duration: float, send) -> None:
    interval = BATCH / rate
    start = time.perf_counter()
    n = 0
    tasks = []
    while time.perf_counter() - start < duration:
        tasks.append(asyncio.ensure_future(send(n)))
        n += 1
        await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
    await asyncio.gather(*tasks)


async def project_run(stack: Stack, url: str, key: str, db: str, rate: float, duration: float, seed: int) -> list[float]:
    latencies: list[float] = []
    pending: asyncio.Queue = asyncio.Queue()
    done = asyncio.Event()
    watcher = asyncio.ensure_future(watch(stack.uri, db, pending, latencies, done))
    async with httpx.AsyncClient(timeout=30) as client:
        async def send(n: int) -> None:
            events = feedback_events(BATCH, seed=seed * 100_000 + n, agency="rd", source_suffix=f"e2e-{seed}-{n}")
            resp = await client.post(f"{url}/v1/events", content=json.dumps(events),
                                     headers={"Content-Type": "application/cloudevents-batch+json", "X-API-Key": key})
            assert resp.status_code == 202, resp.text[:300]
            pending.put_nowait((time.perf_counter(), events[0]["source"], [e["id"] for e in events]))

        await drive(rate, duration, send)
    done.set()
    await asyncio.wait_for(watcher, 120)
    return latencies


async def baseline_run(stack: Stack, db: str, rate: float, duration: float, seed: int) -> list[float]:
    topic = f"bench.e2e.raw.{seed}"
    await stack.create_topic(topic, 3)
    latencies: list[float] = []
    pending: asyncio.Queue = asyncio.Queue()
    done = asyncio.Event()
    expected = int(duration * rate / BATCH + 1) * BATCH
    consumer = asyncio.ensure_future(raw_consume(stack.bootstrap, stack.uri, db, topic, expected, f"raw-e2e-{seed}",
                                                 timeout=duration + 120, id_key=True))
    await asyncio.sleep(3)  # let the raw consumer join its group before the clock starts (both paths run warm)
    watcher = asyncio.ensure_future(watch(stack.uri, db, pending, latencies, done))
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        async def send(n: int) -> None:
            nonlocal sent
            events = feedback_events(BATCH, seed=seed * 100_000 + n, agency="rd", source_suffix=f"raw-{seed}-{n}")
            futures = [await producer.send(topic, json.dumps(e).encode(), key=b"rd") for e in events]
            await asyncio.gather(*futures)
            sent += len(events)
            pending.put_nowait((time.perf_counter(), events[0]["source"], [e["id"] for e in events]))

        await drive(rate, duration, send)
    finally:
        await producer.stop()
    done.set()
    await asyncio.wait_for(watcher, 120)
    consumer.cancel()
    return latencies


async def main(rate: float, duration: float, repeats: int) -> dict:
    with Stack() as stack:
        proc, url = stack.service("feedback", "bench_e2e")
        keys = await stack.keys("bench_e2e", ["rd"])
        # Warm-up: the service's consumer has joined its group once the first batch is visible.
        await project_run(stack, url, keys["rd"], "bench_e2e", rate, 2, seed=999)
        project, baseline = [], []
        for r in range(repeats):
            project.extend(await project_run(stack, url, keys["rd"], "bench_e2e", rate, duration, seed=r + 1))
            baseline.extend(await baseline_run(stack, f"bench_e2e_raw_{r}", rate, duration, seed=r + 1))
            print(f"run {r + 1}: project p50 {statistics.median(project):.3f} s · baseline p50 {statistics.median(baseline):.3f} s",
                  flush=True)
        p, b = summary(project), summary(baseline)
        return {"note": SHARED_NOTE, "rate_events_per_s": rate, "duration_s": duration, "repeats": repeats,
                "batch": BATCH, "project_latency_s": p, "baseline_latency_s": b,
                "ratio_p50": p["p50"] / b["p50"], "ratio_p99": p["p99"] / b["p99"],
                "peak_rss_mib": {"feedback_service": peak_rss_mib(proc.popen.pid), "bench_process": peak_rss_mib()}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    result = asyncio.run(main(a.rate, a.duration, a.repeats))
    print(json.dumps(result, indent=2))
    print(write_results("e2e_latency", result))
