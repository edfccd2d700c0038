"""Roadmap consumer throughput against a raw-driver baseline, and the deadline watcher's scan time.

    python -m bench.roadmap_consumer [--size 100000] [--milestones 10000]

Starts its own Tansu and SecantusDB, produces `--size` milestone events (plans, progress reports
out of order, reschedules, completions, re-sent duplicates) for `--milestones` milestones, then:
  * project: the platform consumer pipeline (parse + validate, audit insert, RoadmapService.handle:
    facts, projection, compare-and-set, alerts) fed by aiokafka getmany batches of the roadmap's
    `consumer_max_records` (8,000), pipelined as the
    service runs it (a batch decoded while the one before it is written);
  * baseline: aiokafka getmany + PyMongo insert_many(ordered=False) of the raw events into a
    collection with a unique (source, id) index, on the same broker and database;
  * watcher: rescan (overdue sweep, alert check, figures), idle sweep and next-deadline lookup
    over the milestones the replay produced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import ASCENDING, AsyncMongoClient

from bench.harness import CpuSplit, Timer, peak_rss_mib, summary, write_results
from services.common import processes as px
from services.common.consumer import partition_fetch_bytes
from services.common.kafka import ensure_topics
from services.common.mongo import ensure_platform_indexes, insert_new
from services.contracts.common_types import Workstream
from services.roadmap.main import create_app
from services.roadmap.settings import RoadmapSettings

TOPIC = "roadmap.events"
BATCH = RoadmapSettings().consumer_max_records  # what the service fetches per batch, both sides
AGENCIES = ("dga", "opdc", "ocsc", "prd", "dopa", "nso")


def make_events(size: int, milestones: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    per = max(2, size // milestones)
    events: list[dict] = []
    workstreams = [w.value for w in Workstream]
    for m in range(milestones):
        mid = f"B-{m:06d}"
        agency = AGENCIES[m % len(AGENCIES)]
        src = f"/agencies/{agency}/bench"
        start = now - timedelta(days=rnd.randint(30, 200))
        due = (now + timedelta(days=rnd.randint(-20, 300))).date()

        def ev(type_: str, data: dict, eid: str, t: datetime, src=src, agency=agency, mid=mid) -> dict:
            return {"specversion": "1.0", "id": eid, "source": src, "type": f"roadmap.milestone.{type_}",
                    "agency": agency, "time": t.isoformat(), "datacontenttype": "application/json",
                    "data": {"milestone_id": mid, **data}}

        own = [ev("planned", {"title_th": f"หมุดหมาย {m}", "workstream": workstreams[m % 5], "owner_agency": agency,
                              "due_date": due.isoformat(), "weight": rnd.choice([1, 1, 2, 3]),
                              "depends_on": [f"B-{m - 1:06d}"] if m % 50 == 1 else []}, f"{mid}-plan", start)]
        pct = 0.0
        for k in range(per - 3):
            pct = min(99.0, pct + rnd.uniform(1, 15))
            as_of = start + timedelta(days=5 * (k + 1))
            own.append(ev("progressed", {"percent_complete": round(pct, 1), "as_of": as_of.isoformat()},
                          f"{mid}-p{k}", as_of))
        if m % 4 == 0:
            own.append(ev("completed", {"completed_on": (now - timedelta(days=1)).date().isoformat()}, f"{mid}-done", now))
        else:
            own.append(ev("rescheduled", {"new_due_date": (due + timedelta(days=60)).isoformat(), "reason": "bench"},
                          f"{mid}-r", now - timedelta(days=2)))
        own.append(dict(rnd.choice(own)))  # an agency system retrying: a duplicate
        events.extend(own[:per])
    rnd.shuffle(events)  # out of order, across and within milestones
    return events[:size]


async def produce(bootstrap: str, events: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(TOPIC, json.dumps(e).encode(), key=e["agency"].encode(),
                                       headers=[("content-type", b"application/cloudevents+json")]) for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, total: int, on_batch) -> tuple[float, list[float]]:
    """getmany over every partition from the beginning; `on_batch(records)` per batch; returns seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=partition_fetch_bytes(BATCH))  # as the service fetches
    await consumer.start()
    try:
        tps = [TopicPartition(TOPIC, p) for p in consumer.partitions_for_topic(TOPIC) or []]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(TOPIC, p) for p in consumer.partitions_for_topic(TOPIC)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        batch_seconds: list[float] = []
        started = time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            records = [r for recs in batch.values() for r in recs]
            if not records:
                continue
            t0 = time.perf_counter()
            await on_batch(records)
            batch_seconds.append(time.perf_counter() - t0)
            seen += len(records)
        return time.perf_counter() - started, batch_seconds
    finally:
        await consumer.stop()


