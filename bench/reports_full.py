"""Benchmark: the reports service at full size (issue 13 point 7): the overview in <= 300 ms server time and the
quarterly PDF in <= 10 s with 10,000 milestones, 200,000 training completions and 1,000,000 feedback responses.

Loading through the Kafka intakes runs at about 600 responses/s here (bench.reports_overview), so this benchmark
writes each service's store directly, in the shape a real run leaves it, with the services' own code:
- roadmap: 10,000 milestones from bench.roadmap_consumer.make_events (three in four rescheduled), each document
  derived by the roadmap's own rule (services.roadmap.domain.project, as RoadmapService._derive stores it) and
  inserted into `milestones`; the summary figures are computed by the service itself on its first read;
- training: 200,000 completions through `newnormal training import` (the service's intake and consumer, as in
  bench.training_import), so its rollups are the service's own;
- feedback: 1,000,000 responses from bench.feedback_pipeline.generate (1 Jan - 1 Apr 2026). The read API reads
  only the rollups, so the rollups those responses produce are stored (services.feedback.domain.rollup_deltas and
  with_delta, as the service's recount writes them); the raw response documents are NOT stored (the audit
  collection's size changes no read the reports service makes).
The three services then run as child processes on their own Tansu + SecantusDB (on disk); the reports service
runs in-process with its programme-office key and its clock on 31 Mar 2026 (overview) and 2 Apr 2026 (the
quarterly report of Q2), measured by bench.reports_overview.measure and bench.reports_quarterly.measure.
Baseline in the same run: the raw driver running the roadmap's overview aggregation (the one query whose cost
grows with the milestones) and reading the feedback quarter's daily rollups.

    nice -n 10 python -m bench.reports_full [--milestones 10000] [--completions 200000] [--responses 1000000]
    nice -n 10 python -m bench.reports_full --reuse /tmp/bench-reports-full-XXXX bench_full_XXXX   # measure again
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

from bench import feedback_pipeline, reports_overview, reports_quarterly, roadmap_consumer, training_import
from bench.harness import timed_aggregate, write_results
from bench.platform_stack import SHARED_NOTE, Stack
from services.common.auth import Role, create_key
from services.common.counters import counters, with_delta
from services.contracts.agencies import PROGRAMME_OFFICE
from services.contracts.thai_calendar import bangkok_day
from services.feedback import domain as feedback_domain
from services.feedback.adapters import APPLIED_KEEP
from services.roadmap import domain as roadmap_domain
from services.training.importer import run_import
from services.training.settings import TrainingSettings

CHUNK = 100_000


def milestone_documents(n: int, now: datetime) -> list[dict]:
    """Milestone documents as the roadmap stores them after applying make_events' events at `now`."""
    by_milestone: dict[str, list[dict]] = defaultdict(list)
    for e in roadmap_consumer.make_events(n * 4, n):
        by_milestone[e["data"]["milestone_id"]].append(roadmap_domain.make_fact(
            type_=e["type"], source=e["source"], event_id=e["id"], agency=e["agency"],
            time=datetime.fromisoformat(e["time"]), data=e["data"]))
    return [{"_id": mid, "version": 1, "facts": facts, **roadmap_domain.project(mid, facts, now, {}),
             "status_since": now, "updated_at": now, "created_at": now} for mid, facts in by_milestone.items()]


