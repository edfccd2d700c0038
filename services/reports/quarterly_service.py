"""Service layer of the quarterly report: one fetch, one content object, three renderers.

    reports = QuarterlyReports(service)                      # service: handlers.ReportsService
    report = await reports.build(fiscal_year, quarter, agency)   # quarterly.QuarterlyReport (ReportRequestError: 400)
    body, media_type, filename = await reports.document(report, "pdf")   # rendering runs in a worker thread

The overview's inputs are fetched once (ReportsService.inputs, for the quarter asked). A moved milestone's stated
reason comes with the list (`latest_reason`); only an item projected before the roadmap API gave it costs a
detail request (its due history; bounded concurrency).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from services.contracts.thai_calendar import bangkok_day
from services.reports import quarterly
from services.reports.adapters import UpstreamError
from services.reports.handlers import ReportsService

FORMATS = {"pdf": "application/pdf", "html": "text/html; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
DETAIL_CONCURRENCY = 16


def render(report: quarterly.QuarterlyReport, fmt: str) -> bytes:
    if fmt == "pdf":
        from services.reports.render_pdf import render_pdf
        return render_pdf(report)
    if fmt == "xlsx":
        from services.reports.render_xlsx import render_xlsx
        return render_xlsx(report)
    if fmt == "html":
        from services.reports.render_html import render_html
        return render_html(report).encode()
    raise quarterly.ReportRequestError("invalid_format", "format is one of pdf, html, xlsx")


def filename(report: quarterly.QuarterlyReport, fmt: str) -> str:
    q = report.quarter
    return f"newnormal-quarterly-{q.fiscal_year}-q{q.quarter}-{report.agency or 'all'}.{fmt}"


class QuarterlyReports:
    def __init__(self, service: ReportsService, max_slips: int = 5000):
        self.service = service
        self.max_slips = max_slips

    async def build(self, fiscal_year: int, quarter: int, agency: str | None) -> quarterly.QuarterlyReport:
        now = self.service.clock()
        q = quarterly.validate_request(fiscal_year, quarter, bangkok_day(now))
        inputs = await self.service.inputs(agency, bangkok_day(now), q, document=True)
        changed = quarterly.moved(inputs.moved if inputs.moved is not None else inputs.milestones or [],
                                  agency)[: self.max_slips]
        unknown = [str(m.get("milestone_id")) for m in changed if not quarterly.reason_known(m)]
        details = await self._details(unknown, inputs)
        return quarterly.build_quarterly(inputs, details, self.service.rules(), now, max_slips=self.max_slips)

    async def _details(self, ids: list[str], inputs: Any) -> Mapping[str, Mapping[str, Any]]:
        """Due histories, the already fetched ones reused; a failure costs that milestone's reason only and
        marks the roadmap source as partly unavailable (the report says so)."""
        out: dict[str, Mapping[str, Any]] = dict(inputs.details)
        gate = asyncio.Semaphore(DETAIL_CONCURRENCY)
        failed = False

        async def one(mid: str) -> None:
            nonlocal failed
            async with gate:
                try:
                    out[mid] = await self.service.source.milestone(mid)
                except UpstreamError:
                    failed = True

        await asyncio.gather(*(one(m) for m in ids if m not in out))
        if failed and "roadmap" not in inputs.unavailable:
            inputs.unavailable = tuple(sorted({*inputs.unavailable, "roadmap"}))
        return out

    async def document(self, report: quarterly.QuarterlyReport, fmt: str) -> tuple[bytes, str, str]:
        if fmt not in FORMATS:
            raise quarterly.ReportRequestError("invalid_format", "format is one of pdf, html, xlsx")
        # Layout is CPU work of up to seconds: off the event loop, so health checks and pages keep answering.
        body = await asyncio.to_thread(render, report, fmt)
        return body, FORMATS[fmt], filename(report, fmt)
