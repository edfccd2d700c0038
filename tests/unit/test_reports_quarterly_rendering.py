"""Quarterly documents rendered under a bound and reused (services/reports/quarterly_service.py): identical requests
share one render, requests beyond the render slots and queue get 503 render_busy with Retry-After, one agency's
document never reaches another, and a kept document expires.

The fake read APIs are those of test_reports_quarterly; the renderer is a fake that blocks in its worker thread
until the test releases it, so "in flight" is a state the test waits for (polling with a deadline), not a sleep."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from support import poll

from services.common.auth import Principal, Role
from services.reports import quarterly_service
from services.reports.adapters import ReadApis
from services.reports.handlers import ReportsService
from services.reports.metrics import QuarterlyMetrics
from services.reports.quarterly_routes import quarterly_router
from services.reports.quarterly_service import QuarterlyReports, RenderBusy, document_key
from services.reports.settings import ReportsSettings
from tests.unit import test_reports_quarterly as base
from tests.unit.test_reports_quarterly import AGENCY, KEY, NOW, PO, KeysInMemory, fake_apis

RD = "nn_rd_" + "r" * 40
DEADLINE = 20.0  # seconds any awaited state may take before the test fails (never a pause)


class Keys(KeysInMemory):
    KEYS = {**KeysInMemory.KEYS, RD: Principal("rd", Role.agency, "rd")}


class SlowRenderer:
    """Stands in for quarterly_service.render: records each call, blocks until `release` is set, and answers a
    body naming the report's scope, format and time so a test can tell whose document it got."""

    def __init__(self, released: bool = False):
        self.calls: list[tuple[str | None, str]] = []
        self.release = threading.Event()
        if released:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, report, fmt: str) -> bytes:
        with self._lock:
            self.calls.append((report.agency, fmt))
        if not self.release.wait(timeout=DEADLINE):
            raise TimeoutError("the test never released the render")
        return f"{fmt}|{report.agency or 'all'}|{report.data_as_of.isoformat()}".encode()


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(registry: CollectorRegistry | None = None, monotonic=None, **overrides) -> QuarterlyReports:
    settings = ReportsSettings(reports_api_key=KEY, **overrides)
    service = ReportsService(ReadApis(settings, transport=fake_apis()), settings, clock=lambda: NOW)
    kwargs = {"monotonic": monotonic} if monotonic is not None else {}
    return QuarterlyReports(service, metrics=QuarterlyMetrics(registry or CollectorRegistry()), **kwargs)


@pytest.fixture
def renderer(monkeypatch) -> SlowRenderer:
    fake = SlowRenderer()
    monkeypatch.setattr(quarterly_service, "render", fake)
    yield fake
    fake.release.set()  # a failed test leaves no worker thread blocked


def http(reports: QuarterlyReports) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(quarterly_router(reports, Keys(), reports.metrics))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=DEADLINE)


async def ask(client: httpx.AsyncClient, key: str, **params) -> httpx.Response:
    params = {"fiscal_year": 2569, "quarter": 2, "format": "pdf", **params}
    return await client.get("/v1/reports/quarterly", params=params, headers={"X-API-Key": key})


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def count_lookups(reports: QuarterlyReports) -> list[int]:
    """How many requests have reached the document cache (built their report and asked for its document)."""
    arrived = [0]
    lookup = reports.documents.lookup

    async def counted(*args, **kwargs):
        arrived[0] += 1
        return await lookup(*args, **kwargs)

    reports.documents.lookup = counted
    return arrived


# --- (a) identical concurrent requests: one render ----------------------------------------------------------

async def test_concurrent_identical_requests_share_one_render(renderer):
    registry = CollectorRegistry()
    reports = make(registry)
    arrived = count_lookups(reports)
    n = 6
    async with http(reports) as client:
        requests = [asyncio.ensure_future(ask(client, AGENCY)) for _ in range(n)]
        await poll(lambda: arrived[0] == n and len(renderer.calls) == 1, DEADLINE, 0.01, "all requests waiting")
        renderer.release.set()
        answers = await asyncio.wait_for(asyncio.gather(*requests), DEADLINE)
        again = await ask(client, AGENCY)  # after it finished: the kept document, still no second render
    assert renderer.calls == [("ocsc", "pdf")]
    assert {a.status_code for a in [*answers, again]} == {200}
    assert len({a.content for a in [*answers, again]}) == 1
    # Reuse in the process changes nothing for shared caches: keyed content is never stored by them.
    assert {a.headers["cache-control"] for a in [*answers, again]} == {"private, no-store"}
    lookups = {r: sample(registry, "newnormal_reports_quarterly_document_lookups_total", format="pdf", result=r)
               for r in ("miss", "shared", "hit")}
    assert lookups == {"miss": 1, "shared": n - 1, "hit": 1}
    assert sample(registry, "newnormal_reports_quarterly_renders_total", format="pdf", outcome="ok") == 1
    assert sample(registry, "newnormal_reports_quarterly_documents_total", format="pdf", outcome="ok") == n + 1