def feedback_rollups(responses: int) -> tuple[list[dict], list[dict], int]:
    """(totals, daily) rollup documents that `responses` generated responses produce, computed in chunks."""
    totals: dict[str, feedback_domain.RollupDelta] = {}
    daily: dict[str, feedback_domain.RollupDelta] = {}
    for start in range(0, responses, CHUNK):
        docs = []
        for _, value in feedback_pipeline.generate(min(CHUNK, responses - start), seed=start):
            event = json.loads(value)
            data = event["data"]
            docs.append({"source": event["source"], "id": f"c{start}-{event['id']}", "agency": event["agency"],
                         "bangkok_day": bangkok_day(datetime.fromisoformat(data["submitted_at"])).isoformat(),
                         "data": {k: data.get(k) for k in ("channel", "age_group", "satisfaction", "tech_difficulty",
                                                           "aware_of_digital_channels")}})
        t, d = feedback_domain.rollup_deltas(docs)
        for target, part in ((totals, t), (daily, d)):
            for rid, delta in part.items():
                have = target.setdefault(rid, feedback_domain.RollupDelta(delta.keys, {}))
                for k, v in delta.inc.items():
                    have.inc[k] = have.inc.get(k, 0) + v
    as_docs = [[with_delta(None, rid, d, None, APPLIED_KEEP) for rid, d in part.items()]
               for part in (totals, daily)]
    return as_docs[0], as_docs[1], sum(d.inc["responses"] for d in totals.values())


async def load_direct(stack: Stack, db: str, args) -> dict:
    loaded: dict = {}
    client = AsyncMongoClient(stack.uri, tz_aware=True)
    try:
        t0 = time.perf_counter()
        docs = milestone_documents(args.milestones, datetime.now(UTC))  # the roadmap child runs on the real clock
        for start in range(0, len(docs), 2000):
            await client[db].milestones.insert_many(docs[start:start + 2000], ordered=False)
        loaded["milestones"] = len(docs)
        loaded["milestones_moved"] = sum(1 for d in docs if d["baseline_due_date"] != d["due_date"])
        loaded["milestone_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        totals, daily, responses = feedback_rollups(args.responses)
        await client[db].feedback_rollup_totals.insert_many(totals)
        for start in range(0, len(daily), 5000):
            await client[db].feedback_rollup_daily.insert_many(daily[start:start + 5000])
        await client[db].feedback_rollup_state.insert_one({"_id": "months", "since": datetime.now(UTC)})  # as recount
        loaded.update(responses=responses, feedback_rollup_documents=len(totals) + len(daily),
                      feedback_seconds=round(time.perf_counter() - t0, 1))
    finally:
        await client.close()
    return loaded


async def load_training(stack: Stack, db: str, url: str, key: str, completions: int) -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "completions.csv"
        training_import.generate(csv_path, completions)
        settings = TrainingSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db=db,
                                    learner_hmac_secret="bench-learner-hmac-secret-not-for-production")
        accepted = (await run_import(csv_path, settings, progress=False)).as_dict()["accepted"]

    async with httpx.AsyncClient(timeout=120, headers={"X-API-Key": key}) as client:
        async def stored():
            body = (await client.get(f"{url}/v1/readiness", params={"fiscal_year": 2569})).json()
            n = sum(r["completions"] for r in body["rows"])
            return n >= accepted, n
        await reports_overview.wait_for("completions", stored, 3600)
    return {"completions_accepted": accepted, "training_seconds": round(time.perf_counter() - t0, 1)}


async def warm_upstreams(urls: dict[str, str], key: str) -> dict:
    """The roadmap computes its summary figures on the first read after a start (then keeps them current):
    read them once, as any running system has, so the cold reports view measures the reports path."""
    async with httpx.AsyncClient(timeout=600, headers={"X-API-Key": key}) as client:
        t0 = time.perf_counter()
        r = await client.get(f"{urls['roadmap']}/v1/summary")
        r.raise_for_status()
        return {"roadmap_first_summary_seconds": round(time.perf_counter() - t0, 2)}


