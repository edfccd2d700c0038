"""Benchmark: rebuilding every projection and rollup from the audit trail while the service runs (the rebuilds of
`newnormal feedback recount`, `newnormal training recount` and `newnormal roadmap rebuild`).

Per service: N events go through the running service (its consumer, on Tansu and SecantusDB on WiredTiger files),
until its projections account for them; the projections are read; then the rebuild runs (the same call the command
makes: writes pause, the books or milestones are recomputed from the stored events into a new collection that
replaces the live one) and the projections are read again: they must be equal, field for field, but for the
bookkeeping of writes (revisions, journal tokens). Raw baseline on the same servers in the same run: read every
document of the service's audit collection (`events`) and `insert_many(ordered=False)` a copy of each into a fresh
collection, in chunks of 10,000: the read and the write a rebuild cannot do with less. Ratio = raw seconds / rebuild
seconds (1.0: as fast as copying the audit trail once).

Two rebuilds are timed: the first finds the books right (it reads and compares, writes nothing); then every document
of the books is made wrong (a field no recount gives) and the second must write them all (`all_differ_*`): the
documents built apart and swapped in. Both must come back equal to the live state.

    python -m bench.rebuild [--size 50000] [--services feedback,training,roadmap]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench import feedback_pipeline, roadmap_consumer, training_import
from bench.harness import Timer, platform_counters, running, write_results
from bench.platform_stack import Stack
from services.common import processes as px
from services.common.ledger import BOOKKEEPING as LEDGER_BOOKKEEPING
from services.common.ledger import TOKEN
from services.common.settings import ServiceSettings
from services.contracts import topics
from services.feedback.main import create_app as feedback_app
from services.feedback.settings import FeedbackSettings
from services.roadmap.main import create_app as roadmap_app
from services.roadmap.settings import RoadmapSettings
from services.training.importer import run_import
from services.training.main import create_app as training_app
from services.training.settings import TrainingSettings

CHUNK = 10_000
DRAIN_TIMEOUT_SECONDS = 3600.0
# Bookkeeping of writes, not state: which write last changed a document, the revision of its compare-and-set, what
# each write passed on to the later books (`effects`), when a milestone's facts last changed (`facts_at`).
# The ledger's own fields, the record tokens, and the times a write stamps (live and rebuilt differ by when written).
BOOKKEEPING = LEDGER_BOOKKEEPING | {TOKEN, "rollup_token", "updated_at", "facts_at"}


def _state(doc: dict[str, Any]) -> dict[str, Any]:
    state = {k: v for k, v in doc.items() if k not in BOOKKEEPING}
    if "facts" in state:  # a milestone's facts are a set (kept in arrival order live, in time order rebuilt)
        state["facts"] = sorted(state["facts"], key=lambda f: f["key"])
    return state


async def snapshot(db, collections: list[str]) -> dict[str, dict[Any, dict[str, Any]]]:
    return {name: {json.dumps(d["_id"], sort_keys=True, default=str): _state(d) async for d in db[name].find({})}
            for name in collections}


def differences(before: dict, after: dict) -> dict[str, Any]:
    """Per collection: documents that differ, and the fields they differ in."""
    out: dict[str, Any] = {}
    for name, docs in before.items():
        rebuilt = after[name]
        differing = [k for k in set(docs) | set(rebuilt) if docs.get(k) != rebuilt.get(k)]
        fields = sorted({f for k in differing for f in set(docs.get(k) or {}) | set(rebuilt.get(k) or {})
                         if (docs.get(k) or {}).get(f) != (rebuilt.get(k) or {}).get(f)})
        out[name] = {"documents": len(differing), "fields": fields}
        if differing:  # the first one, field by field, to look into
            first = sorted(differing)[0]
            out[name]["first"] = json.loads(json.dumps(
                {"_id": first, **{f: {"live": (docs.get(first) or {}).get(f), "rebuilt": (rebuilt.get(first) or {}).get(f)}
                                  for f in fields}}, default=str))
    return out


async def raw_copy(db, source: str = "events") -> tuple[float, int]:
    """Seconds to read every document of `source` and insert a copy of each into a fresh collection."""
    target = db[f"raw_copy_{uuid.uuid4().hex[:6]}"]
    copied = 0
    with Timer() as t:
        chunk: list[dict[str, Any]] = []
        async for doc in db[source].find({}).batch_size(CHUNK):
            chunk.append(doc)
            if len(chunk) == CHUNK:
                await target.insert_many(chunk, ordered=False)
                copied, chunk = copied + len(chunk), []
        if chunk:
            await target.insert_many(chunk, ordered=False)
            copied += len(chunk)
    await target.drop()
    return t.seconds, copied


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT_SECONDS
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not reached within {DRAIN_TIMEOUT_SECONDS} s")
        await asyncio.sleep(0.5)


async def consumed(client, topic: str) -> float:
    """Records the service's consumer has finished with (stored, duplicate or dead-lettered), from its metrics."""
    figures = platform_counters((await client.get("/metrics")).text, topic)
    return sum(v for (name, _), v in figures.items() if name == "newnormal_consumer_records_total")


