"""MongoDB adapters of the roadmap: milestone documents (facts + derived projection), alert claims,
and the pre-aggregated figures that the summary endpoint and the metrics read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.clock import Clock
from services.common.ledger import Ledger, LedgerStore, Records
from services.common.ledger_mongo import MongoLedgerStore
from services.common.mongo import find_in, insert_if_new
from services.roadmap.domain import Status

MILESTONES = "milestones"
JOURNAL = "roadmap_journal"
AUDIT = "events"  # the platform's audit trail: every event the consumer took, refused ones too

STATS_ID = "current"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Widening look-ahead windows for the next deadline: empty windows cost ~1 ms (index only), so they
# grow by about 2x and the first non-empty one holds few documents (a sort would fetch them all).
_WINDOWS = tuple(timedelta(seconds=s) for s in (60, 600, 3600, 6 * 3600)) + tuple(
    timedelta(days=2 ** k) for k in range(10)) + (timedelta(days=100 * 366),)


_LIST_PROJECTION = {"facts": 0, "timeline": 0, "progress_history": 0, "due_history": 0, "ignored": 0}
_SLIP_PROJECTION = dict.fromkeys(("milestone_id", "title_th", "title_en", "workstream", "owner_agency", "status",
                                  "baseline_due_date", "due_date", "latest_reason"), 1)


@dataclass(frozen=True)
class MilestoneFilter:
    """What a milestone list may be narrowed by (typed values; the repository turns them into a query)."""

    workstream: str | None = None
    owner_agency: str | None = None
    status: str | None = None
    due_before: date | None = None  # inclusive
    due_after: date | None = None  # inclusive
    moved: bool | None = None  # True: the current due date differs from the baseline; False: it does not


def _query(where: MilestoneFilter) -> dict[str, Any]:
    query: dict[str, Any] = {name: value for name in ("workstream", "owner_agency", "status")
                             if (value := getattr(where, name)) is not None}
    due: dict[str, str] = {}
    if where.due_before is not None:
        due["$lte"] = where.due_before.isoformat()  # ISO dates sort as strings
    if where.due_after is not None:
        due["$gte"] = where.due_after.isoformat()
    if due:
        query["due_date"] = due
    if where.moved is not None:
        differs = {"$ne": ["$baseline_due_date", "$due_date"]}
        query["$expr"] = differs if where.moved else {"$not": [differs]}
        if where.moved:  # both dates known (a milestone never planned has neither)
            query.setdefault("due_date", {})["$gte"] = max(query.get("due_date", {}).get("$gte", ""), "")
            query["baseline_due_date"] = {"$gte": ""}
    return query


class MilestoneStore(Protocol):
    """What the roadmap service layer (`RoadmapService`, its watcher and `overview`) needs of the repository:
    `MilestoneRepository` over MongoDB, `tests/fakes_roadmap.py` in memory."""

    # milestones: the batch handler, the watcher and a rebuild write them through the roadmap's ledger
    # (`roadmap_ledger` over `ledger_store`: its journal, and `Ledger.rewrite`, the compare-and-set on `rev`)
    ledger_store: LedgerStore

    async def load_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def audit_events(self, types: Iterable[str]) -> AsyncIterator[dict[str, Any]]:
        """The audit trail's records of these event types (a rebuild replays them)."""

    async def rewrite_audit_records(self, changes: Sequence[tuple[Any, Mapping[str, Any]]]) -> None:
        """Set these fields of these audit records [(`_id`, fields)]: only a one-time upgrade does (`upgrades`)."""

    async def dependants(self, ids: Iterable[str]) -> list[str]: ...

    async def dependencies_of(self, ids: Iterable[str]) -> dict[str, list[str]]: ...

    async def dependency_states(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    async def overdue_open(self, now: datetime, limit: int = 500) -> list[str]: ...

    async def next_deadline(self, now: datetime) -> datetime | None: ...

    async def needing_alerts(self) -> list[dict[str, Any]]: ...

    # alert claims
    async def claim(self, claim: Mapping[str, Any]) -> bool: ...

    async def mark_published(self, alert_id: str, at: datetime) -> None: ...

    async def claimed_ids(self, ids: Iterable[str]) -> set[str]: ...

    async def stale_claims(self, older_than: datetime) -> list[dict[str, Any]]: ...

    async def retake_claim(self, alert_id: str, previous: datetime, now: datetime) -> bool: ...

    # reads of the HTTP routes
    async def find(self, where: MilestoneFilter, *, limit: int, skip: int = 0) -> list[dict[str, Any]]: ...

    async def count(self, where: MilestoneFilter) -> int: ...

    async def schedule_changes(self, owner: str | None) -> list[dict[str, Any]]: ...

    async def get(self, milestone_id: str) -> dict[str, Any] | None: ...

    async def next_due(self, limit: int = 10, owner: str | None = None) -> list[dict[str, Any]]: ...

    # figures and overview snapshots (`overview.py` reads through the service's repository too)
    async def tallies(self) -> list[dict[str, Any]]: ...

    async def missed_due_dates(self) -> list[dict[str, Any]]: ...

    async def count_unknown_dependencies(self) -> int: ...

    async def write_stats(self, stats: Mapping[str, Any]) -> None: ...

    async def read_stats(self) -> dict[str, Any] | None: ...

    async def overview_rows(self) -> list[dict[str, Any]]: ...

    async def list_items(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    async def write_overview_snapshots(self, docs: Mapping[str, Mapping[str, Any]], computed_at: datetime) -> None: ...

    async def read_overview_snapshot(self, owner: str, fields: Sequence[str] | None = None) -> dict[str, Any] | None: ...

    async def overview_tallies(self, owner: str | None, days: Sequence[date]) -> list[dict[str, Any]]: ...

    async def earliest_due(self, status: str, workstream: str, owner: str | None, limit: int) -> list[dict[str, Any]]: ...


def roadmap_ledger(store: LedgerStore, clock: Clock) -> Ledger:
    """The roadmap's journal: every milestone write holds it, so a rebuild (`Ledger.paused`) can stop them and
    replace the milestones at once. No counters: a milestone's facts carry their own keys (idempotent by them)."""
    return Ledger(store, journal=JOURNAL, records=[Records(AUDIT)], books=[], count=lambda kind, new: {}, clock=clock)


class MilestoneRepository:
    def __init__(self, db: AsyncDatabase):
        self.db = db
        self.milestones = db[MILESTONES]
        self.ledger_store = MongoLedgerStore(db)
        self.claims = db.alert_claims
        self.stats = db.roadmap_stats
        self.overview_snapshots = db.roadmap_overview_snapshots
        self.migrations = db.roadmap_migrations  # one-time upgrades done (`run_once`)

    async def ensure_indexes(self) -> None:
        # Few indexes on purpose: every milestone write maintains each of them. `open_deadline` serves
        # the deadline watcher (range queries only: they use the index where a sort may not).
        await self.milestones.create_index([("open_deadline", ASCENDING)], name="open_deadline")
        await self.milestones.create_index([("depends_on", ASCENDING)], name="depends_on")
        await self.milestones.create_index([("status", ASCENDING)], name="status")
        await self.milestones.create_index([("alert_kind", ASCENDING)], name="alert_kind")
        # An agency's page and report read only its milestones (GET /v1/overview?agency=, lists by agency).
        await self.milestones.create_index([("owner_agency", ASCENDING)], name="owner_agency")
        await self.claims.create_index([("state", ASCENDING), ("claimed_at", ASCENDING)], name="state_claimed_at")

    # --- milestones ----------------------------------------------------------------------------
    async def load_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in await find_in(self.milestones, "_id", ids)}

    async def statuses(self, ids: Iterable[str]) -> dict[str, str]:
        return {d["_id"]: d.get("status") for d in await find_in(self.milestones, "_id", ids, {"status": 1})}

    async def audit_events(self, types: Iterable[str]) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.db[AUDIT].find({"type": {"$in": sorted(types)}}, batch_size=5000):
            yield doc

    async def rewrite_audit_records(self, changes: Sequence[tuple[Any, Mapping[str, Any]]]) -> None:
        for start in range(0, len(changes), 1000):
            await self.db[AUDIT].bulk_write([UpdateOne({"_id": _id}, {"$set": dict(fields)})
                                             for _id, fields in changes[start:start + 1000]], ordered=False)

    async def dependants(self, ids: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(d["_id"] for d in await find_in(self.milestones, "depends_on", ids, {"_id": 1})))

    async def dependencies_of(self, ids: Iterable[str]) -> dict[str, list[str]]:
        """The stored edges (current plan's `depends_on`) of these milestones: one level of the graph walk."""
        return {d["_id"]: list(d.get("depends_on") or []) for d in await find_in(self.milestones, "_id", ids, {"depends_on": 1})}

    async def dependency_states(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Status, reasons and risk roots of these milestones: what a dependant's projection reads of them."""
        fields = {"status": 1, "status_reasons": 1, "risk_roots": 1}
        return {d.pop("_id"): d for d in await find_in(self.milestones, "_id", ids, fields)}

    async def count_unknown_dependencies(self) -> int:
        """Milestones with at least one dependency that names no planned milestone (for the summary)."""
        return await self.milestones.count_documents({"unknown_dependencies.0": {"$exists": True}})

    async def overdue_open(self, now: datetime, limit: int = 500) -> list[str]:
        """Milestones still open whose deadline has passed: they have just become missed."""
        # Bounded below: an open-ended range also walks the index's null keys (closed milestones).
        cursor = self.milestones.find({"open_deadline": {"$gte": _EPOCH, "$lte": now}}, {"_id": 1}).limit(limit)
        return [d["_id"] async for d in cursor]

    async def next_deadline(self, now: datetime) -> datetime | None:
        """The earliest open deadline after `now`, looked up in widening windows (indexed ranges)."""
        for window in _WINDOWS:
            docs = [d["open_deadline"] async for d in self.milestones.find(
                {"open_deadline": {"$gt": now, "$lte": now + window}}, {"open_deadline": 1, "_id": 0})]
            if docs:
                return min(docs)
        return None

    async def needing_alerts(self) -> list[dict[str, Any]]:
        """Milestones whose state may call for an alert (the rescan checks their claims)."""
        query = {"alert_kind": {"$gte": ""}}  # any string: a bounded index range, nulls skipped
        return [d async for d in self.milestones.find(query, {"facts": 0, "timeline": 0, "progress_history": 0,
                                                              "due_history": 0})]

    async def find(self, where: MilestoneFilter, *, limit: int, skip: int = 0) -> list[dict[str, Any]]:
        cursor = self.milestones.find(_query(where), {"facts": 0}).sort([("deadline", ASCENDING), ("_id", ASCENDING)])
        return [d async for d in cursor.skip(skip).limit(limit)]

    async def count(self, where: MilestoneFilter) -> int:
        return await self.milestones.count_documents(_query(where))

    async def schedule_changes(self, owner: str | None) -> list[dict[str, Any]]:
        """Every milestone whose due date moved from the baseline (of `owner`), with only what a schedule-change
        row shows: one pass, no sort or count in the database (paging the list took a scan per page)."""
        query = _query(MilestoneFilter(owner_agency=owner, moved=True))
        return await self.milestones.find(query, _SLIP_PROJECTION).to_list(None)

    async def get(self, milestone_id: str) -> dict[str, Any] | None:
        return await self.milestones.find_one({"_id": milestone_id}, {"facts": 0})

    async def next_due(self, limit: int = 10, owner: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"open_deadline": {"$ne": None}}
        if owner is not None:
            query["owner_agency"] = owner
        cursor = self.milestones.find(query,
                                      {"facts": 0, "timeline": 0, "progress_history": 0, "due_history": 0,
                                       "ignored": 0}).sort([("open_deadline", ASCENDING), ("_id", ASCENDING)])
        return [d async for d in cursor.limit(limit)]

    async def tallies(self) -> list[dict[str, Any]]:
        """Per workstream and status: count, weight, on-time weight and weighted progress."""
        pipeline = [
            {"$match": {"workstream": {"$ne": None}}},
            {"$group": {
                "_id": {"workstream": "$workstream", "status": "$status"},
                "count": {"$sum": 1},
                "weight": {"$sum": "$weight"},
                "on_time_weight": {"$sum": {"$cond": [{"$eq": ["$days_late", 0]}, "$weight", 0]}},
                "progress_weight": {"$sum": {"$multiply": ["$weight", "$percent_complete"]}},
            }},
        ]
        return [d async for d in await self.milestones.aggregate(pipeline)]

    async def overview_tallies(self, owner: str | None, days: Sequence[date]) -> list[dict[str, Any]]:
        """Per workstream and status (of `owner`'s milestones; None: all): the count, and `overdue_<i>`, how
        many had a due date before `days[i]` and were not completed by the end of that day. One pass in the
        database: a page shows these figures without reading the milestones themselves."""
        group: dict[str, Any] = {"_id": {"workstream": "$workstream", "status": "$status"}, "count": {"$sum": 1}}
        for i, day in enumerate(days):
            d = day.isoformat()  # ISO dates compare as strings; a missing date sorts below "" (no date)
            group[f"overdue_{i}"] = {"$sum": {"$cond": [{"$and": [
                {"$gte": ["$due_date", ""]}, {"$lt": ["$due_date", d]},
                {"$not": [{"$and": [{"$gte": ["$completed_on", ""]}, {"$lte": ["$completed_on", d]}]}]}]}, 1, 0]}}
        pipeline = [{"$match": {"workstream": {"$ne": None}, **({"owner_agency": owner} if owner else {})}},
                    {"$group": group}]
        return [d async for d in await self.milestones.aggregate(pipeline)]

    async def earliest_due(self, status: str, workstream: str, owner: str | None, limit: int) -> list[dict[str, Any]]:
        """Milestones of one status and workstream, earliest current due date first (the longest overdue
        of the missed, the most urgent of the at-risk), at most `limit`, without their histories."""
        if limit <= 0:  # a zero limit would mean "no limit" to the driver
            return []
        query = {"status": status, "workstream": workstream, **({"owner_agency": owner} if owner else {})}
        cursor = self.milestones.find(query, _LIST_PROJECTION).sort([("due_date", ASCENDING), ("_id", ASCENDING)])
        return [d async for d in cursor.limit(limit)]

    async def missed_due_dates(self) -> list[dict[str, Any]]:
        return [d async for d in self.milestones.find({"status": Status.missed.value},
                                                      {"workstream": 1, "due_date": 1, "weight": 1})]

    # --- pre-aggregated figures ----------------------------------------------------------------
    async def overview_rows(self) -> list[dict[str, Any]]:
        """Every milestone with a workstream, as the overview snapshot reads it (the few fields it counts by)."""
        cursor = self.milestones.find({"workstream": {"$ne": None}}, {"owner_agency": 1, "workstream": 1, "status": 1,
                                                                      "due_date": 1, "completed_on": 1,
                                                                      "open_deadline": 1})
        return await cursor.to_list(None)

    async def list_items(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Milestones by id, as lists show them (without their histories)."""
        return {d["_id"]: d for d in await find_in(self.milestones, "_id", ids, _LIST_PROJECTION)}

    async def write_overview_snapshots(self, docs: Mapping[str, Mapping[str, Any]], computed_at: datetime) -> None:
        """Replace the snapshots (one per owner, `*` for all) with these, each unless a newer one was written
        meanwhile: replicas refresh independently, and the latest computation wins, never a slower older one."""
        for owner, doc in docs.items():
            try:
                await self.overview_snapshots.replace_one({"_id": owner, "computed_at": {"$lte": computed_at}},
                                                          {"_id": owner, **doc, "computed_at": computed_at},
                                                          upsert=True)
            except DuplicateKeyError:  # a newer snapshot of this owner is stored
                continue
        # An owner that no longer has milestones: its older snapshot goes (the live count then answers: none).
        await self.overview_snapshots.delete_many({"_id": {"$nin": list(docs)}, "computed_at": {"$lt": computed_at}})

    async def read_overview_snapshot(self, owner: str, fields: Sequence[str] | None = None) -> dict[str, Any] | None:
        return await self.overview_snapshots.find_one({"_id": owner}, dict.fromkeys(fields, 1) if fields else None)

    async def write_stats(self, stats: Mapping[str, Any]) -> None:
        await self.stats.replace_one({"_id": STATS_ID}, {"_id": STATS_ID, **stats}, upsert=True)

    async def read_stats(self) -> dict[str, Any] | None:
        return await self.stats.find_one({"_id": STATS_ID})

    # --- alert claims ----------------------------------------------------------------------------
    async def claim(self, claim: Mapping[str, Any]) -> bool:
        """Insert the claim with the alert's deterministic id; False if another replica holds it."""
        return await insert_if_new(self.claims, dict(claim))

    async def mark_published(self, alert_id: str, at: datetime) -> None:
        await self.claims.update_one({"_id": alert_id}, {"$set": {"state": "published", "published_at": at}})

    async def claimed_ids(self, ids: Iterable[str]) -> set[str]:
        return {d["_id"] for d in await find_in(self.claims, "_id", ids, {"_id": 1})}

    async def stale_claims(self, older_than: datetime) -> list[dict[str, Any]]:
        cursor = self.claims.find({"state": "claimed", "claimed_at": {"$lte": older_than}}).sort("claimed_at", DESCENDING)
        return [d async for d in cursor.limit(500)]

    async def retake_claim(self, alert_id: str, previous: datetime, now: datetime) -> bool:
        """Take over a stale claim (compare-and-set on its time) so one replica republishes it."""
        result = await self.claims.update_one({"_id": alert_id, "state": "claimed", "claimed_at": previous},
                                              {"$set": {"claimed_at": now}})
        return result.modified_count == 1
