"""Scaling curve: throughput of 1, 2 and 4 consumer replicas of the feedback service on an 8-partition topic.

N events are produced to `feedback.events` (8 partitions) first; then k service processes (one
consumer group) drain it into a fresh database. Throughput = N / (time from the first stored event
to the last). Baseline: k raw consumer processes (getmany + insert_many) on the same topic.
Usage: python -m bench.scaling [--size 12000] [--replicas 1 2 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
import uuid

from pymongo import AsyncMongoClient

from bench.harness import peak_rss_mib, write_results
from bench.platform_stack import LOGS, SHARED_NOTE, Stack, count, feedback_events, produce, raw_consume
from services.common import processes as px
from services.contracts.topics import FEEDBACK_EVENTS

PARTITIONS = 8


async def drain_time(uri: str, db: str, expected: int, timeout: float = 600) -> float:
    """Seconds from the first stored event to `expected` stored (excludes start-up and group join)."""
    client = AsyncMongoClient(uri)
    coll = client[db].events
    try:
        deadline = time.perf_counter() + timeout
        while await coll.count_documents({}) == 0:
            if time.perf_counter() > deadline:
                raise TimeoutError("nothing stored")
            await asyncio.sleep(0.02)
        first = time.perf_counter()
        while await coll.count_documents({}) < expected:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{expected} not stored")
            await asyncio.sleep(0.05)
        return time.perf_counter() - first
    finally:
        await client.close()


def _raw_worker(bootstrap: str, uri: str, db: str, topic: str, group: str, stop_at: int) -> None:
    async def run() -> None:
        task = asyncio.ensure_future(raw_consume(bootstrap, uri, db, topic, 10**9, group, timeout=600))
        while await count(uri, db) < stop_at:
            await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(run())


async def main(size: int, replicas: list[int]) -> dict:
    curve = []
    with Stack() as stack:
        await stack.create_topic(FEEDBACK_EVENTS, PARTITIONS)
        await produce(stack.bootstrap, FEEDBACK_EVENTS, feedback_events(size, seed=77))
        for k in replicas:
            db = f"bench_scale_{k}"
            group = f"scale-{uuid.uuid4().hex[:6]}"
            procs = []
            measuring = asyncio.ensure_future(drain_time(stack.uri, db, size))
            # All replicas start together, so they share the partitions from the first rebalance on.
            for _ in range(k):
                proc = px.service("feedback", px.free_port(), stack.env(db, NEWNORMAL_KAFKA_CONSUMER_GROUP_PREFIX=group,
                                                                        NEWNORMAL_KAFKA_TOPIC_PARTITIONS=str(PARTITIONS)),
                                  LOGS).start()
                stack.procs.append(proc)
                procs.append(proc)
            seconds = await measuring
            rss = [peak_rss_mib(p.popen.pid) for p in procs]
            for p in procs:
                p.stop()
            # Baseline: k raw consumer processes, same topic, fresh group and database.
            raw_db = f"bench_scale_raw_{k}"
            raw_measuring = asyncio.ensure_future(drain_time(stack.uri, raw_db, size))
            workers = [multiprocessing.Process(target=_raw_worker, args=(stack.bootstrap, stack.uri, raw_db,
                                                                         FEEDBACK_EVENTS, f"raw-{group}", size))
                       for _ in range(k)]
            for w in workers:
                w.start()
            raw_seconds = await raw_measuring
            for w in workers:
                w.join(30)
                if w.is_alive():
                    w.kill()
            point = {"replicas": k, "project_events_per_s": size / seconds, "baseline_events_per_s": size / raw_seconds,
                     "ratio_project_over_baseline": (size / seconds) / (size / raw_seconds),
                     "peak_rss_mib_per_replica": rss}
            print(json.dumps(point), flush=True)
            curve.append(point)
    base = curve[0]["project_events_per_s"]
    for point in curve:
        point["speedup_vs_one_replica"] = point["project_events_per_s"] / base
    return {"note": SHARED_NOTE + "; with 2 shared cores, more replicas cannot add CPU: the curve shows "
                                  "that partitions spread and nothing is lost, not the speed-up on a bigger machine",
            "size": size, "partitions": PARTITIONS, "curve": curve}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=12000)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    a = ap.parse_args()
    result = asyncio.run(main(a.size, a.replicas))
    print(json.dumps(result, indent=2))
    print(write_results("scaling", result))
