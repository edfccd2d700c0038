"""MongoDB repository of the training service: completions, retractions, readiness rollups, xAPI statement ids.

Counting guarantee (at-least-once delivery, exactly-once counting): completions and their retractions are the
records of the platform's one write path (`services.common.ledger`, journal `training_journal`); a completion is its
event's audit record (the consumer leaves that write to this repository), and what they add up to flows through
three books (`domain.count`, `domain.state_contributes`, `domain.learner_contributes`):

- one state per completion (`training_completion_state`): stored, voided, whichever came first; while live it adds
  itself to its readiness rollup and, when passed, a live pass to its learner;
- one document per learner x competency x fiscal year (`training_learner_competency`): live passes; while it has
  one, one ready learner;
- the readiness rollups (`training_readiness`), which also hold the targets (set by their own compare-and-set).

So a learner is counted once however many courses they pass, a retraction takes a completion (and, with its last
pass, the learner) back out exactly once, in either order of arrival, and a new pass makes them ready again. A write
interrupted by a crash is finished by the same process at its next batch, or by any replica's sweep once it is
older than `stale_claim_seconds`; the rollups then equal `recount()`. Targets are idempotent by themselves (history
entry guarded by event id; the current target is the one with the latest (time, id)).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock
from services.common.ledger import Book, Ledger, LedgerStore, Records
from services.common.ledger_mongo import MongoLedgerStore
from services.common.migrations import run_once
from services.common.mongo import bulk_write_or_duplicates, insert_new
from services.contracts.events import TRAINING_COURSE_COMPLETED
from services.training import domain, xapi

log = logging.getLogger(__name__)
APPLIED_KEEP = 64  # tokens remembered per counter document; far more than can be in flight at once
JOURNAL = "training_journal"
MIGRATION_ID = "audit_records"  # the one-time rebuild of a database whose completions were kept apart


class ReadinessStore(Protocol):
    """What `TrainingService` needs of the repository: `TrainingRepository` over MongoDB, `tests/fakes_training.py`
    in memory."""

    async def add_completions(self, records: Sequence[dict[str, Any]]) -> set[tuple[str, str]]: ...

    async def void_completions(self, refs: Sequence[tuple[str, str]]) -> int: ...

    async def set_target(self, fy: int, agency: str, competency: str, headcount: int, time: datetime,
                         event_id: str) -> None: ...

    async def rollup_docs(self, fiscal_years: Sequence[int], agency: str | None = None,
                          competency: str | None = None) -> list[dict[str, Any]]: ...


class StatementStore(Protocol):
    """What `XapiIntake` needs of the repository (the LRS's statements): `TrainingRepository` over MongoDB,
    `tests/fakes_training.py` in memory."""

    async def reserve_statements(self, docs: Sequence[dict[str, Any]]) -> list[int]: ...

    async def statement_docs(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    async def release_statements(self, ids: Sequence[str], token: str) -> None: ...

    async def mark_stored(self, ids: Sequence[str]) -> None: ...

    async def mark_voided(self, ids: Sequence[str]) -> None: ...

    async def voided_among(self, ids: Sequence[str]) -> list[str]: ...

    async def add_ref_keys(self, ids: Sequence[str], keys: Sequence[str]) -> None: ...

    async def referrers(self, ids: Sequence[str], agency: str) -> list[dict[str, Any]]: ...

    async def stored_statements(self, agency: str | None, conditions: Mapping[str, list[str]], *,
                                since: datetime | None, until: datetime | None, after: tuple[datetime, str] | None,
                                ascending: bool, limit: int) -> list[dict[str, Any]]: ...


def counting_ledger(store: LedgerStore, clock: Clock, lease: timedelta | None = None) -> Ledger:
    """The training write path over a store (MongoDB in the service, in memory in unit tests)."""
    completions = Records(domain.COMPLETIONS, select={"type": TRAINING_COURSE_COMPLETED},
                          projection=domain.COMPLETION_PROJECTION)
    return Ledger(store, journal=JOURNAL, records=[completions, Records(domain.VOIDS)],
                  books=[Book(domain.STATES, domain.state_contributes, identity=domain.STATE_KEYS, insert_first=True),
                         Book(domain.LEARNERS, domain.learner_contributes, identity=domain.ROLLUP_KEYS),
                         Book(domain.ROLLUPS, digits=4, kept=domain.ROLLUP_KEPT)],
                  count=domain.count, clock=clock, keep=APPLIED_KEEP, lease=lease)


async def set_target(ledger: Ledger, fy: int, agency: str, competency: str, headcount: int, time: datetime,
                     event_id: str) -> None:
    """A target event into its rollup document: the ledger's one compare-and-set (the counters written meanwhile
    are kept), holding the journal like a write (a rebuild, which keeps targets, waits for it)."""
    rid = domain.rollup_id(fy, agency, competency)

    async def derive(found: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
        return {rid: domain.with_target(found[rid], fy, agency, competency, headcount, time, event_id)}

    await ledger.rewrite(domain.ROLLUPS, [rid], derive)


class TrainingRepository:
    def __init__(self, db: AsyncDatabase, clock: Clock, stale_claim_seconds: float = 300.0,
                 store: LedgerStore | None = None):
        self.db = db
        self.clock = clock
        self.grace = timedelta(seconds=stale_claim_seconds)
        self.events = db[domain.COMPLETIONS]  # the audit trail: completions are its records
        self.legacy_completions = db[domain.LEGACY_COMPLETIONS]
        self.voids = db[domain.VOIDS]  # completion _id -> the retraction that voided it (arrived first or later)
        self.states = db[domain.STATES]
        self.learners = db[domain.LEARNERS]
        self.rollups = db[domain.ROLLUPS]
        self.statements = db.training_xapi_statements
        self.journal = db[JOURNAL]
        self.migrations = db.training_migrations
        # A write stops at half the grace period after which a sweep may finish it: the sweep never races it.
        self.ledger = counting_ledger(store or MongoLedgerStore(db), clock, lease=self.grace / 2)

    async def ensure_indexes(self) -> None:
        # Uniqueness of (source, id) is the `_id` itself (source + US + id): no second unique index to maintain.
        await self.rollups.create_index([("fiscal_year", ASCENDING), ("agency", ASCENDING)], name="fy_agency")
        # The readable LRS: GET /xapi/statements pages an agency's statements by (stored, _id).
        await self.statements.create_index([("agency", ASCENDING), ("stored", ASCENDING), ("_id", ASCENDING)],
                                           name="agency_stored")
        await self.statements.create_index([("voids", ASCENDING)], name="voids", sparse=True)
        # StatementRef filter-through: a target's arrival finds its referrers by `ref`; filters match `ref_keys`.
        await self.statements.create_index([("ref", ASCENDING)], name="ref", sparse=True)
        await self.statements.create_index([("ref_keys", ASCENDING)], name="ref_keys", sparse=True)

    async def migrate(self, wait: timedelta = timedelta(minutes=10)) -> bool:
        """The one-time upgrade of a database whose completions were kept apart from their audit records
        (LEGACY_COMPLETIONS; with or without completion states): the books are rebuilt from the audit records,
        which always held every completion (the consumer stored each event's record before its handler ran), and
        the old collection is dropped; the rebuild clears the old version's journal entries. One replica rebuilds,
        the others wait for it (`run_once`). True if this call rebuilt them."""

        async def rebuild() -> None:
            log.warning("rebuilding the training counts from the audit records (one-time upgrade)")
            await self.ledger.recount()
            await self.legacy_completions.drop()

        async def legacy_held() -> bool:
            return await self.legacy_completions.find_one({}, {"_id": 1}) is not None

        return await run_once(self.migrations, MIGRATION_ID, rebuild, needed=legacy_held, clock=self.clock, wait=wait)

    # --- completions and retractions (the write path) -------------------------------------------------------
    async def add_completions(self, records: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
        """Store completion records (their events' audit documents) and count the new ones exactly once; returns
        the (source, id) keys stored for the first time."""
        new = await self.ledger.write(records, domain.COMPLETIONS)
        return {(d["source"], d["id"]) for d in new}

    async def void_completions(self, refs: Sequence[tuple[str, str]]) -> int:
        """Treat the completions `refs` [(completion _id, retraction key)] as never sent, exactly once, whether they
        arrived before or arrive later. Returns how many retractions were new."""
        if not refs:
            return 0
        now = self.clock()
        return len(await self.ledger.write([domain.void_doc(cid, by, now) for cid, by in refs], domain.VOIDS))

    async def sweep(self, grace: timedelta | None = None) -> int:
        """Finish the writes interrupted at least `grace` (default `stale_claim_seconds`) ago; returns how many."""
        return await self.ledger.sweep(self.grace if grace is None else grace)

    # --- targets ---------------------------------------------------------------------------
    async def set_target(self, fy: int, agency: str, competency: str, headcount: int, time: datetime, event_id: str) -> None:
        await set_target(self.ledger, fy, agency, competency, headcount, time, event_id)

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
    async def recount(self, write: bool = True, progress: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
        """Every rollup's counters computed afresh from the stored completions and retractions (a full scan, for
        repair and audit); with `write`, the books are rebuilt from them (targets kept) while the service runs
        (`Ledger.rebuild`: writes wait meanwhile)."""
        if write:
            computed = await self.ledger.rebuild(self.grace, progress=progress)
        else:
            computed = await self.ledger.recount_deltas(progress=progress)
        return {rid: domain.rollup_figures(delta) for rid, delta in computed[domain.ROLLUPS].items()}

    async def differences(self) -> list[str]:
        """Counter documents that differ from a full recount (empty: exact)."""
        return await self.ledger.differences()

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

    async def stored_statements(self, agency: str | None, conditions: Mapping[str, list[str]], *,
                                since: datetime | None, until: datetime | None, after: tuple[datetime, str] | None,
                                ascending: bool, limit: int) -> list[dict[str, Any]]:
        """A page of readable statements (stored, not voided), of `agency` or all, ordered by (stored, _id):
        those meeting `conditions` (field -> accepted values) themselves or through a statement they target
        (`xapi.filter_through`), stored in (since, until], after the keyset `after` (the previous page's last)."""
        query: dict[str, Any] = {"state": "stored", "statement": {"$exists": True}, "voided": {"$ne": True}}
        if agency is not None:
            query["agency"] = agency
        if conditions:
            query["$or"] = xapi.filter_through(dict(conditions))
        stored: dict[str, Any] = {}
        if since is not None:
            stored["$gt"] = since
        if until is not None:
            stored["$lte"] = until
        if stored:
            query["stored"] = stored
        if after is not None:  # keyset paging on (stored, _id)
            op = "$gt" if ascending else "$lt"
            query = {"$and": [query, {"$or": [{"stored": {op: after[0]}}, {"stored": after[0], "_id": {op: after[1]}}]}]}
        order = ASCENDING if ascending else -1
        cursor = self.statements.find(query).sort([("stored", order), ("_id", order)]).limit(limit)
        return [d async for d in cursor]


async def _bulk(collection, ops: list) -> None:
    # Two writers upserting the same new rollup at once: the loser's insert is a duplicate, the doc exists.
    await bulk_write_or_duplicates(collection, ops)
