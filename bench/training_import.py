"""Benchmark: import N training completions CSV -> Kafka -> MongoDB end to end, then readiness query time.

Project path: `run_import` (the `newnormal training import` code: parse, validate, pipelined publish of
structured CloudEvents) and the training service's consumer (audit trail, pseudonymisation, completions,
distinct-learner docs, crash-safe rollups), until the rollups account for every accepted row.
Baseline on the same Tansu and SecantusDB in the same run: csv.reader -> aiokafka producer (pipelined)
-> aiokafka getmany -> PyMongo insert_many(ordered=False) into a collection with a unique (source, id)
index; the readiness baseline is the raw aggregation (distinct learners per agency x competency) over it.

    python -m bench.training_import [--size 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from bench.harness import CpuSplit, peak_rss_mib, running, timed_aggregate, timed_get, until_stored, write_results
from bench.platform_stack import Stack, raw_consume
from services.common import processes as px
from services.common.auth import Role, create_key
from services.contracts import topics
from services.contracts.agencies import PROGRAMME_OFFICE, get_registry
from services.contracts.common_types import Competency
from services.training.importer import run_import
from services.training.main import create_app
from services.training.settings import TrainingSettings

NOW = datetime(2026, 6, 1, 3, tzinfo=UTC)
RAW_TOPIC = "bench.training.raw"


def generate(path: Path, size: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    agencies = sorted(a.code for a in get_registry().all())[:40]
    competencies = [c.value for c in Competency]
    start = date(2025, 10, 1)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agency", "learner_ref", "course_id", "course_title", "competency", "hours", "completed_on", "passed", "score"])
        for i in range(size):
            day = start + timedelta(days=rng.randrange(365))
            on = day.isoformat() if i % 2 else f"{day.day}/{day.month}/{day.year + 543}"  # half Buddhist era
            w.writerow([rng.choice(agencies), f"emp-{rng.randrange(1500)}", f"C-{i}", f"หลักสูตร {i % 97}",
                        rng.choice(competencies), rng.choice([1, 2, 3, 6]), on, "true" if rng.random() < 0.85 else "false",
                        rng.randrange(50, 100)])


async def project(settings: TrainingSettings, csv_path: Path, size: int, db_pid: int | None = None) -> dict:
    app = create_app(settings, clock=lambda: NOW)
    db = AsyncMongoClient(settings.mongo_uri.get_secret_value())[settings.mongo_db]
    async with running(app) as client:
        # Reads need a key; the programme office's reads every agency, unsuppressed (as measured before).
        client.headers["X-API-Key"] = await create_key(db, PROGRAMME_OFFICE, Role.programme_office, "bench")
        with CpuSplit(db_pid) as cpu:  # which bounds the run: this process (import, service) or the database
            t0 = time.perf_counter()
            result = (await run_import(csv_path, settings, progress=False)).as_dict()
            published = time.perf_counter() - t0
            expected = result["accepted"]

            async def counted() -> bool:
                agg = await (await db.training_readiness.aggregate([{"$group": {"_id": None, "n": {"$sum": "$completions"}}}])).to_list()
                return bool(agg) and agg[0]["n"] >= expected

            await until_stored(app, topics.TRAINING_EVENTS, expected, counted)
            total = time.perf_counter() - t0
        readiness = await timed_get(client, "/v1/readiness?fiscal_year=2569", 30)
        readiness_one = await timed_get(client, "/v1/readiness?fiscal_year=2569&agency=dga", 30)
        scrape = await timed_get(client, "/metrics", 30)
        body = (await client.get("/v1/readiness?fiscal_year=2569")).json()
    await db.client.close()
    return {"rows": size, "load_average_1m_after": round(os.getloadavg()[0], 2), "accepted": expected, "rejected": result["rejected"], "publish_seconds": round(published, 2),
            "end_to_end_seconds": round(total, 2), "events_per_second": round(expected / total, 1), "cpu": cpu.report(),
            "readiness_query_ms": readiness, "readiness_query_one_agency_ms": readiness_one, "metrics_scrape_ms": scrape,
            "ready_learners_total": body["total"]["ready_learners"], "rollup_rows": len(body["rows"])}


async def baseline(settings: TrainingSettings, csv_path: Path, size: int, run: str = "a",
                   db_pid: int | None = None) -> dict:
    bootstrap = settings.kafka_bootstrap_servers
    topic = f"{RAW_TOPIC}.{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, settings.kafka_topic_partitions, 1)])
    await admin.close()
    client = AsyncMongoClient(settings.mongo_uri.get_secret_value())
    coll = client[f"{settings.mongo_db}_raw_{run}"].completions
    with CpuSplit(db_pid) as cpu:
        t0 = time.perf_counter()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
        await producer.start()
        with csv_path.open(encoding="utf-8") as f:
            futures = []
            for i, row in enumerate(csv.DictReader(f)):
                doc = {"source": f"/agencies/{row['agency']}/import", "id": f"row-{i}", **row}
                futures.append(await producer.send(topic, json.dumps(doc).encode(), key=row["agency"].encode()))
                if len(futures) >= 1000:
                    await asyncio.gather(*futures)
                    futures.clear()
            await asyncio.gather(*futures)
        await producer.stop()
        published = time.perf_counter() - t0
        total = published + await raw_consume(bootstrap, settings.mongo_uri.get_secret_value(), f"{settings.mongo_db}_raw_{run}",
                                              topic, size, f"raw-{uuid.uuid4().hex[:6]}", timeout=3600,
                                              collection="completions", max_records=settings.consumer_max_records)
    pipeline = [{"$match": {"passed": "true"}},
                {"$group": {"_id": {"a": "$agency", "c": "$competency", "l": "$learner_ref"}}},
                {"$group": {"_id": {"a": "$_id.a", "c": "$_id.c"}, "ready": {"$sum": 1}}}]
    aggregation_ms, rows = await timed_aggregate(coll, pipeline)
    await client.close()
    return {"rows": size, "load_average_1m_after": round(os.getloadavg()[0], 2), "publish_seconds": round(published, 2), "end_to_end_seconds": round(total, 2),
            "events_per_second": round(size / total, 1), "cpu": cpu.report(), "readiness_aggregation_ms": aggregation_ms,
            "aggregation_rows": len(rows)}


async def main(size: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    with Stack(storage=tmp / "db") as stack:
        settings = TrainingSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db="bench_training",
                                    kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", metrics_cache_seconds=0,
                                    learner_hmac_secret="bench-learner-hmac-secret", http_port=px.free_port())
        csv_path = tmp / "completions.csv"
        generate(csv_path, size)
        # Baseline before and after the project run: the machine is shared, so the ratio uses their mean.
        db_pid = stack.mongo.popen.pid if stack.mongo.popen else None
        raw_before = await baseline(settings, csv_path, size, "before", db_pid)
        print("baseline", json.dumps(raw_before, ensure_ascii=False))
        ours = await project(settings, csv_path, size, db_pid)
        print("project", json.dumps(ours, ensure_ascii=False))
        raw_after = await baseline(settings, csv_path, size, "after", db_pid)
        print("baseline", json.dumps(raw_after, ensure_ascii=False))
        raw_eps = statistics.mean([raw_before["events_per_second"], raw_after["events_per_second"]])
        raw_query = statistics.mean([raw_before["readiness_aggregation_ms"]["median"], raw_after["readiness_aggregation_ms"]["median"]])
        results = {
            "size": size, "project": ours, "baseline_before": raw_before, "baseline_after": raw_after,
            "ratio_throughput_project_over_baseline": round(ours["events_per_second"] / raw_eps, 3),
            "ratio_readiness_query_project_over_baseline": round(ours["readiness_query_ms"]["median"] / raw_query, 5),
            "peak_rss_mib": {"bench_process": round(peak_rss_mib(), 1), "secantusdb": round(peak_rss_mib(stack.mongo.popen.pid), 1)},
            "notes": "project path stores the audit trail, completions, learner docs and rollups (4 writes per event) "
                     "against 1 insert in the baseline; readiness and /metrics read only the rollups.",
        }
        path = write_results("training_import", results)
        print(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().size))
