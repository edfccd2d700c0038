"""In-memory `services.roadmap.adapters.MilestoneStore` and an alert publisher, that fail on demand (the roadmap
service layer, its watcher and its figures without servers).

`fail_next` makes the next store call (or, with `fail_on`, the next call of that method) raise before it does
anything (the database unreachable); `called` records every call by name.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from fail_on_demand import FailOnDemand
from ledger_fakes import MemoryLedgerStore

from services.roadmap.adapters import MilestoneFilter

_HISTORIES = ("facts", "timeline", "progress_history", "due_history", "ignored")


class MilestonesAndJournal(MemoryLedgerStore):
    """The roadmap ledger's store over a FakeRepo: the milestones are the repo's (its calls counted, failing on
    demand), the journal and its pause in memory."""

    def __init__(self, repo: FakeRepo):
        super().__init__()
        self.repo = repo

    async def read(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await self.repo.read(collection, ids)

    async def write_revisions(self, collection: str, docs: Sequence[tuple[int | None, dict[str, Any]]]) -> list[int]:
        return await self.repo.write_revisions(collection, docs)

    async def find(self, collection: str, query: Mapping[str, Any], batch_size: int,
                   projection: Mapping[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        if collection != "milestones":
            return await super().find(collection, query, batch_size, projection)
        return self.repo.scan(query)

    async def replace_all(self, collection: str, docs: Sequence[dict[str, Any]]) -> None:
        await self.repo.replace_all(collection, docs)

    async def patch(self, collection: str, docs: Sequence[dict[str, Any]], removed: Sequence[Any]) -> None:
        await self.repo.patch(collection, docs, removed)


class FakeRepo(FailOnDemand):
    """`MilestoneRepository` in memory: documents and claims by `_id`, compare-and-set on `rev`."""

    def __init__(self) -> None:
        self.ledger_store = MilestonesAndJournal(self)
        self.audit: list[dict[str, Any]] = []  # the audit trail's records, as the consumer stores them
        self.docs: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, Any] | None = None
        self.snapshots: dict[str, dict[str, Any]] = {}

    # --- milestones --------------------------------------------------------------------------------------------
    async def load_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        self._call("load_many")
        return {i: copy.deepcopy(self.docs[i]) for i in set(ids) if i in self.docs}

    async def read(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self._call("read")
        assert collection == "milestones"
        return {i: copy.deepcopy(self.docs[i]) for i in set(ids) if i in self.docs}

    async def write_revisions(self, collection: str, docs: Sequence[tuple[int | None, dict[str, Any]]]) -> list[int]:
        self._call("write_revisions")
        written = []
        for i, (expected, d) in enumerate(docs):
            stored = self.docs.get(d["_id"])
            if stored is None or (expected is not None and stored.get("rev", 0) == expected):
                self.docs[d["_id"]] = copy.deepcopy(dict(d))
                written.append(i)
        return written

    async def scan(self, query: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self._call("scan")
        for doc in list(self.docs.values()):
            if all(doc.get(k) == v for k, v in query.items()):
                yield copy.deepcopy(doc)

    async def replace_all(self, collection: str, docs: Sequence[dict[str, Any]]) -> None:
        self._call("replace_all")
        assert collection == "milestones"
        self.docs = {d["_id"]: copy.deepcopy(dict(d)) for d in docs}

    async def patch(self, collection: str, docs: Sequence[dict[str, Any]], removed: Sequence[Any]) -> None:
        self._call("patch")
        assert collection == "milestones"
        for d in docs:
            self.docs[d["_id"]] = copy.deepcopy(dict(d))
        for doc_id in removed:
            self.docs.pop(doc_id, None)

    async def audit_events(self, types: Iterable[str]) -> AsyncIterator[dict[str, Any]]:
        wanted = set(types)
        for doc in list(self.audit):
            if doc["type"] in wanted:
                yield copy.deepcopy(doc)

    async def rewrite_audit_records(self, changes: Sequence[tuple[Any, Mapping[str, Any]]]) -> None:
        fields = dict(changes)
        for doc in self.audit:
            doc.update(copy.deepcopy(dict(fields.get(doc["_id"], {}))))

    async def dependants(self, ids: Iterable[str]) -> list[str]:
        self._call("dependants")
        wanted = set(ids)
        return [i for i, d in self.docs.items() if wanted & set(d.get("depends_on", []))]

    async def dependencies_of(self, ids: Iterable[str]) -> dict[str, list[str]]:
        self._call("dependencies_of")
        return {i: list(self.docs[i].get("depends_on", [])) for i in set(ids) if i in self.docs}

    async def dependency_states(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        self._call("dependency_states")
        return {i: {k: self.docs[i][k] for k in ("status", "status_reasons", "risk_roots") if k in self.docs[i]}
                for i in set(ids) if i in self.docs}

    async def overdue_open(self, now: datetime, limit: int = 500) -> list[str]:
        self._call("overdue_open")
        return [i for i, d in self.docs.items() if d["open_deadline"] and d["open_deadline"] <= now][:limit]

    async def next_deadline(self, now: datetime) -> datetime | None:
        self._call("next_deadline")
        return min((d["open_deadline"] for d in self.docs.values() if d["open_deadline"] and d["open_deadline"] > now),
                   default=None)

    async def needing_alerts(self) -> list[dict[str, Any]]:
        self._call("needing_alerts")
        return [copy.deepcopy(d) for d in self.docs.values() if d.get("alert_kind")]

    # --- alert claims ------------------------------------------------------------------------------------------
    async def claim(self, claim: Mapping[str, Any]) -> bool:
        self._call("claim")
        if claim["_id"] in self.claims:
            return False
        self.claims[claim["_id"]] = dict(claim)
        return True

    async def mark_published(self, alert_id: str, at: datetime) -> None:
        self._call("mark_published")
        self.claims[alert_id].update(state="published", published_at=at)

    async def claimed_ids(self, ids: Iterable[str]) -> set[str]:
        self._call("claimed_ids")
        return {i for i in ids if i in self.claims}

    async def stale_claims(self, older_than: datetime) -> list[dict[str, Any]]:
        self._call("stale_claims")
        return [dict(c) for c in self.claims.values() if c["state"] == "claimed" and c["claimed_at"] <= older_than]

    async def retake_claim(self, alert_id: str, previous: datetime, now: datetime) -> bool:
        self._call("retake_claim")
        c = self.claims[alert_id]
        if c["state"] == "claimed" and c["claimed_at"] == previous:
            c["claimed_at"] = now
            return True
        return False

    # --- reads of the HTTP routes ------------------------------------------------------------------------------
    async def find(self, where: MilestoneFilter, *, limit: int, skip: int = 0) -> list[dict[str, Any]]:
        self._call("find")
        # MongoDB sorts a missing deadline first.
        docs = sorted(_matching(self.docs.values(), where),
                      key=lambda d: (d.get("deadline") is not None, d.get("deadline") or 0, d["_id"]))
        return [_without(d, ("facts",)) for d in docs[skip:skip + limit]]

    async def count(self, where: MilestoneFilter) -> int:
        self._call("count")
        return len(_matching(self.docs.values(), where))

    async def schedule_changes(self, owner: str | None) -> list[dict[str, Any]]:
        self._call("schedule_changes")
        return [copy.deepcopy(d) for d in _matching(self.docs.values(), MilestoneFilter(owner_agency=owner, moved=True))]

    async def get(self, milestone_id: str) -> dict[str, Any] | None:
        self._call("get")
        doc = self.docs.get(milestone_id)
        return None if doc is None else _without(doc, ("facts",))

    async def next_due(self, limit: int = 10, owner: str | None = None) -> list[dict[str, Any]]:
        self._call("next_due")
        docs = sorted((d for d in self.docs.values() if d.get("open_deadline") is not None
                       and (owner is None or d.get("owner_agency") == owner)),
                      key=lambda d: (d["open_deadline"], d["_id"]))
        return [_without(d, _HISTORIES) for d in docs[:limit]]

    # --- figures and overview snapshots --------------------------------------------------------------------------
    async def tallies(self) -> list[dict[str, Any]]:
        self._call("tallies")
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for d in self.docs.values():
            if d.get("workstream") is None:
                continue
            g = groups.setdefault((d["workstream"], d["status"]),
                                  {"_id": {"workstream": d["workstream"], "status": d["status"]},
                                   "count": 0, "weight": 0, "on_time_weight": 0, "progress_weight": 0})
            g["count"] += 1
            g["weight"] += d["weight"]
            g["on_time_weight"] += d["weight"] if d["days_late"] == 0 else 0
            g["progress_weight"] += d["weight"] * d["percent_complete"]
        return list(groups.values())

    async def missed_due_dates(self) -> list[dict[str, Any]]:
        self._call("missed_due_dates")
        return [d for d in self.docs.values() if d["status"] == "missed"]

    async def count_unknown_dependencies(self) -> int:
        self._call("count_unknown_dependencies")
        return sum(1 for d in self.docs.values() if d.get("unknown_dependencies"))

    async def write_stats(self, stats: Mapping[str, Any]) -> None:
        self._call("write_stats")
        self.stats = dict(stats)

    async def read_stats(self) -> dict[str, Any] | None:
        self._call("read_stats")
        return None if self.stats is None else copy.deepcopy(self.stats)

    async def overview_rows(self) -> list[dict[str, Any]]:
        self._call("overview_rows")
        return [{k: d.get(k) for k in ("_id", "owner_agency", "workstream", "status", "due_date", "completed_on",
                                       "open_deadline")}
                for d in self.docs.values() if d.get("workstream") is not None]

    async def list_items(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self._call("list_items")
        return {i: copy.deepcopy(self.docs[i]) for i in ids if i in self.docs}

    async def write_overview_snapshots(self, docs: Mapping[str, Mapping[str, Any]], computed_at: datetime) -> None:
        self._call("write_overview_snapshots")
        self.snapshots = {owner: {**doc, "computed_at": computed_at} for owner, doc in docs.items()}

    async def read_overview_snapshot(self, owner: str, fields: Sequence[str] | None = None) -> dict[str, Any] | None:
        self._call("read_overview_snapshot")
        snap = self.snapshots.get(owner)
        return None if snap is None else {k: v for k, v in snap.items() if not fields or k in fields or k == "_id"}

    async def overview_tallies(self, owner: str | None, days: Sequence[date]) -> list[dict[str, Any]]:
        self._call("overview_tallies")
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for d in self.docs.values():
            if d.get("workstream") is None or (owner and d.get("owner_agency") != owner):
                continue
            g = groups.setdefault((d["workstream"], d["status"]),
                                  {"_id": {"workstream": d["workstream"], "status": d["status"]}, "count": 0,
                                   **{f"overdue_{i}": 0 for i in range(len(days))}})
            g["count"] += 1
            for i, day in enumerate(days):
                due, done = d.get("due_date"), d.get("completed_on")
                # As the pipeline compares them: ISO strings, a missing date never before a day.
                if due is not None and due < day.isoformat() and not (done is not None and done <= day.isoformat()):
                    g[f"overdue_{i}"] += 1
        return list(groups.values())

    async def earliest_due(self, status: str, workstream: str, owner: str | None, limit: int) -> list[dict[str, Any]]:
        self._call("earliest_due")
        docs = sorted((d for d in self.docs.values() if d.get("status") == status and d.get("workstream") == workstream
                       and (not owner or d.get("owner_agency") == owner)),
                      key=lambda d: (d.get("due_date") is not None, d.get("due_date") or "", d["_id"]))
        return [_without(d, _HISTORIES) for d in docs[:max(limit, 0)]]


def _without(doc: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in doc.items() if k not in fields}


def _matching(docs: Iterable[dict[str, Any]], where: MilestoneFilter) -> list[dict[str, Any]]:
    """The documents `adapters._query(where)` selects in MongoDB (ISO dates compare as strings)."""
    def meets(d: Mapping[str, Any]) -> bool:
        if any((v := getattr(where, n)) is not None and d.get(n) != v for n in ("workstream", "owner_agency", "status")):
            return False
        due = d.get("due_date")
        if (where.due_before is not None or where.due_after is not None) and due is None:
            return False
        if where.due_before is not None and due > where.due_before.isoformat():
            return False
        if where.due_after is not None and due < where.due_after.isoformat():
            return False
        if where.moved is not None:
            moved = d.get("baseline_due_date") != due
            if moved != where.moved or (where.moved and (due is None or d.get("baseline_due_date") is None)):
                return False
        return True

    return [d for d in docs if meets(d)]


class FakePublisher:
    """`EventPublisher.publish` into a list; `fail`: every publish raises (Kafka down)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.fail = False

    async def publish(self, event: Any, topic: str | None = None) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.sent.append(event)
