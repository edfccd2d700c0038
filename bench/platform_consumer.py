"""The platform consumer pattern storing N events vs raw getmany + insert_many, same broker and DB.

Project: a `Runtime` with one `add_consumer` (FastStream batch subscriber, CloudEvents parsing and
validation, DLQ routing, idempotent audit insert, manual commit) and a no-op service handler.
Baseline: AIOKafkaConsumer.getmany + json.loads + insert_many(ordered=False) under the same unique
index, commit after. Both include the consumer-group join; N events are on the topic beforehand.
Usage: python -m bench.platform_consumer [--size 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
import uuid

from bench.harness import peak_rss_mib, summary, write_results
from bench.platform_stack import SHARED_NOTE, Stack, feedback_events, produce, raw_consume, wait_count
from services.common.app import Runtime
from services.common.settings import ServiceSettings
from services.contracts.events import FEEDBACK_TYPES


async def project_consume(stack: Stack, topic: str, db: str, expected: int) -> float:
    settings = ServiceSettings(service_name="bench", kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri,
                               mongo_db=db, kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}",
                               kafka_session_timeout_ms=6000, kafka_heartbeat_interval_ms=500, log_level="WARNING")
    runtime = Runtime(settings)

    async def handler(batch) -> None:
        return None

    runtime.add_consumer(topic=topic, group="bench", handler=handler, allowed_types=FEEDBACK_TYPES)
    t0 = time.perf_counter()
    await runtime.start()
    try:
        await wait_count(stack.uri, db, expected)
        return time.perf_counter() - t0
    finally:
        await runtime.stop()


async def main(size: int, repeats: int) -> dict:
    logging.basicConfig(level=logging.WARNING)
    with Stack() as stack:
        project, baseline = [], []
        for r in range(repeats):
            topic = f"bench.consume.{r}"
            await stack.create_topic(topic, 3)
            await produce(stack.bootstrap, topic, feedback_events(size, seed=300 + r))
            seconds = await project_consume(stack, topic, f"bench_consume_p{r}", size)
            project.append(size / seconds)
            base_seconds = await raw_consume(stack.bootstrap, stack.uri, f"bench_consume_b{r}", topic, size, f"raw-{r}")
            baseline.append(size / base_seconds)
            print(f"run {r + 1}: platform consumer {project[-1]:,.0f} ev/s · raw {baseline[-1]:,.0f} ev/s", flush=True)
        return {"note": SHARED_NOTE, "size": size, "repeats": repeats,
                "project_events_per_s": summary(project), "baseline_events_per_s": summary(baseline),
                "ratio_project_over_baseline": statistics.median(project) / statistics.median(baseline),
                "peak_rss_mib": {"bench_process (platform consumer + baseline, in process)": peak_rss_mib()}}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    result = asyncio.run(main(a.size, a.repeats))
    print(json.dumps(result, indent=2))
    print(write_results("platform_consumer", result))
