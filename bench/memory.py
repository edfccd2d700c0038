"""Resident memory of each service at idle and under load, with a raw-driver process as the baseline.

The four services run as child processes on one Tansu + SecantusDB. Idle: RSS once ready. Load:
events are POSTed to roadmap, training and feedback (batches of 100) and the peak RSS (VmHWM) of
each process is read once everything is stored. Baseline: a bare Python process with aiokafka +
PyMongo draining the same number of events (getmany + insert_many).
Usage: python -m bench.memory [--size 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
from datetime import UTC, datetime

import httpx

from bench.harness import peak_rss_mib, rss_mib, write_results
from bench.platform_stack import SHARED_NOTE, Stack, feedback_events, produce, raw_consume, wait_count
from services.contracts.agencies import PROGRAMME_OFFICE
from services.simulator.model import World

SERVICES = ("roadmap", "training", "feedback", "notifier")


def _raw(bootstrap: str, uri: str, db: str, topic: str, n: int, out) -> None:
    asyncio.run(raw_consume(bootstrap, uri, db, topic, n, "raw-memory"))
    out.put(peak_rss_mib())


async def post_all(url: str, key: str, events: list[dict]) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(0, len(events), 100):
            resp = await client.post(f"{url}/v1/events", content=json.dumps(events[i:i + 100]),
                                     headers={"Content-Type": "application/cloudevents-batch+json", "X-API-Key": key})
            assert resp.status_code == 202, resp.text[:300]


async def main(size: int) -> dict:
    world = World(5, datetime.now(UTC), agencies=2)
    agency = next(a for a in world.agencies if a != PROGRAMME_OFFICE)
    now = datetime.now(UTC)
    with Stack() as stack:
        db = "bench_memory"
        running = {name: stack.service(name, db) for name in SERVICES}
        keys = await stack.keys(db, [agency])
        idle = {name: rss_mib(proc.popen.pid) for name, (proc, _) in running.items()}
        fb = [world.feedback_response(now) for _ in range(size)]
        for e in fb:
            e["agency"] = e["data"]["agency"] = agency
            e["source"] = f"/agencies/{agency}/survey"
        tr = [world.training_completion(now) for _ in range(size)]
        for e in tr:
            e["agency"] = e["data"]["agency"] = agency
            e["source"] = f"/agencies/{agency}/lms"
        # Roadmap: progress reports on one planned milestone of the agency (plan first).
        plan = [e for e in world.plan_events() if e["agency"] == agency][:1]
        mid = plan[0]["data"]["milestone_id"]
        progress = []
        for i in range(size):
            e = world.feedback_response(now)  # only for a fresh seeded id
            progress.append({**plan[0], "id": e["id"], "type": "roadmap.milestone.progressed", "source": f"/agencies/{agency}/pmo",
                             "data": {"milestone_id": mid, "percent_complete": float(i % 100), "as_of": plan[0]["time"]}})
        await post_all(running["roadmap"][1], keys[agency], plan)
        await asyncio.gather(post_all(running["feedback"][1], keys[agency], fb),
                             post_all(running["training"][1], keys[agency], tr),
                             post_all(running["roadmap"][1], keys[agency], progress))
        await wait_count(stack.uri, db, 3 * size + 1, timeout=600)
        load = {name: peak_rss_mib(proc.popen.pid) for name, (proc, _) in running.items()}
        await stack.create_topic("bench.memory.raw", 3)
        await produce(stack.bootstrap, "bench.memory.raw", feedback_events(size, seed=9))
        queue: multiprocessing.Queue = multiprocessing.Queue()
        worker = multiprocessing.Process(target=_raw, args=(stack.bootstrap, stack.uri, "bench_memory_raw",
                                                            "bench.memory.raw", size, queue))
        worker.start()
        baseline = queue.get(timeout=600)
        worker.join(30)
    return {"note": SHARED_NOTE + "; notifier receives no load here (its input is alerts)",
            "size_per_service": size, "idle_rss_mib": idle, "peak_rss_under_load_mib": load,
            "baseline_raw_consumer_peak_rss_mib": baseline,
            "ratio_feedback_peak_over_baseline": load["feedback"] / baseline}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=5000)
    a = ap.parse_args()
    result = asyncio.run(main(a.size))
    print(json.dumps(result, indent=2))
    print(write_results("memory", result))
