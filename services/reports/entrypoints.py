"""HTTP routes of the reports service: parse, call one handler, answer.

`build_router(service, runtime)`: the public pages `/` and `/agencies/{code}` (no key: only publishable
figures). Keyed routes (quarterly documents) are added next to them with `runtime.auth`.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from services.common.app import Runtime
from services.contracts.agencies import get_registry
from services.reports import pages
from services.reports.handlers import ReportsService

log = logging.getLogger(__name__)

# Public and the same for everyone: shared caches may keep it as long as our own answer cache.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
}
LANG_DOC = "`en` for English; anything else (or nothing) gives Thai, the default"


def _lang(value: str | None) -> str:
    return "en" if value == "en" else "th"


def build_router(service: ReportsService, runtime: Runtime) -> APIRouter:
    router = APIRouter(tags=["overview"])
    metrics = service.metrics
    cache_control = f"public, max-age={int(service.settings.reports_cache_seconds)}"

    async def page(name: str, agency: str | None, lang: str) -> HTMLResponse:
        started = time.perf_counter()
        outcome = "error"
        try:
            overview = await service.overview(agency)
            html = pages.render_overview(overview, lang, service.clock())
            outcome = "partial" if overview.unavailable else "ok"
            return HTMLResponse(html, headers={**PAGE_HEADERS, "Cache-Control": cache_control,
                                               "Content-Language": lang})
        finally:
            metrics.renders.labels(name, outcome).inc()
            metrics.render_seconds.labels(name).observe(time.perf_counter() - started)

    @router.get("/", response_class=HTMLResponse, summary="Programme overview · ภาพรวมแผนงาน (public, no key)",
                description="The five Cabinet points with status and trend against the previous Thai fiscal quarter; "
                            "server-rendered HTML with SVG charts. Small experience cells are suppressed.")
    async def overview(lang: str | None = Query(None, max_length=8, description=LANG_DOC)) -> HTMLResponse:
        return await page("overview", None, _lang(lang))

    @router.get("/agencies/{code}", response_class=HTMLResponse,
                summary="One agency's overview · ภาพรวมรายหน่วยงาน (public, no key)",
                responses={404: {"description": "no such agency (an HTML page)", "content": {"text/html": {}}}})
    async def agency(code: str, lang: str | None = Query(None, max_length=8, description=LANG_DOC)) -> HTMLResponse:
        lang = _lang(lang)
        if len(code) > 64 or code not in get_registry():  # never echoed back: the page names no input
            metrics.renders.labels("not_found", "ok").inc()
            return HTMLResponse(pages.render_not_found(lang), status_code=404,
                                headers={**PAGE_HEADERS, "Content-Language": lang})
        return await page("agency", code, lang)

    return router
