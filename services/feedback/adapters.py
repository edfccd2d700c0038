"""MongoDB side of the feedback service: responses, rollups and the rollup journal.

Guarantee: every stored response is counted exactly once in the rollups, across redelivery, retries, crashes at
any step and racing replicas, so that rollups always equal `newnormal feedback recount`. This is the platform's
one write path (`services.common.ledger`): the responses are its records (stored once, as the audit record of their
event, each carrying the token of the write that stored it first), the totals and the day/month rollups its two
books; the journal is `feedback_rollup_journal`. A write interrupted by a crash is finished by the same process at
its next batch, or by the sweep (at startup and every `feedback_sweep_interval_seconds`, for entries older than
`feedback_sweep_grace_seconds`, so a live replica's batch in flight is left alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock, utc_now
from services.common.ledger import Book, Ledger, LedgerStore, Records
from services.common.ledger_mongo import MongoLedgerStore
from services.contracts.envelope import Event, legacy_document_id
from services.contracts.events import FEEDBACK_RESPONSE_SUBMITTED
from services.feedback import domain

log = logging.getLogger(__name__)
APPLIED_KEEP = 200
# A response is stored once, as the audit record of its event (the platform's `events` collection, written here
# rather than by the consumer, so the audit record carries the rollup token).
RESPONSES = "events"
TOTALS = "feedback_rollup_totals"
DAILY = "feedback_rollup_daily"
JOURNAL = "feedback_rollup_journal"


class ResponseStore(Protocol):
    """What the service layer (`FeedbackService`) needs of the repository: `FeedbackRepository` over MongoDB,
    `tests/fakes_feedback.py` in memory."""

    async def store(self, events: Sequence[Event],
                    documents: Sequence[dict[str, Any]] | None = None) -> set[tuple[str, str]]: ...

    async def daily_cells(self, start: date, end: date, agency: str | None) -> dict[tuple[str, str], dict[str, int]]: ...


def count(kind: str, new: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, domain.RollupDelta]]:
    totals, daily = domain.rollup_deltas(new)
    return {TOTALS: totals, DAILY: daily}


def counting_ledger(store: LedgerStore, clock: Clock, lease: timedelta | None = None) -> Ledger:
    """The feedback write path over a store (MongoDB in the service, in memory in unit tests)."""
    return Ledger(store, journal=JOURNAL,
                  records=[Records(RESPONSES, select={"type": FEEDBACK_RESPONSE_SUBMITTED},
                                   projection=domain.ROLLUP_PROJECTION)],
                  books=[Book(TOTALS), Book(DAILY)], count=count, clock=clock, keep=APPLIED_KEEP,
                  token_field="rollup_token", ids_field="responses", lease=lease)


class FeedbackRepository:
    def __init__(self, db: AsyncDatabase, clock: Clock = utc_now, store: LedgerStore | None = None,
                 lease_seconds: float | None = None):
        self.db = db
        self.responses = db[RESPONSES]
        self.totals = db[TOTALS]
        self.daily = db[DAILY]
        self.journal = db[JOURNAL]
        # `months`: since when every write keeps the month rollups (a database from before them has none
        # until `newnormal feedback recount` builds them; until then ranges are read day by day).
        self.state = db.feedback_rollup_state
        self._months_kept = False
        self.clock = clock
        # A batch write stops at half the sweep's grace period: the sweep never races it.
        self.ledger = counting_ledger(store or MongoLedgerStore(db), clock,
                                      lease=timedelta(seconds=lease_seconds) if lease_seconds is not None else None)

    async def ensure_indexes(self) -> None:
        # Responses carry no secondary index: `_id` is the (source, id) key and the journal lists the
        # `_id`s of each batch; on the write-heavy collection every index would cost insert throughput.
        await self.daily.create_index([("day", ASCENDING), ("agency", ASCENDING)], name="day_agency")
        await self._rekey_legacy()
        if await self.daily.find_one({}, {"_id": 1}) is None:  # nothing counted yet: months kept from the start
            await self._mark_months()
        # The journal holds only the batches in flight (a handful of documents): no index needed.

    async def _rekey_legacy(self) -> None:
        """Open journal entries listing responses by their {source, id} keys, moved to the string keys
        (`document_id`) before the sweep reads an entry's responses by key. The responses themselves are the audit
        trail, moved when the service starts (`ensure_platform_indexes`)."""
        async for entry in self.journal.find({}, {"responses": 1}):
            ids = [legacy_document_id(i) for i in entry.get("responses") or ()]
            if ids != entry.get("responses"):
                await self.journal.update_one({"_id": entry["_id"]}, {"$set": {"responses": ids}})

    # --- write path --------------------------------------------------------------------------------
    async def store(self, events: Sequence[Event],
                    documents: Sequence[dict[str, Any]] | None = None) -> set[tuple[str, str]]:
        """Store prepared feedback events idempotently and roll up the new ones; returns the (source, id)
        keys stored for the first time. `documents`: their `domain.response_document`s, when the caller made them."""
        now = self.clock()
        documents = documents if documents is not None else [domain.response_document(e) for e in events]
        new = await self.ledger.write([{**d, "stored_at": now} for d in documents])
        return {(d["source"], d["id"]) for d in new}

    async def sweep(self, grace_seconds: float) -> int:
        """Finish batches whose writer died between journal and close; returns how many were finished."""
        return await self.ledger.sweep(timedelta(seconds=grace_seconds))

    # --- recount -----------------------------------------------------------------------------------
    async def recount(self, abandoned_after: timedelta = timedelta(seconds=60),
                      progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Rebuild both rollups from the responses while the service runs (`Ledger.rebuild`: writes wait meanwhile).
        `abandoned_after`: the sweep's grace period (a write open longer is a dead writer's)."""
        computed = await self.ledger.rebuild(abandoned_after, progress=progress)
        await self._mark_months()
        totals = computed[self.totals.name]
        return {"totals": len(totals), "daily": len(computed[self.daily.name]),
                "responses": sum(d.inc.get("responses", 0) for d in totals.values())}

    async def rollup_differences(self) -> list[str]:
        """Rollup documents that differ from a full recount (empty list = exact)."""
        return await self.ledger.differences()

    async def _mark_months(self) -> None:
        await self.state.update_one({"_id": "months"}, {"$setOnInsert": {"since": self.clock()}}, upsert=True)

    async def months_kept(self) -> bool:
        """Whether the month rollups are complete (once they are, they stay: remembered)."""
        if not self._months_kept:
            self._months_kept = await self.state.find_one({"_id": "months"}) is not None
        return self._months_kept

    # --- reads -------------------------------------------------------------------------------------
    async def totals_documents(self) -> list[dict[str, Any]]:
        return await self.totals.find({}, {"applied": 0}).to_list(None)

    async def daily_cells(self, start: date, end: date, agency: str | None) -> dict[tuple[str, str], dict[str, int]]:
        """Counters per (channel, age_group) over Bangkok days start..end: one document per whole month in the
        range and one per day at its edges (every day when the month rollups are not built yet)."""
        who = agency or domain.ALL_AGENCIES
        months, runs = domain.split_range(start, end) if await self.months_kept() else ([], [(start, end)])
        docs = []
        if months:
            ids = [domain.monthly_rollup_id(m, who) for m in months]
            docs += await self.daily.find({"_id": {"$in": ids}}, {"cells": 1, "_id": 0}).to_list(None)
        for first, last in runs:
            query = {"day": {"$gte": first.isoformat(), "$lte": last.isoformat()}, "agency": who}
            docs += await self.daily.find(query, {"cells": 1, "_id": 0}).to_list(None)
        return domain.sum_daily_cells(docs)
