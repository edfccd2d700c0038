"""The notifier's claims over the real database: a backlog of due notifications is claimed earliest first, each
once, by windows of the due range (`NotificationRepository._due_ids`); what another replica made due before the
windows' start is found by the next whole read of the range."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

import services.notifier.adapters as adapters
from services.notifier.adapters import NotificationRepository

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def notification(n: int, due: datetime, state: str = "pending") -> dict:
    return {"_id": f"n{n:05d}", "key": f"k{n}", "kind": "alert", "channel": "webhook", "agency": "dga",
            "milestone_id": f"M{n % 7}", "state": state, "attempts": 0, "next_attempt_at": due, "created_at": due}


async def test_a_backlog_is_claimed_earliest_first_each_once_whatever_its_spread(mongo_uri, db_name):
    client = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        repo = NotificationRepository(client[db_name], instance="a")
        await repo.ensure_indexes()
        rnd = random.Random(5)
        # Bursts and gaps: 600 pending over the last hour, 150 retries come due, 50 not due yet.
        dues = [NOW - timedelta(seconds=rnd.choice([3600, 1800, 60, 5]) * rnd.random()) for _ in range(600)]
        docs = [notification(i, due.replace(microsecond=due.microsecond // 1000 * 1000)) for i, due in enumerate(dues)]
        docs += [notification(600 + i, NOW - timedelta(seconds=i), "retrying") for i in range(150)]
        docs += [notification(750 + i, NOW + timedelta(minutes=1 + i)) for i in range(50)]
        await repo.col.insert_many(docs)
        due_of = {d["_id"]: d["next_attempt_at"] for d in docs}

        claims: list[list[str]] = []
        clock = NOW
        while True:
            got = [d["_id"] for d in await repo.claim(clock, LEASE, 64)]
            if not got:
                break
            claims.append(got)
            clock += timedelta(milliseconds=200)  # the dispatcher's next pass
        assert all(len(c) == 64 for c in claims[:-1])  # every claim full until the backlog is drained
        claimed = [i for c in claims for i in c]
        assert len(claimed) == len(set(claimed)) == 750  # every due one, once; none of the future ones
        assert all(due_of[i] <= NOW + timedelta(seconds=len(claims)) for i in claimed)
        for earlier, later in zip(claims, claims[1:]):  # earliest first: no claim takes one due after the next's
            assert max(due_of[i] for i in earlier) <= min(due_of[i] for i in later)
        windows = repo._windows["pending"]
        assert windows.floor is not None  # it walked by windows after the first read of the whole range
    finally:
        await client.close()


async def test_a_notification_due_before_the_windows_start_is_found_by_the_next_whole_read(mongo_uri, db_name,
                                                                                            monkeypatch):
    client = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        repo = NotificationRepository(client[db_name], instance="a")
        await repo.ensure_indexes()
        await repo.col.insert_many([notification(i, NOW - timedelta(seconds=i)) for i in range(5)])
        assert len(await repo.claim(NOW, LEASE, 64)) == 5  # the whole range read: the windows start near the clock
        # Another replica's notification, stamped by a clock 20 s behind and stored now.
        await repo.col.insert_one(notification(99, NOW - timedelta(seconds=20)))
        assert await repo.claim(NOW + timedelta(seconds=1), LEASE, 64) == []  # before the windows' start
        monkeypatch.setattr(adapters, "FULL_DUE_SCAN_SECONDS", 0.0)
        repo._windows["pending"].full_scan_at = 0.0  # the next whole read is due
        assert [d["_id"] for d in await repo.claim(NOW + timedelta(seconds=2), LEASE, 64)] == ["n00099"]
    finally:
        await client.close()
