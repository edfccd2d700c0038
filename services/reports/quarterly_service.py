"""Service layer of the quarterly report: one fetch, one content object, three renderers.

    reports = QuarterlyReports(service)                      # service: handlers.ReportsService
    report = await reports.build(fiscal_year, quarter, agency)   # quarterly.QuarterlyReport (ReportRequestError: 400)
    body, media_type, filename = await reports.document(report, "pdf")   # rendering runs in a worker thread
                                                             # (RenderBusy: every slot and queue place taken)
    body = await reports.render_queued(report, "pdf")        # the scheduled delivery: waits its turn, never reused

The overview's inputs are fetched once (ReportsService.inputs, for the quarter asked). A moved milestone's stated
reason comes with the list (`latest_reason`); only an item projected before the roadmap API gave it costs a
detail request (its due history; bounded concurrency).

Rendering is seconds of CPU (a full-size PDF 8-12 s) and holds the GIL most of the time, so it is bounded and
reused (docs/reports.md, "Rendering: bounded and reused"):
- RenderGate: at most NEWNORMAL_REPORTS_RENDER_CONCURRENCY renders at once per process, at most
  NEWNORMAL_REPORTS_RENDER_QUEUE more waiting; one beyond that is refused at once (503 render_busy + Retry-After).
- Identical requests share one document: same quarter, agency scope, format, language and the same figures
  (`document_key`: a digest of the content object without its "data as of" time). Concurrent ones wait for the
  one render in flight; a finished one is kept NEWNORMAL_REPORTS_DOCUMENT_CACHE_SECONDS, at most
  NEWNORMAL_REPORTS_DOCUMENT_CACHE_MAX_ENTRIES documents (least recently used dropped), in the same TtlCache as
  the read API answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import pickle
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from services.common.ratelimit import retry_after_seconds
from services.contracts.thai_calendar import bangkok_day
from services.reports import quarterly
from services.reports.adapters import TtlCache, UpstreamError
from services.reports.handlers import ReportsService
from services.reports.metrics import QuarterlyMetrics

log = logging.getLogger(__name__)

FORMATS = {"pdf": "application/pdf", "html": "text/html; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
DETAIL_CONCURRENCY = 16
LANGUAGE = "th"  # the documents' language: render() makes Thai documents only (named in the key all the same)
# Retry-After of a refused render: the typical render time per slot (moving average), from this guess until one
# render has finished (the full-size PDF's target), at most MAX_RETRY_AFTER.
FIRST_RENDER_SECONDS = 10.0
MAX_RETRY_AFTER = 60.0
_SMOOTHING = 0.3


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


def document_key(report: quarterly.QuarterlyReport, fmt: str, lang: str = LANGUAGE) -> tuple[Any, ...]:
    """What makes two documents the same: the request (fiscal year, quarter, agency scope, format, language) and
    the figures. The figures are the content object without `data_as_of` (when it was asked for), pickled and
    hashed: pickling is lossless, so different figures never share a key (the same figures assembled in another
    order at worst miss). The agency scope is named on its own as well: one agency's document is never another's."""
    content = pickle.dumps(dataclasses.replace(report, data_as_of=None), protocol=pickle.HIGHEST_PROTOCOL)
    q = report.quarter
    return q.fiscal_year, q.quarter, report.agency, fmt, lang, hashlib.sha256(content).hexdigest()


class RenderBusy(Exception):
    """Every render slot and queue place is taken: the route answers 503 `render_busy` with Retry-After."""

    def __init__(self, retry_after: int):
        super().__init__(f"every render slot is taken; retry after {retry_after} s")
        self.retry_after = retry_after


class RenderGate:
    """At most `concurrency` renders at once, in worker threads, and at most `queue` more waiting for a slot
    (first come, first served); one beyond that is refused at once with RenderBusy, never left waiting.

    A slot is held until the render's thread has finished, even when every request waiting for it has gone: a
    thread cannot be stopped, so freeing its slot earlier would let the CPU work outgrow the bound."""

    def __init__(self, concurrency: int, queue: int, metrics: QuarterlyMetrics,
                 monotonic: Callable[[], float] = time.perf_counter):
        self.concurrency, self.queue, self.metrics, self.monotonic = concurrency, queue, metrics, monotonic
        self.running = self.waiting = 0
        self.typical_seconds = FIRST_RENDER_SECONDS
        self._slots = asyncio.Semaphore(concurrency)

    def retry_after(self) -> int:
        """Whole seconds until a place is likely free: one typical render per slot."""
        return retry_after_seconds(min(MAX_RETRY_AFTER, self.typical_seconds / self.concurrency))

    async def run(self, fn: Callable[[quarterly.QuarterlyReport, str], bytes], report: quarterly.QuarterlyReport,
                  fmt: str, *, refuse: bool = True) -> bytes:
        """fn(report, fmt) in a worker thread once a slot is free; `refuse`: RenderBusy if none is free and the
        queue is full (False: the scheduled delivery, which waits its turn whatever the queue)."""
        if refuse and self.running + self.waiting >= self.concurrency + self.queue:
            raise RenderBusy(self.retry_after())
        self._count(waiting=1)
        try:
            await self._slots.acquire()  # a request cancelled here leaves the queue, nothing else to undo
        finally:
            self._count(waiting=-1)
        self._count(running=1)
        started = self.monotonic()
        work = asyncio.ensure_future(asyncio.to_thread(fn, report, fmt))
        work.add_done_callback(lambda done: self._finished(done, fmt, started))
        return await asyncio.shield(work)

    def _finished(self, work: asyncio.Future, fmt: str, started: float) -> None:
        self._slots.release()
        self._count(running=-1)
        seconds = self.monotonic() - started
        error = work.exception() if not work.cancelled() else asyncio.CancelledError()  # retrieved: no warning
        self.metrics.renders.labels(fmt, "ok" if error is None else "error").inc()
        if error is not None:
            log.warning("quarterly render failed", extra={"format": fmt, "error": type(error).__name__})
            return
        self.metrics.render_seconds.labels(fmt).observe(seconds)
        self.typical_seconds += _SMOOTHING * (seconds - self.typical_seconds)

    def _count(self, running: int = 0, waiting: int = 0) -> None:
        self.running += running
        self.waiting += waiting
        self.metrics.renders_running.set(self.running)
        self.metrics.renders_waiting.set(self.waiting)


class QuarterlyReports:
    def __init__(self, service: ReportsService, max_slips: int = 5000, metrics: QuarterlyMetrics | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.service = service
        self.max_slips = max_slips
        self.metrics = metrics or QuarterlyMetrics(CollectorRegistry())
        s = service.settings
        self.gate = RenderGate(s.reports_render_concurrency, s.reports_render_queue, self.metrics)
        self.documents = TtlCache(s.reports_document_cache_seconds, s.reports_document_cache_max_entries, monotonic)

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
        """The document of `report` in `fmt`: a kept one of the same request and figures, the one in flight, or
        rendered now through the gate (RenderBusy when it is full). A reused document's cover and `about` sheet
        give the time its own report was asked for, at most NEWNORMAL_REPORTS_DOCUMENT_CACHE_SECONDS earlier."""
        if fmt not in FORMATS:
            raise quarterly.ReportRequestError("invalid_format", "format is one of pdf, html, xlsx")
        # Layout is CPU work of up to seconds: off the event loop, so health checks and pages keep answering.
        how, body = await self.documents.lookup(document_key(report, fmt), lambda: self.gate.run(render, report, fmt))
        self.metrics.lookups.labels(fmt, how).inc()
        return body, FORMATS[fmt], filename(report, fmt)

    async def render_queued(self, report: quarterly.QuarterlyReport, fmt: str) -> bytes:
        """A fresh render of `report` through the gate, waiting for a slot however full the queue (the scheduled
        delivery: its archived documents and event must carry this report's own "data as of")."""
        if fmt not in FORMATS:
            raise quarterly.ReportRequestError("invalid_format", "format is one of pdf, html, xlsx")
        return await self.gate.run(render, report, fmt, refuse=False)
