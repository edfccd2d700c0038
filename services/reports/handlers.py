"""Service layer of the reports service: gather what the read APIs say, hand it to the pure domain.

    service = ReportsService(source, settings, clock)
    overview = await service.overview(agency=None)   # domain.Overview; a failed source leaves its sections
                                                     # "not_reported" and its service in overview.unavailable
    inputs = await service.inputs(agency, today)     # domain.Inputs, for documents built on the same figures
    await service.refresh_overview()                 # the front page's answers fetched anew (background loop)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from services.common.clock import Clock, utc_now
from services.contracts.common_types import Workstream
from services.contracts.thai_calendar import bangkok_day, end_of_bangkok_day, fiscal_year_elapsed_ratio
from services.reports import domain
from services.reports.adapters import ReadApis, UpstreamError
from services.reports.metrics import ReportsMetrics
from services.reports.settings import ReportsSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class ReportsService:
    def __init__(self, source: ReadApis, settings: ReportsSettings, clock: Clock = utc_now,
                 metrics: ReportsMetrics | None = None):
        self.source = source
        self.metrics = metrics or ReportsMetrics(CollectorRegistry())
        self.settings = settings
        self.clock = clock

    def rules(self) -> domain.Rules:
        s = self.settings
        return domain.Rules(min_cell=s.feedback_min_published_cell, late_listed=s.reports_late_listed,
                            laggards_listed=s.reports_laggards_listed)

    async def overview(self, agency: str | None = None) -> domain.Overview:
        return domain.build_overview(await self.inputs(agency), self.rules())

    async def refresh_overview(self) -> None:
        """Fetch the national overview's answers anew, replacing the cached ones before they expire: the
        front page is then always served from the cache, and its figures are never older than the cache time."""
        with self.source.refreshing():
            await self.inputs(None)

    async def inputs(self, agency: str | None, today: date | None = None,
                     quarter: domain.Quarter | None = None, document: bool = False) -> domain.Inputs:
        """Everything one page (or one quarter's document) shows, fetched concurrently; `quarter` defaults to
        the one containing `today` (its experience figures run from the quarter's start to `today`); `document`:
        also what only the quarterly report shows, the milestones whose due date moved (schedule changes) and
        the notifier's acknowledgement figures for the quarter so far."""
        now = self.clock()
        today = today or bangkok_day(now)
        q = quarter or domain.quarter_of(today)
        quarters = domain.quarters_back(q, self.settings.reports_trend_quarters)
        failed: set[str] = set()
        s = self.source

        async def safe(service: str, call: Awaitable[T]) -> T | None:
            try:
                return await call
            except UpstreamError as exc:
                failed.add(service)
                log.warning("read API unavailable", extra={"upstream": service, "error": str(exc)[:200]})
                return None

        async def roadmap() -> tuple[Any, Any]:
            """(the roadmap's overview figures, None); from a roadmap without that route, (None, every milestone)."""
            figures = await s.roadmap_overview(agency, [today, q.previous().end], self.settings.reports_late_listed)
            return (figures, None) if figures is not None else (None, await s.milestones(agency))

        results = await asyncio.gather(
            safe("roadmap", s.summary()), safe("roadmap", roadmap()),
            safe("roadmap", self._moved(agency)) if document else _none(),
            safe("notifier", s.acknowledgements(q.start, min(today, q.end), agency)) if document else _none(),
            safe("training", s.readiness(q.fiscal_year, agency)),
            safe("training", s.readiness(q.fiscal_year - 1, agency)) if q.quarter == 1 else _none(),
            safe("training", s.laggards(q.fiscal_year)),
            safe("feedback", s.gaps(q.start, min(today, q.end), agency)),
            *(safe("feedback", s.experience(x.start, min(today, x.end), agency)) for x in quarters),
        )
        summary, road, moved_items, acknowledgements, readiness, readiness_prev, laggards, gaps, *experience = results
        figures, milestones = road or (None, None)
        if figures is None and milestones is not None:
            figures_for_listing = domain.roadmap_digest(milestones, agency, [today])
        else:
            figures_for_listing = figures
        details = await self._details(figures_for_listing, today, failed)
        return domain.Inputs(
            today=today, quarter=q, agency=agency, summary=summary, milestones=milestones, roadmap=figures,
            moved=moved_items, acknowledgements=acknowledgements, details=details,
            readiness=readiness, readiness_previous_year=readiness_prev, laggards=laggards,
            elapsed_ratio=fiscal_year_elapsed_ratio(q.fiscal_year, _as_of(q, today, now)),
            experience=experience, gaps=gaps, unavailable=tuple(sorted(failed)))

    async def _moved(self, agency: str | None) -> list[dict[str, Any]]:
        """The milestones whose due date moved: the roadmap's schedule changes in one read, or (a roadmap
        without that route) the list filtered by `moved=true`, page by page."""
        rows = await self.source.schedule_changes(agency)
        return rows if rows is not None else await self.source.milestones(agency, moved=True)

    async def _details(self, figures: Any, today: date, failed: set[str]) -> dict[str, dict[str, Any]]:
        """Detail (due history: the stated reasons) of the milestones the sections list (from the roadmap's
        overview figures, already of the agency asked) whose item does not state its latest reason; one failure
        costs that milestone's reason only."""
        limit = self.settings.reports_late_listed
        by_ws = (figures or {}).get("workstreams") or {}
        listed = {ws: [i for st in ("missed", "at_risk") for i in (e or {}).get(st) or [] if isinstance(i, dict)]
                  for ws, e in by_ws.items() if isinstance(e, dict)}
        ids = set(domain.to_listing([i for items in listed.values() for i in items], today, limit))
        ids |= set(domain.to_listing(listed.get(Workstream.regulation_reform.value, []), today, limit))
        # An item that carries `latest_reason` (the roadmap states it in lists) needs no detail request: the
        # quarterly report reads it the same way (quarterly.reason_known).
        stated = {str(i.get("milestone_id")) for items in listed.values() for i in items if "latest_reason" in i}
        ordered = sorted(ids - stated)
        answers = await asyncio.gather(*(self.source.milestone(i) for i in ordered), return_exceptions=True)
        out = {}
        for mid, answer in zip(ordered, answers, strict=True):
            if isinstance(answer, dict):
                out[mid] = answer
            elif isinstance(answer, UpstreamError):
                failed.add("roadmap")
            elif isinstance(answer, BaseException):
                raise answer
        return out


async def _none() -> None:
    return None


def _as_of(q: domain.Quarter, today: date, now: datetime) -> datetime:
    """The instant a quarter's pace is judged at: the end of its last day once it is over, else now, when the
    days before today count (as on the overview page and in the training service's laggards, which the same
    report prints): one figure for one moment."""
    return now if today <= q.end else end_of_bangkok_day(q.end)