# --- (b) beyond the render slots and the queue: 503 with Retry-After --------------------------------------

async def test_requests_beyond_concurrency_and_queue_get_503_with_retry_after(renderer):
    registry = CollectorRegistry()
    reports = make(registry, reports_render_concurrency=1, reports_render_queue=1)
    async with http(reports) as client:
        first = asyncio.ensure_future(ask(client, PO, format="pdf"))
        await poll(lambda: reports.gate.running == 1, DEADLINE, 0.01, "first render running")
        second = asyncio.ensure_future(ask(client, PO, format="xlsx"))
        await poll(lambda: reports.gate.waiting == 1, DEADLINE, 0.01, "second render queued")
        refused = await asyncio.wait_for(ask(client, PO, format="html"), DEADLINE)
        # The same request as one in flight is not a new render: it waits for that one, full gate or not.
        same = asyncio.ensure_future(ask(client, PO, format="pdf"))
        other_agency = await asyncio.wait_for(ask(client, AGENCY, format="pdf"), DEADLINE)
        assert not same.done()
        renderer.release.set()
        done = await asyncio.wait_for(asyncio.gather(first, second, same), DEADLINE)
        after = await asyncio.wait_for(ask(client, PO, format="html"), DEADLINE)  # room again
    for answer in (refused, other_agency):
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
        assert int(answer.headers["retry-after"]) >= 1
        body = answer.json()
        assert body["reason"] == "render_busy" and body["status"] == 503
        assert body["type"] == "urn:newnormal:problem:render_busy"
        assert body["detail"].startswith("ระบบกำลังจัดทำรายงาน") and "retry after" in body["detail"]
        assert answer.headers["retry-after"] in body["detail"]
    assert [a.status_code for a in done] == [200, 200, 200] and done[0].content == done[2].content
    assert after.status_code == 200
    assert renderer.calls == [(None, "pdf"), (None, "xlsx"), (None, "html")]  # the refused ones never rendered
    assert sample(registry, "newnormal_reports_quarterly_documents_total", format="html", outcome="busy") == 1
    assert sample(registry, "newnormal_reports_quarterly_documents_total", format="pdf", outcome="busy") == 1
    assert reports.gate.running == reports.gate.waiting == 0


async def test_a_request_that_goes_away_keeps_its_slot_until_the_render_ends(renderer):
    reports = make(reports_render_concurrency=1, reports_render_queue=0)
    report = await reports.build(2569, 2, None)
    leader = asyncio.ensure_future(reports.document(report, "pdf"))
    await poll(lambda: len(renderer.calls) == 1, DEADLINE, 0.01, "render started")
    leader.cancel()  # the client hung up; its render's thread cannot be stopped
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert reports.gate.running == 1
    with pytest.raises(RenderBusy):  # so the slot is still taken
        await reports.document(await reports.build(2569, 2, "ocsc"), "pdf")
    renderer.release.set()
    await poll(lambda: reports.gate.running == 0, DEADLINE, 0.01, "slot freed when the thread ended")
    body, _, _ = await reports.document(report, "pdf")  # and the finished document was kept for the next caller
    assert body.startswith(b"pdf|all|") and renderer.calls == [(None, "pdf")]


async def test_the_scheduled_delivery_waits_its_turn_and_is_never_refused(renderer):
    reports = make(reports_render_concurrency=1, reports_render_queue=0)
    report = await reports.build(2569, 2, None)
    busy = asyncio.ensure_future(reports.document(report, "pdf"))
    await poll(lambda: reports.gate.running == 1, DEADLINE, 0.01, "slot taken")
    delivery = asyncio.ensure_future(reports.render_queued(report, "pdf"))
    await poll(lambda: reports.gate.waiting == 1, DEADLINE, 0.01, "delivery waiting")
    assert len(renderer.calls) == 1  # not run beside the other render
    renderer.release.set()
    await asyncio.wait_for(asyncio.gather(busy, delivery), DEADLINE)
    assert renderer.calls == [(None, "pdf"), (None, "pdf")]  # rendered afresh, not taken from the cache


# --- (c) one agency's document never reaches another --------------------------------------------------------

