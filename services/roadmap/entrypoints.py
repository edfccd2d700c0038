"""HTTP read API of the roadmap (thin: parse, call one query, answer).

Every route needs an agency or programme-office key. An agency reads the milestones it owns (another
agency's milestone by id is 404, as if it did not exist) and the programme-wide figures of the summary;
the programme office reads everything.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from services.common.app import Runtime
from services.common.auth import READ_RESPONSES, Principal
from services.common.params import ASCII_INTEGER, AgencyFilter, IsoDate
from services.contracts.common_types import Workstream
from services.contracts.thai_calendar import bangkok_day, format_thai_date
from services.roadmap.adapters import MilestoneFilter
from services.roadmap.domain import Status
from services.roadmap.handlers import RoadmapService
from services.roadmap.overview import overview as overview_figures

_HIDDEN = ("_id", "facts", "fact_bytes", "rev", "version")  # storage internals ("version": before `rev`)


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


def build_router(service: RoadmapService, runtime: Runtime) -> APIRouter:
    router = APIRouter(tags=["roadmap"])
    auth = runtime.auth

    @router.get("/v1/milestones", summary="Milestones, filtered (รายการหมุดหมาย)", responses=READ_RESPONSES)
    async def list_milestones(
        workstream: Workstream | None = None,
        agency: AgencyFilter = None,
        status: Status | None = None,
        due_before: IsoDate | None = Query(None, description="due on or before this date (ISO)"),
        due_after: IsoDate | None = Query(None, description="due on or after this date (ISO)"),
        moved: bool | None = Query(None, description="true: only milestones whose current due date differs from "
                                                     "the baseline (rescheduled or re-planned); false: only the others"),
        limit: Annotated[int, Query(ge=1, le=1000), ASCII_INTEGER] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000), ASCII_INTEGER] = 0,
        principal: Principal = Depends(auth),
    ) -> dict[str, Any]:
        where = MilestoneFilter(workstream=workstream.value if workstream else None,
                                owner_agency=principal.read_scope(agency),  # an agency: its own; another: 403
                                status=status.value if status else None, due_before=due_before, due_after=due_after,
                                moved=moved)
        total, items = await service.list_milestones(where, limit=limit, offset=offset)
        return {"total": total, "limit": limit, "offset": offset, "items": [present(d, full=False) for d in items]}

    @router.get("/v1/schedule-changes", summary="Milestones whose due date moved, largest slip first (การเลื่อนกำหนด)",
                responses=READ_RESPONSES)
    async def schedule_changes(
        agency: AgencyFilter = None,
        limit: Annotated[int, Query(ge=1, le=20000, description="rows returned, largest slip first; `total` counts all"),
                         ASCII_INTEGER] = 5000,
        principal: Principal = Depends(auth),
    ) -> dict[str, Any]:
        owner = principal.read_scope(agency)  # an agency: its own; another: 403
        total, rows = await service.schedule_changes(owner, limit)
        for row in rows:
            for name in ("due_date", "baseline_due_date"):
                row[f"{name}_th"] = format_thai_date(date.fromisoformat(row[name]))
        return {"agency": owner, "total": total, "limit": limit, "items": rows}

    @router.get("/v1/milestones/{milestone_id}", summary="One milestone with its history (หมุดหมายและประวัติ)",
                responses={**READ_RESPONSES, 404: {"description": "no such milestone, or another agency's",
                                                   "content": {"application/problem+json": {}}}})
    async def get_milestone(milestone_id: str, principal: Principal = Depends(auth)) -> dict[str, Any]:
        doc = await service.milestone(milestone_id, principal)
        if doc is None:  # 404 also for another agency's: existence is not revealed
            raise HTTPException(404, {"reason": "milestone_not_found", "detail": f"no milestone {milestone_id!r}"})
        return present(doc)

    @router.get("/v1/summary", summary="Counts, delivery confidence and next due milestones (สรุปสถานะ)",
                responses=READ_RESPONSES)
    async def summary(principal: Principal = Depends(auth)) -> dict[str, Any]:
        stats = await service.summary(principal.read_scope(None))
        return {**stats, "next_due": [present(d, full=False) for d in stats["next_due"]]}

    @router.get("/v1/overview", summary="Per-workstream counts, overdue counts and late milestones (ภาพรวม)",
                responses=READ_RESPONSES)
    async def overview(
        agency: AgencyFilter = None,
        at: list[IsoDate] | None = Query(None, max_length=8, description="count milestones open past their current due "
                                  "date at the end of each of these days (ISO, repeatable; default today in Bangkok)"),
        late: Annotated[int, Query(ge=0, le=100, description="missed and at-risk milestones listed per workstream, "
                                                "earliest due first"), ASCII_INTEGER] = 10,
        principal: Principal = Depends(auth),
    ) -> dict[str, Any]:
        days = list(dict.fromkeys(at)) if at else [bangkok_day(service.clock())]
        figures = await overview_figures(service.repo, principal.read_scope(agency), days, late)  # agency: own only
        for entry in figures["workstreams"].values():
            for status in ("missed", "at_risk"):
                entry[status] = [present(d, full=False) for d in entry.get(status, [])]
        return figures

    return router
