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
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date
from typing import Any

from services.contracts.common_types import Workstream
from services.roadmap.adapters import MilestoneRepository
from services.roadmap.domain import Status

NOT_OPEN = (Status.cancelled.value, Status.unplanned.value)
LISTED = (Status.missed.value, Status.at_risk.value)


async def overview(repo: MilestoneRepository, owner: str | None, days: Sequence[date], late: int) -> dict[str, Any]:
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
    return {"agency": owner, "at": keys, "workstreams": out}
