"""`run_once`: a one-time upgrade runs once across replicas; a replica that finds it claimed waits for it, takes it
over when its claim is stale (that replica died), and runs it again when the data calls for it after it was done."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.common.migrations import run_once

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


class Migrations:
    """The few calls `run_once` makes of a MongoDB collection, in memory."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def insert_one(self, doc: dict[str, Any]) -> None:
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("E11000")
        self.docs[doc["_id"]] = dict(doc)

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        doc = self.docs.get(query["_id"])
        return dict(doc) if doc else None

    async def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> Any:
        doc = self.docs.get(query["_id"])
        if doc is None or any(doc.get(k) != v for k, v in query.items()):
            return SimpleNamespace(modified_count=0)
        doc.update(update["$set"])
        return SimpleNamespace(modified_count=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_two_replicas_starting_together_run_it_once():
    migrations, runs, clock = Migrations(), [], Clock()
    started = asyncio.Event()

    async def work() -> None:
        runs.append(1)
        started.set()
        await asyncio.sleep(0.05)  # the other replica polls meanwhile

    first = asyncio.create_task(run_once(migrations, "m", work, clock=clock, poll_seconds=0.01, owner="a"))
    await started.wait()
    second = await run_once(migrations, "m", work, clock=clock, poll_seconds=0.01, owner="b")
    assert (await first, second, runs) == (True, False, [1])
    assert migrations.docs["m"]["done"] is True
    assert await run_once(migrations, "m", work, clock=clock) is False and runs == [1]  # the next start


async def test_a_claim_left_by_a_dead_replica_is_taken_over_once_stale():
    migrations, runs, clock = Migrations(), [], Clock()
    migrations.docs["m"] = {"_id": "m", "at": (T0 - timedelta(minutes=11)).replace(tzinfo=None), "done": False,
                            "by": "a replica that died"}

    async def work() -> None:
        runs.append(1)

    assert await run_once(migrations, "m", work, clock=clock, wait=timedelta(minutes=10)) is True
    assert runs == [1] and migrations.docs["m"] == {"_id": "m", "at": T0, "done": True, "by": migrations.docs["m"]["by"]}


async def test_needed_decides_and_runs_it_again_when_the_data_calls_for_it():
    migrations, clock = Migrations(), Clock()
    legacy = {"held": True}

    async def work() -> None:
        legacy["held"] = False

    async def needed() -> bool:
        return legacy["held"]

    assert await run_once(migrations, "m", work, needed=needed, clock=clock) is True
    assert await run_once(migrations, "m", work, needed=needed, clock=clock) is False
    legacy["held"] = True  # an older replica wrote the old way since
    clock.now += timedelta(minutes=1)
    assert await run_once(migrations, "m", work, needed=needed, clock=clock) is True and not legacy["held"]


async def test_a_replica_whose_own_attempt_failed_takes_its_claim_back_at_once():
    """The database went away mid-upgrade and the startup retries: no wait for its own claim."""
    migrations, clock, attempts = Migrations(), Clock(), []

    async def work() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("the database went away")

    try:
        await run_once(migrations, "m", work, clock=clock)
    except ConnectionError:
        pass
    ran = await asyncio.wait_for(run_once(migrations, "m", work, clock=clock, poll_seconds=60), timeout=5)
    assert ran is True and attempts == [1, 1] and migrations.docs["m"]["done"] is True