async def test_different_agencies_never_share_a_document(renderer):
    renderer.release.set()
    reports = make(reports_render_concurrency=2, reports_render_queue=4)
    async with http(reports) as client:
        answers = await asyncio.wait_for(asyncio.gather(
            ask(client, AGENCY), ask(client, RD), ask(client, PO), ask(client, PO, agency="ocsc"),
            ask(client, AGENCY), ask(client, RD)), DEADLINE)
    assert [a.status_code for a in answers] == [200] * 6
    scopes = [a.content.decode().split("|")[1] for a in answers]
    assert scopes == ["ocsc", "rd", "all", "ocsc", "ocsc", "rd"]
    # One render per scope: the programme office asking for ocsc gets exactly what ocsc's own key gets.
    assert sorted(renderer.calls, key=str) == sorted([("ocsc", "pdf"), ("rd", "pdf"), (None, "pdf")], key=str)


async def test_the_key_names_the_scope_and_the_figures_but_not_the_time_asked(monkeypatch):
    reports = make()
    ocsc, rd = await reports.build(2569, 2, "ocsc"), await reports.build(2569, 2, "rd")
    assert document_key(ocsc, "pdf")[2] == "ocsc" and document_key(ocsc, "pdf") != document_key(rd, "pdf")
    assert document_key(ocsc, "pdf") != document_key(ocsc, "xlsx")
    assert document_key(ocsc, "pdf", "th") != document_key(ocsc, "pdf", "en")
    later = make()
    later.service.clock = lambda: NOW.replace(minute=NOW.minute + 1)
    again = await later.build(2569, 2, "ocsc")
    assert again.data_as_of != ocsc.data_as_of and document_key(again, "pdf") == document_key(ocsc, "pdf")
    moved = dict(base.MILESTONES[0], due_date="2026-03-15")  # REG-1 (ocsc) rescheduled again: other figures
    monkeypatch.setattr(base, "MILESTONES", [moved, *base.MILESTONES[1:]])
    changed = await make().build(2569, 2, "ocsc")
    assert document_key(changed, "pdf") != document_key(ocsc, "pdf")


# --- (d) a kept document expires; the cache is bounded --------------------------------------------------------

async def test_a_kept_document_expires(renderer):
    renderer.release.set()
    clock = Monotonic()
    reports = make(monotonic=clock, reports_document_cache_seconds=60)
    report = await reports.build(2569, 2, "ocsc")
    first, _, _ = await reports.document(report, "html")
    clock.now += 59
    assert (await reports.document(report, "html"))[0] == first and len(renderer.calls) == 1
    clock.now += 2  # 61 s after it was kept
    assert (await reports.document(report, "html"))[0] == first and len(renderer.calls) == 2


async def test_zero_seconds_keeps_nothing_but_still_shares_the_render_in_flight(renderer):
    reports = make(reports_document_cache_seconds=0)
    report = await reports.build(2569, 2, "ocsc")
    both = asyncio.ensure_future(asyncio.gather(reports.document(report, "pdf"), reports.document(report, "pdf")))
    await poll(lambda: len(renderer.calls) == 1, DEADLINE, 0.01, "render started")
    renderer.release.set()
    await asyncio.wait_for(both, DEADLINE)
    await reports.document(report, "pdf")
    assert len(renderer.calls) == 2


async def test_the_cache_keeps_the_most_recently_used_documents(renderer):
    renderer.release.set()
    reports = make(reports_document_cache_max_entries=2)
    report = await reports.build(2569, 2, "ocsc")
    for fmt in ("pdf", "xlsx", "pdf", "html"):  # pdf used again before html arrives: xlsx is the one dropped
        await reports.document(report, fmt)
    assert renderer.calls == [("ocsc", "pdf"), ("ocsc", "xlsx"), ("ocsc", "html")]
    await reports.document(report, "pdf")
    await reports.document(report, "xlsx")
    assert renderer.calls[3:] == [("ocsc", "xlsx")]


async def test_a_failed_render_is_not_kept_and_frees_its_slot(monkeypatch):
    calls = []

    def broken(report, fmt):
        calls.append(fmt)
        raise RuntimeError("layout failed")

    monkeypatch.setattr(quarterly_service, "render", broken)
    registry = CollectorRegistry()
    reports = make(registry)
    report = await reports.build(2569, 2, "ocsc")
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await reports.document(report, "pdf")
    assert calls == ["pdf", "pdf"] and reports.gate.running == 0
    assert sample(registry, "newnormal_reports_quarterly_renders_total", format="pdf", outcome="error") == 2