async def baseline(stack: Stack, db: str) -> dict:
    """The raw driver, same server, same moment: the roadmap overview's aggregation (all, one agency) and the
    feedback quarter's daily rollups."""
    client = AsyncMongoClient(stack.uri, tz_aware=True)
    try:
        from services.roadmap.adapters import MilestoneRepository

        repo = MilestoneRepository(client[db])
        out = {}
        for label, owner in (("roadmap_overview_all", None), ("roadmap_overview_dga", "dga")):
            t0 = time.perf_counter()
            for _ in range(3):
                await repo.overview_tallies(owner, [date(2026, 3, 31), date(2025, 12, 31)])
            out[f"{label}_ms"] = round((time.perf_counter() - t0) / 3 * 1000, 1)
        stats, _ = await timed_aggregate(client[db].feedback_rollup_daily, [
            {"$match": {"day": {"$gte": "2026-01-01", "$lte": "2026-03-31"}, "agency": "*"}}], 3)
        out["feedback_quarter_daily_rollups_ms"] = round(stats["median"], 1)
        return out
    finally:
        await client.close()


async def months_from_days(uri: str, db: str) -> dict:
    """Data loaded before the month rollups existed: build them from the daily ones (the bench stores rollups
    only, so `newnormal feedback recount` has no responses to rebuild them from) and mark them kept."""
    client = AsyncMongoClient(uri, tz_aware=True)
    try:
        daily = client[db].feedback_rollup_daily
        if await client[db].feedback_rollup_state.find_one({"_id": "months"}):
            return {}
        months: dict[str, dict] = {}
        async for doc in daily.find({"day": {"$exists": True}}, {"day": 1, "agency": 1, "cells": 1}):
            month, agency = doc["day"][:7], doc["agency"]
            rid = feedback_domain.monthly_rollup_id(month, agency)
            delta = months.setdefault(rid, feedback_domain.RollupDelta({"month": month, "agency": agency}, {}))
            for key, value in counters({"cells": doc.get("cells") or {}}).items():
                delta.inc[key] = delta.inc.get(key, 0) + value
        docs = [with_delta(None, rid, d, None, APPLIED_KEEP) for rid, d in months.items()]
        await daily.delete_many({"month": {"$exists": True}})
        if docs:
            await daily.insert_many(docs)
        await client[db].feedback_rollup_state.insert_one({"_id": "months", "since": datetime.now(UTC)})
        return {"month_rollups_built": len(docs)}
    finally:
        await client.close()


async def run(args) -> dict:
    reuse = args.reuse is not None
    storage = Path(args.reuse[0]) if reuse else Path(tempfile.mkdtemp(prefix="bench-reports-full-"))
    db = args.reuse[1] if reuse else f"bench_full_{uuid.uuid4().hex[:6]}"
    with Stack(storage) as stack:
        loaded = {"reused": str(storage)} if reuse else await load_direct(stack, db, args)
        if reuse:
            loaded.update(await months_from_days(stack.uri, db))
        urls = {name: stack.service(name, db)[1] for name in ("roadmap", "training", "feedback")}
        client = AsyncMongoClient(stack.uri)
        try:
            key = await create_key(client[db], PROGRAMME_OFFICE, Role.programme_office, "reports-bench")
        finally:
            await client.close()
        if not reuse:
            loaded.update(await load_training(stack, db, urls["training"], key, args.completions))
        loaded.update(await warm_upstreams(urls, key))
        raw = await baseline(stack, db)
        overview = await reports_overview.measure(stack, db, urls, key, args.repeats)
        quarterly = await reports_quarterly.measure(stack, db, urls, key, max(1, args.repeats // 2))
    return {"params": vars(args), "loaded": loaded, "raw_baseline": raw, "overview": overview,
            "quarterly": quarterly, "load_average_1m_after": round(os.getloadavg()[0], 2), "note": SHARED_NOTE}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--milestones", type=int, default=10_000)
    parser.add_argument("--completions", type=int, default=200_000)
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="reports_full", help="results file name in bench/results/")
    parser.add_argument("--reuse", nargs=2, metavar=("STORAGE", "DB"),
                        help="measure again on a store an earlier run loaded (its SecantusDB directory and database)")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(write_results(args.name, result))


if __name__ == "__main__":
    main()
