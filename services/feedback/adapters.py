"""MongoDB side of the feedback service: responses, rollups and the rollup journal.

Guarantee: every stored response is counted exactly once in the rollups, across redelivery,
retries and crashes at any step, so that rollups always converge to `newnormal feedback recount`.

How:
1. A batch gets a fresh token T (hash of its keys + a random nonce) and a journal entry
   `feedback_rollup_journal {_id: T}` is written *before* anything else.
   The entry lists the `_id`s of the batch's responses, so finishing it later needs no index.
2. Responses are inserted unordered with `rollup_token: T`, keyed by `_id` {source, id}:
   a duplicate (redelivery) keeps the token of the batch that stored it first, so each response
   belongs to exactly one token, and no other write ever adds documents to T.
3. The rollup documents the new responses touch are read, the batch's counts added in memory, and
   each written back with a compare-and-set on its revision (`rev`) that also appends T to a capped
   `applied` list (last 200 tokens). A document already listing T is skipped, so a repeated
   application of T is a no-op; a lost race (another replica wrote first) re-reads and retries.
   Why not `$inc`: SecantusDB applies an update path by path, and a batch touches hundreds of
   counters per document; reading and replacing the document costs about a sixth (bench/results).
4. The journal entry is deleted.
A crash after 1 leaves a journal entry: the sweep (at startup and every
`feedback_sweep_interval_seconds`, for entries older than `feedback_sweep_grace_seconds` so a live
replica's batch in flight is left alone) re-reads the responses of T (those of the listed `_id`s that
carry T) and repeats 3-4; documents already listing T are skipped. The one bound: a token is recognised
while it is among the last 200 applied to that rollup document, i.e. an unfinished batch must be
completed before 200 later batches touched the same document (the sweep runs long before that).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from pymongo import ASCENDING, InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock, utc_now
from services.common.mongo import bulk_write_or_duplicates, insert_if_new, insert_new, retry_transient
from services.contracts.envelope import Event
from services.contracts.events import FEEDBACK_RESPONSE_SUBMITTED
from services.feedback import domain

log = logging.getLogger(__name__)
APPLIED_KEEP = 200


class FeedbackRepository:
    def __init__(self, db: AsyncDatabase, clock: Clock = utc_now):
        self.db = db
        # A response is stored once, as the audit record of its event (the platform's `events` collection,
        # written here rather than by the consumer, so the audit record carries the rollup token).
        self.responses = db.events
        self.totals = db.feedback_rollup_totals
        self.daily = db.feedback_rollup_daily
        self.journal = db.feedback_rollup_journal
        # `months`: since when every write keeps the month rollups (a database from before them has none
        # until `newnormal feedback recount` builds them; until then ranges are read day by day).
        self.state = db.feedback_rollup_state
        self._months_kept = False
        self.clock = clock
        # Test hook: raise between steps to simulate a crash ("inserted", "totals", "applied").
        self.crash_after: str | None = None

    async def ensure_indexes(self) -> None:
        # Responses carry no secondary index: `_id` is the (source, id) key and the journal lists the
        # `_id`s of each batch; on the write-heavy collection every index would cost insert throughput.
        await self.daily.create_index([("day", ASCENDING), ("agency", ASCENDING)], name="day_agency")
        if await self.daily.find_one({}, {"_id": 1}) is None:  # nothing counted yet: months kept from the start
            await self._mark_months()
        # The journal holds only the batches in flight (a handful of documents): no index needed.

    # --- write path --------------------------------------------------------------------------------
    async def store(self, events: Sequence[Event]) -> set[tuple[str, str]]:
        """Store prepared feedback events idempotently and roll up the new ones; returns the (source, id)
        keys stored for the first time."""
        if not events:
            return set()
        token = domain.batch_token((e.key for e in events), uuid.uuid4().hex)
        now = self.clock()
        ids = [e.document_id for e in events]

        async def open_journal() -> None:
            # False when an earlier attempt's insert landed before its connection dropped: nothing to do.
            await insert_if_new(self.journal, {"_id": token, "at": now, "responses": ids})

        await self._retry(open_journal, "journal")
        docs = []
        for event in events:
            doc = domain.response_document(event)
            doc.update(rollup_token=token, stored_at=now)
            docs.append(doc)
        attempts = 0
        inserted: list[int] = []

        async def insert() -> None:
            nonlocal attempts, inserted
            attempts += 1
            inserted = await insert_new(self.responses, [dict(d) for d in docs])

        await self._retry(insert, "insert responses")
        if attempts == 1:
            new_docs = [docs[i] for i in inserted]
        else:  # an earlier attempt may have stored part of the batch: the database knows which
            new_docs = await self._docs_of(token, ids)
        if self.crash_after == "inserted":
            raise _SimulatedCrash("after insert")
        if new_docs:
            await self._retry(lambda: self._apply(token, new_docs), "apply rollups")
        if self.crash_after == "applied":
            raise _SimulatedCrash("after apply")
        await self._retry(lambda: self.journal.delete_one({"_id": token}), "close journal")
        return {(d["source"], d["id"]) for d in new_docs}

    async def _docs_of(self, token: str, ids: list[dict[str, str]]) -> list[dict[str, Any]]:
        return await self.responses.find({"_id": {"$in": ids}, "rollup_token": token}, domain.ROLLUP_PROJECTION).to_list(None)

    async def _apply(self, token: str, docs: Iterable[dict[str, Any]]) -> None:
        totals, daily = domain.rollup_deltas(docs)
        await self._apply_to(self.totals, token, totals)
        if self.crash_after == "totals":
            raise _SimulatedCrash("between the two rollups")
        await self._apply_to(self.daily, token, daily)

    async def _apply_to(self, collection, token: str, deltas: dict[str, domain.RollupDelta]) -> None:
        pending = dict(deltas)
        while pending:
            found = {d["_id"]: d async for d in collection.find({"_id": {"$in": list(pending)}})}
            ops: list[InsertOne | ReplaceOne] = []
            for rid, delta in list(pending.items()):
                doc = found.get(rid)
                if doc is not None and token in doc.get("applied", ()):
                    del pending[rid]  # T is already in this document (an earlier attempt, or the sweep)
                    continue
                if doc is None:
                    ops.append(InsertOne(domain.with_delta(None, rid, delta, token, APPLIED_KEEP)))
                else:
                    revision = {"rev": doc["rev"]} if "rev" in doc else {"rev": {"$exists": False}}
                    ops.append(ReplaceOne({"_id": rid, **revision}, domain.with_delta(doc, rid, delta, token, APPLIED_KEEP)))
            if not ops:
                return
            written, lost = await bulk_write_or_duplicates(collection, ops)
            if not lost and written == len(ops):
                return
            # Another writer changed or created some of these documents first: read them again; the ones
            # written by this round now list T and drop out.

    async def sweep(self, grace_seconds: float) -> int:
        """Finish batches whose writer died between journal and close; returns how many were finished."""
        cutoff = self.clock() - timedelta(seconds=grace_seconds)
        finished = 0
        async for entry in self.journal.find({"at": {"$lte": cutoff}}).sort("at", ASCENDING).limit(1000):
            token = entry["_id"]
            docs = await self._docs_of(token, entry.get("responses") or [])
            if docs:
                await self._apply(token, docs)
            await self.journal.delete_one({"_id": token})
            finished += 1
        if finished:
            log.info("unfinished rollup batches completed", extra={"batches": finished})
        return finished

    async def _retry(self, operation, what: str):
        return await retry_transient(operation, what=f"feedback {what}")

    # --- recount -----------------------------------------------------------------------------------
    async def compute_from_responses(self) -> tuple[dict[str, domain.RollupDelta], dict[str, domain.RollupDelta]]:
        """Rollups computed from scratch by reading every stored response (streamed)."""
        cursor = self.responses.find({"type": FEEDBACK_RESPONSE_SUBMITTED}, domain.ROLLUP_PROJECTION, batch_size=5000)
        totals: dict[str, domain.RollupDelta] = {}
        daily: dict[str, domain.RollupDelta] = {}
        chunk: list[dict[str, Any]] = []

        def merge() -> None:
            t, d = domain.rollup_deltas(chunk)
            for target, part in ((totals, t), (daily, d)):
                for rid, delta in part.items():
                    have = target.setdefault(rid, domain.RollupDelta(delta.keys, {}))
                    for k, v in delta.inc.items():
                        have.inc[k] = have.inc.get(k, 0) + v
            chunk.clear()

        async for doc in cursor:
            chunk.append(doc)
            if len(chunk) >= 10_000:
                merge()
        merge()
        return totals, daily

    async def recount(self) -> dict[str, int]:
        """Rebuild both rollups from the responses (run while the consumers are stopped)."""
        totals, daily = await self.compute_from_responses()
        for collection, deltas in ((self.totals, totals), (self.daily, daily)):
            await collection.delete_many({})
            docs = [domain.with_delta(None, rid, d, None, APPLIED_KEEP) for rid, d in deltas.items()]
            for start in range(0, len(docs), 5000):
                await collection.insert_many(docs[start:start + 5000], ordered=False)
        await self.journal.delete_many({})
        await self._mark_months()
        return {"totals": len(totals), "daily": len(daily), "responses": sum(d.inc["responses"] for d in totals.values())}

    async def _mark_months(self) -> None:
        await self.state.update_one({"_id": "months"}, {"$setOnInsert": {"since": self.clock()}}, upsert=True)

    async def months_kept(self) -> bool:
        """Whether the month rollups are complete (once they are, they stay: remembered)."""
        if not self._months_kept:
            self._months_kept = await self.state.find_one({"_id": "months"}) is not None
        return self._months_kept

    async def rollup_differences(self) -> list[str]:
        """Rollup documents that differ from a full recount (empty list = exact)."""
        totals, daily = await self.compute_from_responses()
        diffs: list[str] = []
        for collection, deltas in ((self.totals, totals), (self.daily, daily)):
            stored = {d["_id"]: domain.flatten_counters(d) async for d in collection.find({})}
            for rid in set(stored) | set(deltas):
                want = {k: v for k, v in (deltas[rid].inc if rid in deltas else {}).items() if v}
                have = {k: v for k, v in stored.get(rid, {}).items() if v}
                if have != want:
                    diffs.append(f"{collection.name}/{rid}: stored {have} != recount {want}")
        return diffs

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


class _SimulatedCrash(RuntimeError):
    """Raised by the test hook only."""
