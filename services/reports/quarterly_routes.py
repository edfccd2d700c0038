"""Keyed route of the quarterly report: `GET /v1/reports/quarterly?fiscal_year=&quarter=&agency=&format=`.

Read rules as every read API (docs/security.md): no or unknown key 401; survey key 403 `role_not_allowed`; the
programme-office key any agency or (no `agency`) the whole programme; an agency key its own agency's report
(`agency` omitted means its own), another agency 403 `agency_not_allowed`. Bad parameters 400 with a reason.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.auth import READ_RESPONSES, Principal
from services.common.params import AgencyFilter
from services.reports import quarterly
from services.reports.adapters import UpstreamError
from services.reports.quarterly_service import FORMATS, QuarterlyReports

log = logging.getLogger(__name__)
OUTCOMES = ("ok", "partial", "rejected", "error")
_PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}


class QuarterlyMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.documents = Counter("newnormal_reports_quarterly_documents_total",
                                 "Quarterly report documents asked for, by format and outcome (ok, partial: a read API "
                                 "did not answer; rejected: bad parameters; error).", ["format", "outcome"],
                                 registry=registry)
        self.seconds = Histogram("newnormal_reports_quarterly_seconds",
                                 "Time to fetch, assemble and render one quarterly document, by format.", ["format"],
                                 registry=registry, buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60))
        for fmt in FORMATS:
            self.seconds.labels(fmt)
            for outcome in OUTCOMES:
                self.documents.labels(fmt, outcome)


def _headers(media_type: str, name: str) -> dict[str, str]:
    # Keyed content: never in a shared cache. HTML is shown inline (no script: the same CSP as the pages).
    headers = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
    if media_type.startswith("text/html"):
        headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        headers["Content-Disposition"] = f'inline; filename="{name}"'
    else:
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return headers


def quarterly_router(reports: QuarterlyReports, auth, metrics: QuarterlyMetrics) -> APIRouter:
    router = APIRouter(tags=["reports"])

    @router.get(
        "/v1/reports/quarterly", summary="Quarterly report to Cabinet · รายงานรายไตรมาส (PDF, HTML or XLSX)",
        description="The five Cabinet points and every schedule change of one Thai fiscal quarter (Q1 = Oct-Dec), "
                    "from the read APIs at this moment. Sheets and columns of the XLSX: docs/reports.md.",
        response_class=Response,
        responses={**READ_RESPONSES, 400: {"description": "bad parameter (`reason` says which)", "content": _PROBLEM},
                   404: {"description": "the quarter has not started yet (`quarter_not_started`)", "content": _PROBLEM},
                   200: {"content": {m: {} for m in FORMATS.values()}},
                   503: {"description": "no read API answered: no report to make", "content": _PROBLEM}})
    async def quarterly_report(
        # Bounds documented, checked by quarterly.quarter_of with their own reasons (invalid_fiscal_year, ...).
        fiscal_year: int = Query(..., json_schema_extra={"minimum": 2560, "maximum": 2700},
                                 description="Buddhist-era fiscal year, e.g. 2569 (1 Oct 2025 - 30 Sep 2026)"),
        quarter: int = Query(..., json_schema_extra={"minimum": 1, "maximum": 4},
                             description="1-4; Q1 = October-December"),
        agency: AgencyFilter = None,
        format: Literal["pdf", "html", "xlsx"] = Query("pdf", description="document format"),
        principal: Principal = Depends(auth),
    ) -> Response:
        scope = principal.read_scope(agency)  # 403 for a survey key or another agency
        started, outcome = time.perf_counter(), "error"
        try:
            try:
                report = await reports.build(fiscal_year, quarter, scope)
            except quarterly.ReportRequestError as exc:
                outcome = "rejected"
                # A quarter that has not started has no report yet: not found, like any record not there.
                status = 404 if exc.reason == "quarter_not_started" else 400
                raise HTTPException(status, detail={"reason": exc.reason, "detail": exc.detail}) from None
            if len(report.unavailable) == 3:
                raise HTTPException(503, detail={"reason": "upstream_unavailable",
                                                 "detail": "no read API answered: try again shortly"})
            body, media_type, name = await reports.document(report, format)
            outcome = "partial" if report.unavailable else "ok"
            log.info("quarterly report made", extra={"fiscal_year": fiscal_year, "quarter": quarter,
                                                     "agency": scope or "all", "format": format, "bytes": len(body),
                                                     "key_id": principal.key_id})
            return Response(body, media_type=media_type, headers=_headers(media_type, name))
        except UpstreamError:
            raise HTTPException(503, detail={"reason": "upstream_unavailable",
                                             "detail": "a read API did not answer: try again shortly"}) from None
        finally:
            metrics.documents.labels(format, outcome).inc()
            metrics.seconds.labels(format).observe(time.perf_counter() - started)

    return router


def archive_router(archive, auth) -> APIRouter:
    """`GET /v1/reports/quarterly/archive/{document_id}.{format}`: the documents a scheduled run archived and
    announced, exactly as sent. Programme-wide reports: the programme-office key only; an agency key gets 404,
    as for another agency's record asked for by id (docs/security.md)."""
    router = APIRouter(tags=["reports"])

    @router.get("/v1/reports/quarterly/archive/{name}", response_class=Response,
                summary="An archived quarterly report (as announced) · รายงานรายไตรมาสที่จัดเก็บ",
                responses={**READ_RESPONSES, 404: {"description": "no such archived document", "content": _PROBLEM},
                           200: {"content": {m: {} for m in FORMATS.values()}}})
    async def archived(name: str, principal: Principal = Depends(auth)) -> Response:
        principal.read_scope(None if principal.reads_all else principal.agency)  # 403 for a survey key
        doc_id, _, fmt = name.rpartition(".")
        body = None
        if principal.reads_all and fmt in FORMATS and 0 < len(doc_id) <= 64:
            body = await archive.document(doc_id, fmt)
        if body is None:
            raise HTTPException(404, detail={"reason": "not_found", "detail": "no archived report of that name"})
        return Response(body, media_type=FORMATS[fmt], headers=_headers(FORMATS[fmt], name))

    return router
