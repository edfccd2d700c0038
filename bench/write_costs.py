"""What one document write costs the database we test on: insert against replace and update, by document size and by
the number of secondary indexes. These costs bound every write path's ratio to a raw path that only inserts.

    python -m bench.write_costs [--documents 10000] [--writes 3000] [--repeats 2]

Starts its own SecantusDB. Per case: a collection of `--documents` milestone-shaped documents (ten facts and a
timeline each, as the roadmap stores them; "small": the same without facts and timeline) with the case's secondary
indexes, then `--writes` writes of random documents in bulk calls of 300, as the write paths make them. Reports
milliseconds per document written (median over repeats) and the database process's CPU per document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, InsertOne, ReplaceOne, UpdateOne

from bench.harness import cpu_seconds, write_results
from services.common import processes as px

_START = datetime(2026, 1, 1, tzinfo=UTC)
BULK = 300

# The roadmap's five secondary indexes on milestones (services/roadmap/adapters.py), then fewer of them.
FIVE = [[("open_deadline", 1)], [("depends_on", 1)], [("status", 1)], [("alert_kind", 1)], [("owner_agency", 1)]]


def milestone(i: int, rnd: random.Random, rev: int, small: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": f"M-{i:06d}", "rev": rev, "title_th": "หมุดหมาย", "owner_agency": f"a{i % 40}", "workstream": "digital",
        "status": rnd.choice(["on_track", "at_risk", "missed", "completed"]),
        "alert_kind": rnd.choice([None, None, None, "missed"]),
        "open_deadline": _START + timedelta(days=i % 300) if i % 4 else None,
        "depends_on": [f"M-{i - 1:06d}"] if i % 50 == 1 else []}
    if not small:
        facts = [{"type": "progressed", "id": f"e{i}-{k}", "at": _START + timedelta(days=k), "source": "agency/dga",
                  "percent": round(rnd.random() * 100, 1)} for k in range(10)]
        doc["facts"] = facts
        doc["timeline"] = [{"at": f["at"], "status": "on_track", "cause": f["id"]} for f in facts]
    return doc


def _ops(kind: str, ids: list[int], rnd: random.Random, small: bool) -> list[Any]:
    if kind == "insert":  # new documents beside the stored ones
        return [InsertOne({**milestone(i, rnd, 1, small), "_id": f"N-{i:06d}-{rnd.random()}"}) for i in ids]
    if kind == "replace":  # the compare-and-set replace every write path makes
        return [ReplaceOne({"_id": f"M-{i:06d}", "rev": 1}, milestone(i, rnd, 2, small)) for i in ids]
    return [UpdateOne({"_id": f"M-{i:06d}"}, {"$set": {"status": "missed", "rev": 2}}) for i in ids]  # "$set"


CASES: list[tuple[str, str, bool, list]] = [
    # name, write, small documents, secondary indexes
    ("insert, no secondary index", "insert", False, []),
    ("insert, five secondary indexes", "insert", False, FIVE),
    ("replace, no secondary index", "replace", False, []),
    ("replace, one secondary index", "replace", False, FIVE[:1]),
    ("replace, five secondary indexes", "replace", False, FIVE),
    ("replace, three indexes (one compound of status, alert, agency)", "replace", False,
     [FIVE[0], FIVE[1], [("owner_agency", 1), ("status", 1), ("alert_kind", 1)]]),
    ("$set of two fields, no secondary index", "set", False, []),
    ("replace of a small document (no facts), no secondary index", "replace", True, []),
]


async def _case(client: AsyncMongoClient, db_pid: int | None, name: str, kind: str, small: bool,
                indexes: list, documents: int, writes: int, seed: int) -> tuple[float, float]:
    col = client.bench_write_costs[f"c{seed}"]
    await col.drop()
    for keys in indexes:
        await col.create_index(keys)
    rnd = random.Random(seed)
    for start in range(0, documents, 5000):
        await col.insert_many([milestone(i, rnd, 1, small) for i in range(start, min(documents, start + 5000))])
    ids = rnd.sample(range(documents), writes)
    batches = [_ops(kind, ids[s:s + BULK], rnd, small) for s in range(0, writes, BULK)]
    cpu0, t0 = cpu_seconds(db_pid) if db_pid else 0.0, time.perf_counter()
    for ops in batches:
        await col.bulk_write(ops, ordered=False)
    wall, cpu = time.perf_counter() - t0, (cpu_seconds(db_pid) if db_pid else 0.0) - cpu0
    await col.drop()
    return wall / writes * 1000, cpu / writes * 1000


async def run(documents: int, writes: int, repeats: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-write-costs-"))
    port = px.free_port()
    mongo = px.secantus(port, str(tmp / "db"), tmp).start()
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        px.wait_until(lambda: px.mongo_ready(uri), 60, "secantusdb", proc=mongo)
        client = AsyncMongoClient(uri, tz_aware=True)
        db_pid = mongo.popen.pid if mongo.popen else None
        cases = []
        try:
            for n, (name, kind, small, indexes) in enumerate(CASES):
                runs = [await _case(client, db_pid, name, kind, small, indexes, documents, writes, n * 100 + r)
                        for r in range(repeats)]
                ms, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                cases.append({"case": name, "ms_per_document": round(ms, 3), "database_cpu_ms_per_document": round(cpu, 3)})
                print(f"{name:62s} {ms:6.3f} ms/document  (database CPU {cpu:.3f} ms)", flush=True)
        finally:
            await client.close()
    finally:
        mongo.stop()
    return {"documents_stored": documents, "writes": writes, "bulk": BULK, "repeats": repeats, "cases": cases,
            "note": "SecantusDB on WiredTiger, in-process with nothing else of the project; 2 cores"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=3_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results = asyncio.run(run(args.documents, args.writes, args.repeats))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    print(write_results("write_costs", results))


if __name__ == "__main__":
    main()