async def run(size: int, milestones: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-roadmap-"))
    kport, mport = px.free_port(), px.free_port()
    tansu = px.tansu(kport, tmp).start()
    mongo = px.secantus(mport, str(tmp / "db"), tmp).start()
    bootstrap, uri = f"127.0.0.1:{kport}", f"mongodb://127.0.0.1:{mport}"
    try:
        px.wait_until(lambda: px.port_open(kport), 30, "tansu", proc=tansu)
        px.wait_until(lambda: px.mongo_ready(uri), 60, "secantusdb", proc=mongo)
        settings = RoadmapSettings(kafka_bootstrap_servers=bootstrap, mongo_uri=uri, mongo_db="bench_roadmap",
                                   kafka_topic_partitions=3, watcher_enabled=False)
        await ensure_topics(settings)
        events = make_events(size, milestones)
        with Timer() as produced:
            await produce(bootstrap, events)

        # Baseline: raw driver, same broker and database.
        client = AsyncMongoClient(uri, tz_aware=True)
        raw = client["bench_baseline"].events
        await raw.create_index([("source", ASCENDING), ("id", ASCENDING)], unique=True)

        async def baseline_batch(records):
            docs = []
            for r in records:
                doc = json.loads(r.value)
                docs.append(doc)
            await insert_new(raw, docs)

        server_pid = mongo.popen.pid if mongo.popen else None
        with CpuSplit(server_pid) as base_cpu:
            base_seconds, base_batches = await read_all(bootstrap, len(events), baseline_batch)

        # Project: the roadmap service's consumer pipeline.
        app = create_app(settings)
        runtime = app.state.runtime
        service = app.state.roadmap
        await ensure_platform_indexes(runtime.db)
        await service.repo.ensure_indexes()
        await runtime.publisher.start()
        consumer = runtime.consumers[0]
        try:
            writing: list[asyncio.Task] = []

            async def pipelined(records):  # as the service's consumer does: decode this batch while one is written
                decoded = await consumer.decode_interleaved(records)
                if writing:
                    await writing.pop()
                writing.append(asyncio.create_task(consumer.store_decoded(records, decoded)))

            with CpuSplit(server_pid) as proj_cpu:
                proj_seconds, proj_batches = await read_all(bootstrap, len(events), pipelined)
                with Timer() as last:  # until the last batch is stored too
                    for task in writing:
                        await task
                proj_seconds += last.seconds
            stored = await runtime.db.milestones.count_documents({})
            # Watcher figures over the milestones the replay produced.
            rescans, sweeps, lookups = [], [], []
            for _ in range(5):
                with Timer() as t:
                    await service.rescan()
                rescans.append(t.seconds)
                with Timer() as t:
                    await service.sweep()
                sweeps.append(t.seconds)
                with Timer() as t:
                    await service.repo.next_deadline(datetime.now(UTC))
                lookups.append(t.seconds)
            statuses = {d["_id"]: d["count"] async for d in await runtime.db.milestones.aggregate(
                [{"$group": {"_id": "$status", "count": {"$sum": 1}}}])}
            alerts = await runtime.db.alert_claims.count_documents({})
        finally:
            await runtime.publisher.stop()
            await runtime.mongo.close()
            await client.close()
        project_rate = len(events) / proj_seconds
        baseline_rate = len(events) / base_seconds
        return {
            "events": len(events), "milestones": stored, "produce_seconds": round(produced.seconds, 2),
            "project": {"seconds": round(proj_seconds, 2), "events_per_second": round(project_rate, 1),
                        "batch_seconds": summary(proj_batches), "cpu": proj_cpu.report()},
            "baseline": {"what": "aiokafka getmany + insert_many(ordered=False) with a unique (source, id) index",
                         "seconds": round(base_seconds, 2), "events_per_second": round(baseline_rate, 1),
                         "batch_seconds": summary(base_batches), "cpu": base_cpu.report()},
            "ratio_project_to_baseline": round(project_rate / baseline_rate, 3),
            "watcher": {"milestones": stored, "rescan_seconds": summary(rescans), "idle_sweep_seconds": summary(sweeps),
                        "next_deadline_seconds": summary(lookups)},
            "statuses": statuses, "alert_claims": alerts,
            "peak_rss_mib": {"bench": round(peak_rss_mib(), 1),
                             "secantusdb": round(peak_rss_mib(mongo.popen.pid), 1) if mongo.popen else None},
        }
    finally:
        mongo.stop()
        tansu.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--milestones", type=int, default=None)
    args = parser.parse_args()
    milestones = args.milestones or max(1, args.size // 10)
    results = asyncio.run(run(args.size, milestones))
    path = write_results("roadmap_consumer", {"params": {"size": args.size, "milestones": milestones}, **results})
    print(json.dumps(results, indent=2, ensure_ascii=False))
    print(path)


if __name__ == "__main__":
    main()
