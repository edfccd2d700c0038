"""The roadmap's overview figures (GET /v1/overview): what the reports service's pages and quarterly report show,
computed in the database (one $group pass and a few indexed, bounded finds) instead of read from the whole
milestone list, which took the reports service tens of seconds at 10,000 milestones.

    figures = await overview(repo, owner, days, late)
    # {"agency": owner, "at": ["2026-02-10", ...], "workstreams": {ws: {"counts": {status: n},
    #   "open_overdue_at": {day: n}, "missed": [doc, ...], "at_risk": [doc, ...]}}}

`open_overdue_at[day]`: milestones with a current due date before `day` not completed by the end of it, except
cancelled and unplanned ones (not open): the rule of services.reports.domain.open_overdue_at, which the
integration test checks this against. The lists hold the `late` earliest-due missed (longest overdue first) and
at-risk (most urgent first) milestones of each workstream.

Snapshots: a count over every milestone is a scan, seconds at 10,000 milestones on a small server. So the
roadmap keeps one snapshot per owner (and `*` for all), recomputed with the summary figures after changes
(`refresh_snapshots`): per workstream the counts, the (due date, completed on) pairs of the open ones (any
day's overdue count is computed from them at read time) and the first LIST_MAX of each listed status; and the
summary's NEXT_DUE open milestones with the nearest deadline. A read
answers from its owner's snapshot, or counts in the database when there is none yet.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from services.contracts.common_types import Workstream
from services.roadmap.adapters import MilestoneStore
from services.roadmap.domain import Status

NOT_OPEN = (Status.cancelled.value, Status.unplanned.value)
LISTED = (Status.missed.value, Status.at_risk.value)
LIST_MAX = 100  # the API's largest `late`
NEXT_DUE = 10  # the summary's next due milestones
ALL = "*"


def build_snapshots(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Snapshots per owner and for all (`*`) from the milestones' counted fields, with the listed items as
    ids still to be read: (snapshots, ids). Pure."""
    snaps: dict[str, dict[str, dict[str, Any]]] = {}
    next_due: dict[str, list[tuple[datetime, str]]] = {}
    for row in rows:
        ws, status = str(row.get("workstream")), str(row.get("status"))
        due, done = row.get("due_date"), row.get("completed_on")
        for owner in (ALL, row.get("owner_agency")):
            if not isinstance(owner, str):
                continue
            if isinstance(row.get("open_deadline"), datetime):
                next_due.setdefault(owner, []).append((row["open_deadline"], str(row["_id"])))
            entry = snaps.setdefault(owner, {}).setdefault(ws, {"counts": {}, "open_due": {}, **{s: [] for s in LISTED}})
            entry["counts"][status] = entry["counts"].get(status, 0) + 1
            if status not in NOT_OPEN and isinstance(due, str):
                pair = (due, done if isinstance(done, str) else None)
                entry["open_due"][pair] = entry["open_due"].get(pair, 0) + 1
            if status in LISTED:
                entry[status].append((due if isinstance(due, str) else "", str(row["_id"])))
    ids: set[str] = set()
    soonest = {owner: [mid for _, mid in sorted(pairs)[:NEXT_DUE]] for owner, pairs in next_due.items()}
    for owner_ids in soonest.values():
        ids.update(owner_ids)
    for by_ws in snaps.values():
        for entry in by_ws.values():
            # [due, completed_on, how many]: milestones share few distinct pairs (a smaller document to read)
            entry["open_due"] = sorted(([due, done, n] for (due, done), n in entry["open_due"].items()),
                                       key=lambda t: (t[0], t[1] or ""))
            for st in LISTED:
                entry[st] = [mid for _, mid in sorted(entry[st])[:LIST_MAX]]
                ids.update(entry[st])
    return {owner: {"workstreams": by_ws, "next_due": soonest.get(owner, [])} for owner, by_ws in snaps.items()}, ids


def with_items(snapshots: dict[str, dict[str, Any]], items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The snapshots with their listed ids replaced by the items read (an id gone meanwhile is left out)."""
    for snap in snapshots.values():
        snap["next_due"] = [items[mid] for mid in snap.get("next_due", []) if mid in items]
        for entry in snap["workstreams"].values():
            for st in LISTED:
                entry[st] = [items[mid] for mid in entry[st] if mid in items]
    return snapshots


def from_snapshot(snapshot: dict[str, Any], owner: str | None, days: Sequence[date], late: int) -> dict[str, Any]:
    """GET /v1/overview's answer from a snapshot: the same figures as counting in the database. Pure."""
    keys = [d.isoformat() for d in days]
    out: dict[str, dict[str, Any]] = {w.value: {"counts": {}, "open_overdue_at": dict.fromkeys(keys, 0)}
                                      for w in Workstream}
    for ws, entry in snapshot["workstreams"].items():
        triples = entry["open_due"]
        dues = [due for due, _, _ in triples]
        overdue = {}
        for key in keys:
            before = triples[: bisect_left(dues, key)]  # due date before the day (ISO dates sort as strings)
            overdue[key] = sum(n for _, done, n in before if done is None or done > key)
        out[ws] = {"counts": dict(entry["counts"]), "open_overdue_at": overdue,
                   **{st: list(entry[st][:late]) for st in LISTED}}
    for entry in out.values():
        for st in LISTED:
            entry.setdefault(st, [])
    as_of = snapshot.get("computed_at")
    return {"agency": owner, "at": keys, "workstreams": out,
            "as_of": as_of.isoformat() if isinstance(as_of, datetime) else None}


async def refresh_snapshots(repo: MilestoneStore, computed_at: datetime) -> int:
    """Recompute every owner's snapshot from the milestones; returns how many were written."""
    snapshots, ids = build_snapshots(await repo.overview_rows())
    snapshots = with_items(snapshots, await repo.list_items(sorted(ids)))
    await repo.write_overview_snapshots(snapshots, computed_at)
    return len(snapshots)


async def overview(repo: MilestoneStore, owner: str | None, days: Sequence[date], late: int) -> dict[str, Any]:
    snapshot = await repo.read_overview_snapshot(owner or ALL)
    if snapshot is not None:
        return from_snapshot(snapshot, owner, days, min(late, LIST_MAX))
    return await count_in_database(repo, owner, days, late)


async def count_in_database(repo: MilestoneStore, owner: str | None, days: Sequence[date], late: int) -> dict[str, Any]:
    keys = [d.isoformat() for d in days]

    def empty() -> dict[str, Any]:
        return {"counts": {}, "open_overdue_at": dict.fromkeys(keys, 0)}

    out: dict[str, dict[str, Any]] = {w.value: empty() for w in Workstream}
    for row in await repo.overview_tallies(owner, days):
        ws, status = str(row["_id"].get("workstream")), str(row["_id"].get("status"))
        entry = out.setdefault(ws, empty())
        entry["counts"][status] = row["count"]
        if status not in NOT_OPEN:
            for i, key in enumerate(keys):
                entry["open_overdue_at"][key] += row[f"overdue_{i}"]
    wanted = [(ws, st) for ws in out for st in LISTED]
    lists = await asyncio.gather(*(repo.earliest_due(st, ws, owner, late) for ws, st in wanted))
    for (ws, st), items in zip(wanted, lists, strict=True):
        out[ws][st] = items
    return {"agency": owner, "at": keys, "workstreams": out, "as_of": None}