async def measure(name: str, settings: ServiceSettings, app, topic: str, journal: str,
                  feed: Callable[[], Awaitable[int]], collections: list[str],
                  rebuild: Callable[[Any], Awaitable[Any]]) -> dict[str, Any]:
    db = AsyncMongoClient(settings.mongo_uri.get_secret_value(), tz_aware=True)[settings.mongo_db]
    try:
        async with running(app) as client:
            with Timer() as fed:
                records = await feed()

                async def drained() -> bool:
                    return await consumed(client, topic) >= records and await db[journal].count_documents({}) == 0

                await until(drained, f"{name}: every record consumed")
            events = await db.events.count_documents({})
            live = await snapshot(db, collections)
            read: list[int] = []
            with Timer() as rebuilt:
                await rebuild(read.append)
            after = await snapshot(db, collections)
            # Every document wrong (a field no recount gives): the rebuild must write them all.
            for name in collections:
                await db[name].update_many({}, {"$set": {"drifted": True}})
            with Timer() as rewritten:
                await rebuild(lambda n: None)
            after_drift = await snapshot(db, collections)
        raw_seconds, copied = await raw_copy(db)
    finally:
        await db.client.close()
    return {"events_in_audit_trail": events, "consume_seconds": round(fed.seconds, 2),
            "records_consumed": records, "rebuild_seconds": round(rebuilt.seconds, 2), "rebuild_records_read": sum(read),
            "rebuild_events_per_second": round(events / rebuilt.seconds, 1),
            "raw_read_and_insert_seconds": round(raw_seconds, 2), "raw_documents_copied": copied,
            "raw_events_per_second": round(copied / raw_seconds, 1),
            "ratio_rebuild_to_raw": round(raw_seconds / rebuilt.seconds, 3),
            "all_differ_rebuild_seconds": round(rewritten.seconds, 2),
            "all_differ_ratio_to_raw": round(raw_seconds / rewritten.seconds, 3),
            "documents": {k: len(v) for k, v in live.items()},
            "rebuilt_differs_from_live": differences(live, after),
            "all_differ_rebuilt_differs_from_live": differences(live, after_drift)}


async def feedback(stack: Stack, size: int) -> dict[str, Any]:
    settings = FeedbackSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db="rebuild_feedback",
                                kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", http_port=px.free_port())
    app = feedback_app(settings, clock=lambda: feedback_pipeline.NOW)
    records = feedback_pipeline.generate(size)

    async def feed() -> int:
        await feedback_pipeline.publish(stack.bootstrap, topics.FEEDBACK_EVENTS, records)
        return size

    repo = app.state.feedback_repo
    return await measure("feedback", settings, app, topics.FEEDBACK_EVENTS, repo.ledger.journal, feed,
                         [b.collection for b in repo.ledger.books],
                         lambda progress: repo.recount(timedelta(seconds=settings.feedback_sweep_grace_seconds), progress))


async def training(stack: Stack, size: int, tmp: Path) -> dict[str, Any]:
    settings = TrainingSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db="rebuild_training",
                                kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", http_port=px.free_port(),
                                learner_hmac_secret="bench-learner-hmac-secret-not-for-production")
    app = training_app(settings, clock=lambda: training_import.NOW)
    csv_path = tmp / "completions.csv"
    training_import.generate(csv_path, size)

    async def feed() -> int:
        return (await run_import(csv_path, settings, progress=False)).as_dict()["accepted"]

    repo = app.state.training_repo
    return await measure("training", settings, app, topics.TRAINING_EVENTS, repo.ledger.journal, feed,
                         [b.collection for b in repo.ledger.books],
                         lambda progress: repo.recount(write=True, progress=progress))


async def roadmap(stack: Stack, size: int) -> dict[str, Any]:
    settings = RoadmapSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db="rebuild_roadmap",
                               kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", http_port=px.free_port(),
                               watcher_enabled=False)
    app = roadmap_app(settings)
    events = roadmap_consumer.make_events(size, max(1, size // 10))

    async def feed() -> int:
        await roadmap_consumer.produce(stack.bootstrap, events)
        return len(events)

    service = app.state.roadmap
    return await measure("roadmap", settings, app, topics.ROADMAP_EVENTS, service.ledger.journal, feed, ["milestones"],
                         lambda progress: service.rebuild(progress=progress, cascade=False))


async def main(size: int, services: list[str]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    out: dict[str, Any] = {"size": size}
    with Stack(storage=tmp / "db") as stack:
        for name in services:
            if name == "feedback":
                out[name] = await feedback(stack, size)
            elif name == "training":
                out[name] = await training(stack, size, tmp)
            else:
                out[name] = await roadmap(stack, size)
            print(name, json.dumps(out[name], ensure_ascii=False), flush=True)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--services", default="feedback,training,roadmap")
    args = parser.parse_args()
    results = asyncio.run(main(args.size, args.services.split(",")))
    print(write_results("rebuild", {
        "note": "one run on a shared 2-core host: compare the ratios, not the absolute rates", **results}))
