"""MongoDB repository of the training service: completions, learners, readiness rollups, xAPI statement ids.

Counting guarantee (at-least-once delivery, exactly-once counting):

1. Completions are inserted unordered with a unique `_id` = source+id, each stamped with the batch's
   random `claim` token and `counted: false`. A duplicate keeps its original claim, so every completion
   belongs to exactly one claim for ever.
2. For the newly inserted passed completions, `learner_competency` docs (`_id` = fy:agency:competency:
   learner_hash, unique) are inserted with the same claim. A learner already ready keeps its first doc.
3. The rollup increments of a claim are computed from exactly the docs carrying that claim, and each
   rollup `$inc` is guarded by `applied != claim` with the claim pushed into a short `applied` list in the
   same atomic update: applying a claim twice changes nothing.
4. Docs of the claim are marked `counted: true`.

A crash between any two steps leaves docs with `counted: false`; the sweep (at startup, on every batch
and in the background) finishes claims older than `stale_claim_seconds` by redoing 2-4 from the stored
docs, which gives the same increments. The rollups therefore always equal `recount()` once no claim is
pending. Targets are idempotent by themselves (history entry guarded by event id; the current target is
the one with the latest (time, id)).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.common.mongo import DUPLICATE_KEY, insert_new
from services.training import domain

log = logging.getLogger(__name__)
APPLIED_KEEP = 64  # claims remembered per rollup doc; far more than can be in flight at once
HISTORY_KEEP = 100
Clock = Callable[[], datetime]


class TrainingRepository:
    def __init__(self, db: AsyncDatabase, clock: Clock, stale_claim_seconds: float = 300.0):
        self.db = db
        self.clock = clock
        self.stale = timedelta(seconds=stale_claim_seconds)
        self.completions = db.training_completions
        self.learners = db.training_learner_competency
        self.rollups = db.training_readiness
        self.statements = db.training_xapi_statements
        # Test hook: called with a stage name; raising there simulates a crash at that point.
        self.fault: Callable[[str], None] | None = None

    async def ensure_indexes(self) -> None:
        await self.completions.create_index([("source", ASCENDING), ("id", ASCENDING)], unique=True, name="source_id_unique")
        await self.completions.create_index([("counted", ASCENDING), ("claimed_at", ASCENDING)], name="pending")
        await self.completions.create_index([("claim", ASCENDING)], name="claim")
        await self.learners.create_index([("counted", ASCENDING), ("claimed_at", ASCENDING)], name="pending")
        await self.learners.create_index([("claim", ASCENDING)], name="claim")
        await self.rollups.create_index([("fiscal_year", ASCENDING), ("agency", ASCENDING)], name="fy_agency")

    def _stage(self, name: str) -> None:
        if self.fault is not None:
            self.fault(name)

    # --- completions -----------------------------------------------------------------------
    async def add_completions(self, docs: Sequence[dict[str, Any]], claim: str) -> int:
        """Store completions (all stamped with `claim`) and count the new ones; returns how many were new."""
        if not docs:
            return 0
        inserted = await insert_new(self.completions, docs)
        new = [docs[i] for i in inserted]
        self._stage("after_completions")
        await self._count_claim(claim, new)
        return len(new)

    async def _count_claim(self, claim: str, new_completions: Sequence[dict[str, Any]]) -> None:
        now = self.clock()
        passed = [c for c in new_completions if c["passed"]]
        candidate = {}
        for c in passed:  # one doc per learner×competency×fy even when the batch has several
            doc = domain.learner_doc(c, claim, now)
            candidate.setdefault(doc["_id"], doc)
        learner_docs = list(candidate.values())
        await insert_new(self.learners, learner_docs)
        # The claim's learners are those whose stored doc carries this claim (not a doc of an earlier claim).
        mine = [d async for d in self.learners.find({"claim": claim}, {"fiscal_year": 1, "agency": 1, "competency": 1})] \
            if learner_docs else []
        self._stage("after_learners")
        await self._apply(claim, domain.deltas(new_completions, mine))
        self._stage("after_rollups")
        await self.completions.update_many({"claim": claim}, {"$set": {"counted": True}})
        await self.learners.update_many({"claim": claim}, {"$set": {"counted": True}})

    async def _apply(self, claim: str, deltas: dict[str, domain.Delta]) -> None:
        if not deltas:
            return
        ensure = []
        guarded = []
        for rid, delta in deltas.items():
            fy, agency, competency = rid.split(":")
            ensure.append(UpdateOne({"_id": rid}, {"$setOnInsert": {"fiscal_year": int(fy), "agency": agency,
                                                                    "competency": competency}}, upsert=True))
            guarded.append(UpdateOne({"_id": rid, "applied": {"$ne": claim}},
                                     {"$inc": delta.as_inc(),
                                      "$push": {"applied": {"$each": [claim], "$slice": -APPLIED_KEEP}}}))
        await _bulk(self.rollups, ensure)
        await _bulk(self.rollups, guarded)

    async def finish_stale_claims(self, older_than: timedelta | None = None) -> int:
        """Finish claims of crashed batches (same increments, guarded); returns how many claims were finished."""
        cutoff = self.clock() - (self.stale if older_than is None else older_than)
        claims = set()
        for coll in (self.completions, self.learners):
            async for doc in coll.find({"counted": False, "claimed_at": {"$lte": cutoff}}, {"claim": 1}).limit(10_000):
                claims.add(doc["claim"])
        for claim in sorted(claims):
            await self.finish_claim(claim)
        return len(claims)

    async def finish_claim(self, claim: str) -> None:
        """Redo steps 2-4 for one claim from its stored completions (harmless if it was already finished)."""
        completions = [d async for d in self.completions.find({"claim": claim})]
        log.warning("finishing an interrupted counting batch", extra={"claim": claim, "completions": len(completions)})
        await self._count_claim(claim, completions)

    # --- targets ---------------------------------------------------------------------------
    async def set_target(self, fy: int, agency: str, competency: str, headcount: int, time: datetime, event_id: str) -> None:
        rid = domain.rollup_id(fy, agency, competency)
        entry = {"headcount": headcount, "time": time, "event_id": event_id}
        await _bulk(self.rollups, [UpdateOne({"_id": rid}, {"$setOnInsert": {"fiscal_year": fy, "agency": agency,
                                                                             "competency": competency}}, upsert=True)])
        # History keeps every distinct target event once, ordered by time.
        await self.rollups.update_one(
            {"_id": rid, "target_history.event_id": {"$ne": event_id}},
            {"$push": {"target_history": {"$each": [entry], "$sort": {"time": 1, "event_id": 1}, "$slice": -HISTORY_KEEP}}})
        newer = {"$or": [{"target_time": {"$exists": False}}, {"target_time": {"$lt": time}},
                         {"target_time": time, "target_event": {"$lt": event_id}}]}
        await self.rollups.update_one({"_id": rid, **newer},
                                      {"$set": {"target": headcount, "target_time": time, "target_event": event_id}})

    # --- reads -----------------------------------------------------------------------------
    async def rollup_docs(self, fiscal_years: Sequence[int], agency: str | None = None,
                          competency: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"fiscal_year": {"$in": list(fiscal_years)}}
        if agency:
            query["agency"] = agency
        if competency:
            query["competency"] = competency
        return [d async for d in self.rollups.find(query, {"applied": 0}).sort([("agency", 1), ("competency", 1)])]

    async def hours_by_competency(self) -> dict[str, float]:
        out: dict[str, float] = {}
        async for d in await self.rollups.aggregate([{"$group": {"_id": "$competency", "h": {"$sum": "$passed_hours"}}}]):
            out[d["_id"]] = float(d["h"] or 0)
        return out

    # --- recount ---------------------------------------------------------------------------
    async def recount(self, write: bool = True) -> dict[str, dict[str, Any]]:
        """Recompute every rollup's counters from the raw collections (slow: a full scan, for repair and audit)."""
        figures: dict[str, dict[str, Any]] = {}

        def slot(fy: int, agency: str, comp: str) -> dict[str, Any]:
            return figures.setdefault(domain.rollup_id(fy, agency, comp),
                                      {"completions": 0, "passed_completions": 0, "hours": 0.0, "passed_hours": 0.0,
                                       "ready_learners": 0})

        pipeline = [{"$group": {"_id": {"fy": "$fiscal_year", "a": "$agency", "c": "$competency", "p": "$passed"},
                                "n": {"$sum": 1}, "h": {"$sum": "$hours"}}}]
        async for d in await self.completions.aggregate(pipeline):
            s = slot(d["_id"]["fy"], d["_id"]["a"], d["_id"]["c"])
            s["completions"] += d["n"]
            s["hours"] += d["h"]
            if d["_id"]["p"]:
                s["passed_completions"] += d["n"]
                s["passed_hours"] += d["h"]
        async for d in await self.learners.aggregate([{"$group": {"_id": {"fy": "$fiscal_year", "a": "$agency", "c": "$competency"},
                                                           "n": {"$sum": 1}}}]):
            slot(d["_id"]["fy"], d["_id"]["a"], d["_id"]["c"])["ready_learners"] += d["n"]
        for s in figures.values():
            s["hours"] = round(s["hours"], 4)
            s["passed_hours"] = round(s["passed_hours"], 4)
        if write:
            ops = []
            for rid, s in figures.items():
                fy, agency, comp = rid.split(":")
                ops.append(UpdateOne({"_id": rid}, {"$set": {**s, "fiscal_year": int(fy), "agency": agency, "competency": comp}},
                                     upsert=True))
            await _bulk(self.rollups, ops)
            # Rollups holding only a target keep it; counters of keys without any completion go to zero.
            await self.rollups.update_many({"_id": {"$nin": list(figures)}},
                                           {"$set": {"completions": 0, "passed_completions": 0, "hours": 0.0,
                                                     "passed_hours": 0.0, "ready_learners": 0}})
        return figures

    # --- xAPI statement ids ----------------------------------------------------------------
    async def known_statements(self, ids: Sequence[str]) -> dict[str, str]:
        return {d["_id"]: d["hash"] async for d in self.statements.find({"_id": {"$in": list(ids)}}, {"hash": 1})}

    async def remember_statements(self, docs: Sequence[dict[str, Any]]) -> None:
        await insert_new(self.statements, docs)


async def _bulk(collection, ops: list) -> None:
    if not ops:
        return
    try:
        await collection.bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        # Two writers upserting the same new rollup at once: the loser's insert is a duplicate, the doc exists.
        if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise


def new_claim() -> str:
    return uuid.uuid4().hex


RetryFn = Callable[[], Awaitable[Any]]
