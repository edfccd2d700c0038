"""MongoDB repository of the training service: completions, learners, readiness rollups, xAPI statement ids.

Counting guarantee (at-least-once delivery, exactly-once counting):

1. A claim document (`training_claims`, random id, `done: false`) is written, then completions are inserted
   unordered with `_id` = source + \x1f + id (unique by construction), each stamped with that claim. A duplicate keeps its original
   claim, so every completion belongs to exactly one claim for ever.
2. For the newly inserted passed completions, `learner_competency` docs (`_id` = fy:agency:competency:
   learner_hash, unique) are inserted with the same claim. A learner already ready keeps its first doc.
3. The rollup increments of a claim are computed from exactly the docs carrying that claim, and each
   rollup `$inc` is guarded by `applied != claim` with the claim pushed into a short `applied` list in the
   same atomic update: applying a claim twice changes nothing.
4. The claim document is marked `done`.

A crash between any two steps leaves the claim open; it is finished by redoing 2-4 from the docs that
carry the claim, which gives the same increments: by the same process on its next batch (the handler
failed, so nothing else runs it), and by anyone (startup, every batch, a background sweep) once it is
older than `stale_claim_seconds`. The rollups therefore always equal `recount()` once no claim is
pending. Targets are idempotent by themselves (history entry guarded by event id; the current target is
the one with the latest (time, id)).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock
from services.common.mongo import bulk_write_or_duplicates, insert_new
from services.training import domain

log = logging.getLogger(__name__)
APPLIED_KEEP = 64  # claims remembered per rollup doc; far more than can be in flight at once
HISTORY_KEEP = 100


class TrainingRepository:
    def __init__(self, db: AsyncDatabase, clock: Clock, stale_claim_seconds: float = 300.0):
        self.db = db
        self.clock = clock
        self.stale = timedelta(seconds=stale_claim_seconds)
        self.completions = db.training_completions
        self.learners = db.training_learner_competency
        self.rollups = db.training_readiness
        self.statements = db.training_xapi_statements
        self.claims = db.training_claims
        self.voids = db.training_voids  # completion _id -> the retraction that voided it (arrived first or later)
        self._known_rollups: set[str] = set()
        # Test hook: called with a stage name; raising there simulates a crash at that point.
        self.fault: Callable[[str], None] | None = None

    async def ensure_indexes(self) -> None:
        # Uniqueness of (source, id) is the `_id` itself (source + US + id): no second unique index to maintain.
        # No index on `claim`: the claim document lists its completion ids, so recovery reads by _id.
        await self.claims.create_index([("done", ASCENDING), ("at", ASCENDING)], name="open")
        # Finished claims are only needed while a redelivery could still refer to them.
        await self.claims.create_index([("done_at", ASCENDING)], name="done_ttl", expireAfterSeconds=7 * 86400)
        await self.rollups.create_index([("fiscal_year", ASCENDING), ("agency", ASCENDING)], name="fy_agency")
        # A retraction asks "does this learner have another counted pass in this fy x competency?".
        await self.completions.create_index([("learner_hash", ASCENDING), ("fiscal_year", ASCENDING)], name="learner")
        # The readable LRS: GET /xapi/statements pages an agency's statements by (stored, _id).
        await self.statements.create_index([("agency", ASCENDING), ("stored", ASCENDING), ("_id", ASCENDING)],
                                           name="agency_stored")
        await self.statements.create_index([("voids", ASCENDING)], name="voids", sparse=True)
        # StatementRef filter-through: a target's arrival finds its referrers by `ref`; filters match `ref_keys`.
        await self.statements.create_index([("ref", ASCENDING)], name="ref", sparse=True)
        await self.statements.create_index([("ref_keys", ASCENDING)], name="ref_keys", sparse=True)

    def _stage(self, name: str) -> None:
        if self.fault is not None:
            self.fault(name)

    # --- completions -----------------------------------------------------------------------
    async def add_completions(self, docs: Sequence[dict[str, Any]], claim: str) -> int:
        """Store completions (all stamped with `claim`) and count the new ones; returns how many were new."""
        if not docs:
            return 0
        await self.claims.insert_one({"_id": claim, "done": False, "at": self.clock(),
                                      "completions": [d["_id"] for d in docs]})
        voided = {d["_id"] async for d in self.voids.find({"_id": {"$in": [d["_id"] for d in docs]}}, {"_id": 1})}
        if voided:  # retracted before it arrived: stored for the record, never counted
            docs = [{**d, "voided": True, "void_claim": "before_arrival"} if d["_id"] in voided else d for d in docs]
        inserted = await insert_new(self.completions, docs)
        new = [docs[i] for i in inserted]
        self._stage("after_completions")
        await self._count_claim(claim, new, recovering=False)
        return len(new)

    async def _count_claim(self, claim: str, new_completions: Sequence[dict[str, Any]], recovering: bool) -> None:
        now = self.clock()
        candidate = {}
        for c in new_completions:  # one doc per learner x competency x fy even when the batch has several
            if c["passed"] and not c.get("voided"):
                doc = domain.learner_doc(c, claim, now)
                candidate.setdefault(doc["_id"], doc)
        learner_docs = list(candidate.values())
        inserted = await insert_new(self.learners, learner_docs)
        revived = await self._revive(learner_docs, inserted, claim)
        if recovering and learner_docs:
            # The claim's learners are the stored docs carrying this claim (a first run may have inserted them).
            mine = [d async for d in self.learners.find({"_id": {"$in": list(candidate)}, "claim": claim,
                                                         "gone": {"$exists": False}},
                                                        {"fiscal_year": 1, "agency": 1, "competency": 1})]
        else:
            mine = [learner_docs[i] for i in inserted] + revived
        self._stage("after_learners")
        await self._apply(claim, domain.deltas(new_completions, mine))
        self._stage("after_rollups")
        await self.claims.update_one({"_id": claim}, {"$set": {"done": True, "done_at": now}})

    async def _revive(self, learner_docs: Sequence[dict[str, Any]], inserted: Sequence[int],
                      claim: str) -> list[dict[str, Any]]:
        """A learner whose counted passes were all voided (`gone`) is ready again with this claim's new pass."""
        revived: list[dict[str, Any]] = []
        taken = set(inserted)
        dup = {d["_id"]: d for i, d in enumerate(learner_docs) if i not in taken}
        if not dup:
            return revived
        async for doc in self.learners.find({"_id": {"$in": list(dup)}, "gone": {"$exists": True}}, {"_id": 1}):
            new = dup[doc["_id"]]
            result = await self.learners.update_one({"_id": doc["_id"], "gone": {"$exists": True}},
                                                    {"$unset": {"gone": ""}, "$set": {"claim": claim,
                                                     "first_completion": new["first_completion"]}})
            if result.modified_count:
                revived.append(new)
        return revived

    # --- retractions -------------------------------------------------------------------------
    async def void_completions(self, refs: Sequence[tuple[str, str]], claim: str) -> int:
        """Treat the completions `refs` [(completion _id, retraction key)] as never sent, exactly once: each is
        marked voided by one claim only, and that claim's decrements are guarded like increments. A retraction
        that arrives before its completion is remembered (`training_voids`) and the completion is then stored
        voided. Returns how many stored completions this call voided."""
        if not refs:
            return 0
        now = self.clock()
        await insert_new(self.voids, [{"_id": cid, "by": by, "at": now} for cid, by in refs])
        ids = sorted({cid for cid, _ in refs})
        await self.claims.insert_one({"_id": claim, "done": False, "at": now, "voids": ids})
        return await self._void_claim(claim, ids)

    async def _void_claim(self, claim: str, ids: Sequence[str]) -> int:
        await self.completions.update_many({"_id": {"$in": list(ids)}, "voided": {"$ne": True}},
                                           {"$set": {"voided": True, "void_claim": claim}})
        gone = [d async for d in self.completions.find({"_id": {"$in": list(ids)}, "void_claim": claim})]
        self._stage("after_void_completions")
        learner_ids = []
        for c in gone:
            if not c["passed"]:
                continue
            lid = domain.learner_competency_id(c["fiscal_year"], c["agency"], c["competency"], c["learner_hash"])
            learner_ids.append(lid)
            other = await self.completions.find_one({"learner_hash": c["learner_hash"], "fiscal_year": c["fiscal_year"],
                                                     "agency": c["agency"], "competency": c["competency"],
                                                     "passed": True, "voided": {"$ne": True}}, {"_id": 1})
            if other is None:
                await self.learners.update_one({"_id": lid, "gone": {"$exists": False}}, {"$set": {"gone": claim}})
            else:
                await self.learners.update_one({"_id": lid, "first_completion": c["_id"]},
                                               {"$set": {"first_completion": other["_id"]}})
        lost = [d async for d in self.learners.find({"_id": {"$in": learner_ids}, "gone": claim},
                                                    {"fiscal_year": 1, "agency": 1, "competency": 1})]
        self._stage("after_void_learners")
        await self._apply(claim, domain.negated(domain.deltas([{**c, "voided": False} for c in gone], lost)))
        self._stage("after_void_rollups")
        await self.claims.update_one({"_id": claim}, {"$set": {"done": True, "done_at": self.clock()}})
        return len(gone)

    async def _apply(self, claim: str, deltas: dict[str, domain.Delta]) -> None:
        if not deltas:
            return
        ensure = []
        guarded = []
        for rid, delta in deltas.items():
            fy, agency, competency = rid.split(":")
            if rid not in self._known_rollups:
                ensure.append(UpdateOne({"_id": rid}, {"$setOnInsert": {"fiscal_year": int(fy), "agency": agency,
                                                                        "competency": competency}}, upsert=True))
            guarded.append(UpdateOne({"_id": rid, "applied": {"$ne": claim}},
                                     {"$inc": delta.as_inc(),
                                      "$push": {"applied": {"$each": [claim], "$slice": -APPLIED_KEEP}}}))
        await _bulk(self.rollups, ensure)
        self._known_rollups.update(deltas)  # rollup docs are never deleted: no need to upsert them again
        await _bulk(self.rollups, guarded)

    async def finish_stale_claims(self, older_than: timedelta | None = None) -> int:
        """Finish claims of crashed batches (same increments, guarded); returns how many claims were finished."""
        cutoff = self.clock() - (self.stale if older_than is None else older_than)
        claims = [d["_id"] async for d in self.claims.find({"done": False, "at": {"$lte": cutoff}}, {"_id": 1})]
        for claim in sorted(claims):
            await self.finish_claim(claim)
        return len(claims)

    async def finish_claim(self, claim: str) -> None:
        """Redo steps 2-4 for one claim from its stored completions (harmless if it was already finished)."""
        doc = await self.claims.find_one({"_id": claim}, {"completions": 1, "voids": 1})
        if doc and "voids" in doc:
            log.warning("finishing an interrupted retraction", extra={"claim": claim, "completions": len(doc["voids"])})
            await self._void_claim(claim, doc["voids"])
            return
        ids = doc["completions"] if doc else []
        completions = [d async for d in self.completions.find({"_id": {"$in": ids}, "claim": claim})]
        log.warning("finishing an interrupted counting batch", extra={"claim": claim, "completions": len(completions)})
        await self._count_claim(claim, completions, recovering=True)

    # --- targets ---------------------------------------------------------------------------
    async def set_target(self, fy: int, agency: str, competency: str, headcount: int, time: datetime, event_id: str) -> None:
        rid = domain.rollup_id(fy, agency, competency)
        time = domain.bson_time(time)
        entry = {"headcount": headcount, "time": time, "event_id": event_id}
        await _bulk(self.rollups, [UpdateOne({"_id": rid}, {"$setOnInsert": {"fiscal_year": fy, "agency": agency,
                                                                             "competency": competency}}, upsert=True)])
        # History keeps every distinct target event once, ordered by time.
        await self.rollups.update_one(
            {"_id": rid, "target_history.event_id": {"$ne": event_id}},
            {"$push": {"target_history": {"$each": [entry], "$sort": {"time": 1, "event_id": 1}, "$slice": -HISTORY_KEEP}}})
        # Compare-and-set with the pure rule (domain.target_is_newer): read the current (time, id), decide,
        # and write only if nobody changed it meanwhile.
        for _ in range(20):
            doc = await self.rollups.find_one({"_id": rid}, {"target_time": 1, "target_event": 1})
            current = (doc["target_time"], doc["target_event"]) if doc and "target_time" in doc else None
            if not domain.target_is_newer((time, event_id), current):
                return
            cas = ({"_id": rid, "target_time": current[0], "target_event": current[1]} if current
                   else {"_id": rid, "target_time": {"$exists": False}})
            result = await self.rollups.update_one(cas, {"$set": {"target": headcount, "target_time": time,
                                                                  "target_event": event_id}})
            if result.matched_count:
                return
        raise RuntimeError(f"target of {rid} kept changing under us")

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

        pipeline = [{"$match": {"voided": {"$ne": True}}}, {"$group": {"_id": {"fy": "$fiscal_year", "a": "$agency", "c": "$competency", "p": "$passed"},
                                "n": {"$sum": 1}, "h": {"$sum": "$hours"}}}]
        async for d in await self.completions.aggregate(pipeline):
            s = slot(d["_id"]["fy"], d["_id"]["a"], d["_id"]["c"])
            s["completions"] += d["n"]
            s["hours"] += d["h"]
            if d["_id"]["p"]:
                s["passed_completions"] += d["n"]
                s["passed_hours"] += d["h"]
        async for d in await self.learners.aggregate([{"$match": {"gone": {"$exists": False}}}, {"$group": {"_id": {"fy": "$fiscal_year", "a": "$agency", "c": "$competency"},
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

    # --- xAPI statements ---------------------------------------------------------------------
    # One doc per statement id (`_id`): inserting it is THE decision between concurrent requests of one id.
    # state `pending` until Kafka acknowledged the statement's event, then `stored` (only those are readable).
    async def reserve_statements(self, docs: Sequence[dict[str, Any]]) -> list[int]:
        return await insert_new(self.statements, docs)

    async def statement_docs(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d async for d in self.statements.find({"_id": {"$in": list(ids)}})}

    async def release_statements(self, ids: Sequence[str], token: str) -> None:
        """Undo this request's reservations (its batch was refused after all); never another request's."""
        await self.statements.delete_many({"_id": {"$in": list(ids)}, "token": token, "state": "pending"})

    async def mark_stored(self, ids: Sequence[str]) -> None:
        await self.statements.update_many({"_id": {"$in": list(ids)}, "state": "pending"}, {"$set": {"state": "stored"}})

    async def mark_voided(self, ids: Sequence[str]) -> None:
        if ids:
            await self.statements.update_many({"_id": {"$in": list(ids)}, "voiding": {"$ne": True}},
                                              {"$set": {"voided": True}})

    async def voided_among(self, ids: Sequence[str]) -> list[str]:
        """Which of `ids` a stored voiding statement already names (the voiding one arrived first)."""
        return [d["voids"] async for d in self.statements.find({"voids": {"$in": list(ids)}, "state": "stored"},
                                                                 {"voids": 1})]

    async def add_ref_keys(self, ids: Sequence[str], keys: Sequence[str]) -> None:
        if ids and keys:
            await self.statements.update_many({"_id": {"$in": list(ids)}},
                                              {"$addToSet": {"ref_keys": {"$each": list(keys)}}})

    async def referrers(self, ids: Sequence[str], agency: str) -> list[dict[str, Any]]:
        """`_id` and `ref` of the agency's statements whose object is a StatementRef to one of `ids`."""
        return [d async for d in self.statements.find({"ref": {"$in": list(ids)}, "agency": agency},
                                                          {"ref": 1})]

    async def find_statements(self, query: dict[str, Any], ascending: bool, limit: int) -> list[dict[str, Any]]:
        order = ASCENDING if ascending else -1
        cursor = self.statements.find(query).sort([("stored", order), ("_id", order)]).limit(limit)
        return [d async for d in cursor]


async def _bulk(collection, ops: list) -> None:
    # Two writers upserting the same new rollup at once: the loser's insert is a duplicate, the doc exists.
    await bulk_write_or_duplicates(collection, ops)


def new_claim() -> str:
    return uuid.uuid4().hex
