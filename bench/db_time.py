"""Where a consuming service's time goes: its project path end to end, with the database time of every command
by (command, collection), from PyMongo's command monitoring. No baseline: run it on two commits to compare write
paths side by side on the same day (the host's speed varies from day to day).

    python -m bench.db_time training [--size 200000]
    python -m bench.db_time feedback [--size 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from bench.harness import write_results
from bench.platform_stack import Stack
from services.common import processes as px


class CommandTimes(monitoring.CommandListener):
    """Seconds and calls per (command, collection) of every client created after it is registered."""

    def __init__(self) -> None:
        self.seconds: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()
        self._pending: dict[int, tuple[str, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self._pending[event.request_id] = (event.command_name, target if isinstance(target, str) else "")

    def _ended(self, event: Any) -> None:
        key = self._pending.pop(event.request_id, (event.command_name, ""))
        self.seconds[key] += event.duration_micros / 1e6
        self.calls[key] += 1

    succeeded = failed = _ended

    def table(self, top: int = 20) -> list[dict[str, Any]]:
        return [{"command": c, "collection": coll, "seconds": round(s, 2), "calls": self.calls[(c, coll)]}
                for (c, coll), s in self.seconds.most_common(top)]


async def training(size: int, tmp: Path, stack: Stack) -> float:
    from bench import training_import as bt
    from services.training.settings import TrainingSettings
    settings = TrainingSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db="db_time_training",
                                kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", metrics_cache_seconds=0,
                                learner_hmac_secret="bench-learner-hmac-secret", http_port=px.free_port())
    csv_path = tmp / "completions.csv"
    bt.generate(csv_path, size)
    return (await bt.project(settings, csv_path, size))["end_to_end_seconds"]


async def feedback(size: int, tmp: Path, stack: Stack) -> float:
    from bench import feedback_pipeline as bf
    from bench.harness import running
    from services.contracts import topics
    from services.feedback.main import create_app
    from services.feedback.settings import FeedbackSettings
    settings = FeedbackSettings(kafka_bootstrap_servers=stack.bootstrap, mongo_uri=stack.uri, mongo_db="db_time_feedback",
                                kafka_consumer_group_prefix=f"bench-{uuid.uuid4().hex[:6]}", metrics_cache_seconds=0,
                                consumer_max_records=2000, http_port=px.free_port())
    records = bf.generate(size)
    db = AsyncMongoClient(settings.mongo_uri.get_secret_value(), tz_aware=True)[settings.mongo_db]
    app = create_app(settings, clock=lambda: bf.NOW)
    async with running(app):
        t0 = time.perf_counter()
        await bf.publish(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, records)
        await bf.until_rolled_up(app, db, size)
        total = time.perf_counter() - t0
    await db.client.close()
    return total


async def main(service: str, size: int) -> None:
    times = CommandTimes()
    monitoring.register(times)  # before any client exists: every client of the run reports to it
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-db-time-{service}-"))
    with Stack(storage=tmp / "db") as stack:
        seconds = await {"training": training, "feedback": feedback}[service](size, tmp, stack)
    results = {"service": service, "size": size, "end_to_end_seconds": round(seconds, 1),
               "events_per_second": round(size / seconds, 1),
               "database_seconds": round(sum(times.seconds.values()), 1), "by_command": times.table(),
               "note": "command monitoring adds a little time of its own; no baseline: compare two commits run "
                       "back to back"}
    print(write_results(f"db_time_{service}", results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("service", choices=["training", "feedback"])
    parser.add_argument("--size", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.service, args.size or {"training": 200_000, "feedback": 100_000}[args.service]))
