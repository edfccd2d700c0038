"""Benchmark: N citizen responses end to end through the feedback service, experience-query time, and
`/metrics` time with 1,000,000 stored responses.

Project path: structured CloudEvents on `feedback.events` (as agency systems publish them) -> the feedback
consumer (parse, validate, redact, one insert of the response as its audit record, journal-guarded
rollups), until the rollups
account for every response. Then `/v1/experience` (30-day and 90-day ranges, one agency) and `/metrics`.
For the 1,000,000 figure, responses beyond N are bulk-inserted straight into `events` (where responses are stored) and the
rollups rebuilt with `recount` (its time is reported too): a scrape reads the same 36 rollup documents
whatever the history, which is the point being measured.
Baseline on the same Tansu and SecantusDB in the same run: the same records on a raw topic -> aiokafka
getmany -> PyMongo insert_many(ordered=False) into a collection with a unique (source, id) index; its
query baseline is the equivalent $group over the raw documents. A second, stricter baseline consumes the
same records keyed by `_id` {source, id} (no secondary index), as the project keys its documents.

    python -m bench.feedback_pipeline [--size 500000] [--metrics-size 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from bench.harness import CpuSplit, Timer, peak_rss_mib, running, timed_aggregate, timed_get, until_stored, write_results
from bench.platform_stack import Stack, raw_consume
from services.common import processes as px
from services.common.auth import Role, create_key
from services.contracts import topics
from services.contracts.agencies import PROGRAMME_OFFICE, get_registry
from services.contracts.common_types import AgeGroup, Channel, TechDifficulty
from services.contracts.envelope import document_id
from services.feedback.main import create_app
from services.feedback.settings import FeedbackSettings

START = datetime(2026, 1, 1, 1, tzinfo=UTC)
DAYS = 90
NOW = START + timedelta(days=DAYS)
RAW_TOPIC = "bench.feedback.raw"
COMMENTS = ["บริการดีมาก รวดเร็ว", "รอคิวนาน 45 นาที", "โทร 081-234-5678 ไม่มีคนรับ", "แอปใช้ยากสำหรับผู้สูงอายุ",
            "ส่งเอกสารที่ somchai@example.com แล้ว", "ค่าธรรมเนียม 1,500 บาท", None, None, None, None]


def generate(size: int, seed: int = 11) -> list[tuple[bytes, bytes]]:
    """(key, value) records in time order over DAYS days, as live intake would see them."""
    rng = random.Random(seed)
    agencies = sorted(a.code for a in get_registry().all())[:20]
    channels, ages, techs = [c.value for c in Channel], [a.value for a in AgeGroup], [t.value for t in TechDifficulty]
    step = DAYS * 86400 / size
    out = []
    for i in range(size):
        agency = rng.choice(agencies)
        at = (START + timedelta(seconds=i * step)).isoformat()
        data = {"agency": agency, "service_name": f"บริการ {i % 17}", "channel": rng.choice(channels),
                "age_group": rng.choice(ages), "satisfaction": rng.choice([1, 2, 3, 3, 4, 4, 4, 5, 5, 5]),
                "tech_difficulty": rng.choice(techs), "aware_of_digital_channels": rng.random() < 0.6, "submitted_at": at}
        comment = COMMENTS[i % len(COMMENTS)]
        if comment:
            data["comment"] = comment
        event = {"specversion": "1.0", "id": f"r-{i}", "source": f"/agencies/{agency}/kiosk",
                 "type": "feedback.response.submitted", "agency": agency, "time": at,
                 "datacontenttype": "application/json", "data": data}
        out.append((agency.encode(), json.dumps(event, ensure_ascii=False).encode()))
    return out


async def publish(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key,
                                               headers=[("content-type", b"application/cloudevents+json")]))
            if len(futures) >= 2000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def rolled_up(db) -> int:
    agg = await (await db.feedback_rollup_totals.aggregate([{"$group": {"_id": None, "n": {"$sum": "$responses"}}}])).to_list()
    return agg[0]["n"] if agg else 0


async def until_rolled_up(app, db, size: int) -> None:
    async def done() -> bool:
        return await rolled_up(db) >= size

    await until_stored(app, topics.FEEDBACK_EVENTS, size, done)


async def project(settings: FeedbackSettings, records, size: int, metrics_size: int, db_pid: int | None = None) -> dict:
    app = create_app(settings, clock=lambda: NOW)
    db = AsyncMongoClient(settings.mongo_uri.get_secret_value(), tz_aware=True)[settings.mongo_db]
    async with running(app) as client:
        # Reads need a key; the programme office's reads every agency, unsuppressed (as measured before).
        client.headers["X-API-Key"] = await create_key(db, PROGRAMME_OFFICE, Role.programme_office, "bench")
        with CpuSplit(db_pid) as cpu:  # which bounds the run: this process (publisher, service) or the database
            t0 = time.perf_counter()
            await publish(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, records)
            published = time.perf_counter() - t0
            await until_rolled_up(app, db, size)
            total = time.perf_counter() - t0
        q30 = await timed_get(client, "/v1/experience", 10)
        q90 = await timed_get(client, f"/v1/experience?from={START.date()}&to={(NOW - timedelta(days=1)).date()}", 5)
        q_agency = await timed_get(client, f"/v1/experience?from={START.date()}&to={NOW.date()}&agency=dga", 10)
        gaps = await timed_get(client, f"/v1/experience/gaps?from={START.date()}&to={NOW.date()}", 5)
        scrape_n = await timed_get(client, "/metrics", 30)
        body = (await client.get(f"/v1/experience?from={START.date()}&to={NOW.date()}")).json()
        assert body["overall"]["responses"] == size, body["overall"]
        redacted = await db.events.count_documents({"redactions.PHONE": 1})
        # Grow the history to metrics_size responses, rebuild the rollups, and scrape again.
        extra = metrics_size - size
        template = await db.events.find_one({}, {"_id": 0})
        with Timer() as fill:
            for start in range(0, extra, 10_000):
                docs = [{**template, "_id": document_id("/agencies/dga/history", f"h-{start + j}"),
                         "source": "/agencies/dga/history", "id": f"h-{start + j}", "rollup_token": "history"}
                        for j in range(min(10_000, extra - start))]
                await db.events.insert_many(docs, ordered=False)
        with Timer() as recount:
            counted = await app.state.feedback_repo.recount()
        scrape_1m = await timed_get(client, "/metrics", 30)
        metrics_text = (await client.get("/metrics")).text
        assert f"{float(metrics_size)}" in metrics_text or counted["responses"] == metrics_size
    await db.client.close()
    return {"responses": size, "publish_seconds": round(published, 2), "end_to_end_seconds": round(total, 2),
            "events_per_second": round(size / total, 1), "cpu": cpu.report(), "experience_default_30_days_ms": q30,
            "experience_90_days_ms": q90, "experience_one_agency_ms": q_agency, "gaps_ms": gaps,
            f"metrics_scrape_ms_at_{size}": scrape_n, "responses_with_phone_redacted": redacted,
            "history_fill_seconds": round(fill.seconds, 1), "recount_seconds": round(recount.seconds, 1),
            "recount_responses": counted["responses"], "metrics_scrape_ms_at_1m": scrape_1m,
            "metrics_scrape_responses": metrics_size}


async def baseline(settings: FeedbackSettings, records, size: int, db_pid: int | None = None) -> dict:
    bootstrap = settings.kafka_bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(RAW_TOPIC, settings.kafka_topic_partitions, 1)])
    await admin.close()
    uri = settings.mongo_uri.get_secret_value()
    client = AsyncMongoClient(uri)
    coll = client[settings.mongo_db + "_raw"].responses
    t0 = time.perf_counter()
    await publish(bootstrap, RAW_TOPIC, records)
    published = time.perf_counter() - t0
    total = published + await raw_consume(bootstrap, uri, settings.mongo_db + "_raw", RAW_TOPIC, size,
                                          f"raw-{uuid.uuid4().hex[:6]}", timeout=3600, collection="responses",
                                          max_records=settings.consumer_max_records)
    # The same records again, keyed by _id as the project keys its documents: the stricter baseline.
    with CpuSplit(db_pid) as id_keyed_cpu:
        total_id = published + await raw_consume(bootstrap, uri, settings.mongo_db + "_raw_id", RAW_TOPIC, size,
                                                 f"raw-id-{uuid.uuid4().hex[:6]}", timeout=3600, collection="responses",
                                                 max_records=settings.consumer_max_records, id_key=True)
    pipeline = [{"$match": {"data.submitted_at": {"$gte": START.isoformat()}}},
                {"$group": {"_id": {"c": "$data.channel", "a": "$data.age_group"}, "n": {"$sum": 1},
                            "s": {"$sum": "$data.satisfaction"}}}]
    aggregation_ms, rows = await timed_aggregate(coll, pipeline)
    await client.close()
    return {"responses": size, "publish_seconds": round(published, 2), "end_to_end_seconds": round(total, 2),
            "events_per_second": round(size / total, 1), "id_keyed_end_to_end_seconds": round(total_id, 2),
            "id_keyed_events_per_second": round(size / total_id, 1), "id_keyed_cpu": id_keyed_cpu.report(),
            "experience_aggregation_ms": aggregation_ms,
            "aggregation_rows": len(rows)}


async def main(size: int, metrics_size: int, max_records: int) -> None:
    with Stack(storage=Path(tempfile.mkdtemp(prefix="bench-feedback-")) / "db") as stack:
        settings = FeedbackSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db="bench_feedback",
                                    kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", metrics_cache_seconds=0,
                                    consumer_max_records=max_records, http_port=px.free_port())
        records = generate(size)
        db_pid = stack.mongo.popen.pid if stack.mongo.popen else None
        raw = await baseline(settings, records, size, db_pid)
        print("baseline", json.dumps(raw, ensure_ascii=False), flush=True)
        ours = await project(settings, records, size, max(metrics_size, size), db_pid)
        print("project", json.dumps(ours, ensure_ascii=False), flush=True)
        results = {
            "size": size, "consumer_max_records": max_records, "project": ours, "baseline": raw,
            "ratio_throughput_project_over_baseline": round(ours["events_per_second"] / raw["events_per_second"], 3),
            "ratio_throughput_project_over_id_keyed_baseline": round(ours["events_per_second"] / raw["id_keyed_events_per_second"], 3),
            "ratio_experience_query_project_over_baseline": round(
                ours["experience_90_days_ms"]["median"] / raw["experience_aggregation_ms"]["median"], 4),
            "peak_rss_mib": {"bench_process": round(peak_rss_mib(), 1), "secantusdb": round(peak_rss_mib(stack.mongo.popen.pid), 1)},
            "notes": "project path per event: parse + validate + redact, one insert (the response is its event's audit "
                     "record, keyed by _id); per batch a journal insert/delete plus compare-and-set replaces of the "
                     "totals and daily rollup documents it touches; baseline: one insert under a unique (source, id) "
                     "index; id-keyed baseline: one insert keyed by _id. "
                     "Responses are in time order over 90 days, 20 agencies, random channel x age group.",
        }
        print(write_results("feedback_pipeline", results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=500_000)
    parser.add_argument("--metrics-size", type=int, default=1_000_000)
    parser.add_argument("--max-records", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.size, args.metrics_size, args.max_records))
