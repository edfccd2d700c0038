"""HTTP read API of the roadmap (thin: parse, call one query, answer).

Every route needs an agency or programme-office key. An agency reads the milestones it owns (another
agency's milestone by id is 404, as if it did not exist) and the programme-wide figures of the summary;
the programme office reads everything.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from services.common.auth import READ_RESPONSES, ApiKeyAuth, Principal
from services.common.params import AgencyFilter, IsoDate
from services.contracts.common_types import Workstream
from services.contracts.thai_calendar import format_thai_date
from services.roadmap.adapters import MilestoneRepository
from services.roadmap.confidence import confidence_rule
from services.roadmap.domain import Status
from services.roadmap.handlers import RoadmapService

_HIDDEN = ("_id", "facts", "version")


def present(doc: dict[str, Any], *, full: bool = True) -> dict[str, Any]:
    """A milestone as people and tools read it: BE dates next to ISO ones, no storage internals."""
    out = {k: v for k, v in doc.items() if k not in _HIDDEN}
    for name in ("due_date", "baseline_due_date", "completed_on", "projected_finish"):
        if out.get(name):
            out[f"{name}_th"] = format_thai_date(date.fromisoformat(out[name]))
    if not full:
        for name in ("timeline", "progress_history", "due_history", "ignored", "description"):
            out.pop(name, None)
    return out


def read_router(repo: MilestoneRepository, service: RoadmapService, auth: ApiKeyAuth) -> APIRouter:
    router = APIRouter(tags=["roadmap"])

    @router.get("/v1/milestones", summary="Milestones, filtered (รายการหมุดหมาย)", responses=READ_RESPONSES)
    async def list_milestones(
        workstream: Workstream | None = None,
        agency: AgencyFilter = None,
        status: Status | None = None,
        due_before: IsoDate | None = Query(None, description="due on or before this date (ISO)"),
        due_after: IsoDate | None = Query(None, description="due on or after this date (ISO)"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=1_000_000),
        principal: Principal = Depends(auth),
    ) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if workstream:
            query["workstream"] = workstream.value
        owner = principal.read_scope(agency)  # an agency key lists its own milestones; another agency: 403
        if owner:
            query["owner_agency"] = owner
        if status:
            query["status"] = status.value
        due: dict[str, str] = {}
        if due_before:
            due["$lte"] = due_before.isoformat()
        if due_after:
            due["$gte"] = due_after.isoformat()
        if due:
            query["due_date"] = due  # ISO dates sort as strings
        items = await repo.find(query, limit=limit, skip=offset)
        return {"total": await repo.count(query), "limit": limit, "offset": offset,
                "items": [present(d, full=False) for d in items]}

    @router.get("/v1/milestones/{milestone_id}", summary="One milestone with its history (หมุดหมายและประวัติ)",
                responses={**READ_RESPONSES, 404: {"description": "no such milestone, or another agency's",
                                                   "content": {"application/problem+json": {}}}})
    async def get_milestone(milestone_id: str, principal: Principal = Depends(auth)) -> dict[str, Any]:
        doc = await repo.get(milestone_id)
        if doc is None or not principal.may_see(doc.get("owner_agency")):  # 404: existence is not revealed
            raise HTTPException(404, {"reason": "milestone_not_found", "detail": f"no milestone {milestone_id!r}"})
        return present(doc)

    @router.get("/v1/summary", summary="Counts, delivery confidence and next due milestones (สรุปสถานะ)",
                responses=READ_RESPONSES)
    async def summary(principal: Principal = Depends(auth)) -> dict[str, Any]:
        stats = await repo.read_stats()
        if stats is None:
            stats = await service.refresh_stats()
        stats = {k: v for k, v in stats.items() if k != "_id"}
        stats["rule"] = CONFIDENCE_RULE
        # Counts and confidence are programme-wide (national totals, readable by every agency); the list of
        # next due milestones names milestones, so an agency sees only its own.
        owner = principal.read_scope(None)
        stats["next_due_agency"] = owner
        stats["next_due"] = [present(d, full=False) for d in await repo.next_due(10, owner)]
        return stats

    return router


# Generated from the thresholds in confidence.py, so the text cannot drift from the rule.
CONFIDENCE_RULE = confidence_rule()
