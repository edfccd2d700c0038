"""HTTP batched intake (`POST /v1/events`, batches of 100, 4 in flight) vs a raw aiokafka producer.

Both put the same number of CloudEvents on the same Tansu; the project's path adds HTTP, API-key
auth, CloudEvents parsing and validation, and waits for Kafka's ack before answering 202.
Usage: python -m bench.platform_ingest [--size 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx

from bench.harness import peak_rss_mib, summary, write_results
from bench.platform_stack import SHARED_NOTE, Stack, feedback_events, produce


async def http_ingest(url: str, key: str, events: list[dict], batch: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    chunks = [events[i:i + batch] for i in range(0, len(events), batch)]
    queue: asyncio.Queue = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            t0 = time.perf_counter()
            resp = await client.post(f"{url}/v1/events", content=json.dumps(chunk),
                                     headers={"Content-Type": "application/cloudevents-batch+json", "X-API-Key": key})
            latencies.append(time.perf_counter() - t0)
            assert resp.status_code == 202, resp.text[:300]

    async with httpx.AsyncClient(timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies


async def main(size: int, repeats: int, batch: int, concurrency: int) -> dict:
    with Stack() as stack:
        proc, url = stack.service("feedback", "bench_ingest")
        keys = await stack.keys("bench_ingest", ["rd"])
        await stack.create_topic("bench.raw.ingest", 3)
        project, baseline, lat_all = [], [], []
        for r in range(repeats):
            events = feedback_events(size, seed=100 + r, agency="rd")
            seconds, lat = await http_ingest(url, keys["rd"], events, batch, concurrency)
            project.append(size / seconds)
            lat_all.extend(lat)
            raw_events = feedback_events(size, seed=200 + r, agency="rd")
            baseline.append(size / await produce(stack.bootstrap, "bench.raw.ingest", raw_events))
            print(f"run {r + 1}: http {project[-1]:,.0f} ev/s · raw producer {baseline[-1]:,.0f} ev/s", flush=True)
        return {
            "note": SHARED_NOTE, "size": size, "repeats": repeats, "batch": batch, "concurrency": concurrency,
            "project_events_per_s": summary(project), "baseline_events_per_s": summary(baseline),
            "ratio_project_over_baseline": statistics.median(project) / statistics.median(baseline),
            "http_batch_latency_s": summary(lat_all),
            "peak_rss_mib": {"feedback_service": peak_rss_mib(proc.popen.pid), "bench_process": peak_rss_mib()},
        }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=4)
    a = p.parse_args()
    result = asyncio.run(main(a.size, a.repeats, a.batch, a.concurrency))
    print(json.dumps(result, indent=2))
    print(write_results("platform_ingest", result))
