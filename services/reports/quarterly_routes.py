"""Keyed route of the quarterly report: `GET /v1/reports/quarterly?fiscal_year=&quarter=&agency=&format=`.

Read rules as every read API (docs/security.md): no or unknown key 401; survey key 403 `role_not_allowed`; the
programme-office key any agency or (no `agency`) the whole programme; an agency key its own agency's report
(`agency` omitted means its own), another agency 403 `agency_not_allowed`. Bad parameters 400 with a reason.
Renders are bounded per process and reused (quarterly_service.py): with every render slot and queue place taken,
503 `render_busy` with Retry-After. Documents stay `private, no-store` whether rendered or reused: they are
keyed content, and the in-process reuse is keyed by scope, so it changes nothing for a shared cache.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from services.common.auth import READ_RESPONSES, Principal
from services.common.http_ingest import problem
from services.common.openapi import problem_response
from services.common.params import ASCII_INTEGER, AgencyFilter
from services.reports import quarterly
from services.reports.adapters import UpstreamError
from services.reports.metrics import QuarterlyMetrics
from services.reports.quarterly_service import FORMATS, QuarterlyReports, RenderBusy

# QuarterlyMetrics lives in metrics.py (the service layer counts renders too); still importable from here.
__all__ = ["QuarterlyMetrics", "archive_router", "quarterly_router"]
log = logging.getLogger(__name__)
_PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}


def busy(retry_after: int) -> Response:
    """503 `render_busy`: every render slot and queue place is taken (RenderGate). Thai first, then English."""
    return problem(503, "render_busy",
                   f"ระบบกำลังจัดทำรายงานเต็มกำลัง กรุณาลองใหม่ในอีก {retry_after} วินาที · every report render is "
                   f"busy; retry after {retry_after} s", headers={"Retry-After": str(retry_after)})


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
                   503: problem_response(503, "No read API answered (`upstream_unavailable`), or every render "
                                              "slot and queue place is taken (`render_busy`): retry after "
                                              "`Retry-After` seconds")})
    async def quarterly_report(
        # Bounds documented, checked by quarterly.quarter_of with their own reasons (invalid_fiscal_year, ...).
        fiscal_year: Annotated[int, Query(json_schema_extra={"minimum": 2560, "maximum": 2700},
                                          description="Buddhist-era fiscal year, e.g. 2569 (1 Oct 2025 - 30 Sep 2026)"),
                               ASCII_INTEGER],
        quarter: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": 4},
                                      description="1-4; Q1 = October-December"), ASCII_INTEGER],
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
            try:
                body, media_type, name = await reports.document(report, format)
            except RenderBusy as exc:
                outcome = "busy"
                log.info("quarterly report refused: renders busy", extra={
                    "format": format, "agency": scope or "all", "key_id": principal.key_id,
                    "retry_after": exc.retry_after})
                return busy(exc.retry_after)
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
