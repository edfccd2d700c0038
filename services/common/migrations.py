"""One-time upgrades of stored data, run at startup, once across replicas: the replica that claims one runs it, the
others wait for it, and take it over if it died (its claim grew older than `wait`). A replica whose own attempt
failed (the database went away mid-way, and its startup retries) takes its claim back at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any

from services.common.clock import Clock, utc_now
from services.common.mongo import insert_if_new

_THIS_PROCESS = uuid.uuid4().hex  # whose claim it is


async def run_once(migrations: Any, migration_id: str, work: Callable[[], Awaitable[Any]], *,
                   needed: Callable[[], Awaitable[bool]] | None = None, clock: Clock = utc_now,
                   wait: timedelta = timedelta(minutes=10), poll_seconds: float = 1.0, owner: str = _THIS_PROCESS) -> bool:
    """Run `work` for `migration_id` unless it is done (a document in `migrations` says so). `needed`, when given,
    is what the data says instead and is asked again each round: a migration done while an older replica still
    wrote the old way runs again. `owner`: who claims it (this process). True if this call ran it."""
    while True:
        if needed is not None and not await needed():
            return False
        now = clock()
        claim = {"at": now, "done": False, "by": owner}
        if not await insert_if_new(migrations, {"_id": migration_id, **claim}):
            doc = await migrations.find_one({"_id": migration_id}) or {}
            if doc.get("done") and needed is None:
                return False
            at = doc.get("at", now)
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at  # BSON dates are UTC
            others = doc.get("by") != owner
            if not doc.get("done") and others and now - at < wait:  # another replica's, fresh: wait for it
                await asyncio.sleep(poll_seconds)
                continue
            # Taken over (its replica died, or it is this one's failed attempt), or done and called for again.
            taken = await migrations.update_one({"_id": migration_id, "at": doc.get("at")}, {"$set": claim})
            if not taken.modified_count:
                continue
        await work()
        await migrations.update_one({"_id": migration_id}, {"$set": {"done": True}})
        return True
