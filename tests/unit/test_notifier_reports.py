"""Quarterly reports by e-mail: reports.quarterly.generated -> notifications on `quarterly_report` routes; the
e-mail carries the PDF fetched with the key (checked against the announced hash), the link otherwise."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email import message_from_bytes

import httpx
import pytest
from fakes_notifier import FakeRepo
from prometheus_client import CollectorRegistry

from services.common.consumer import Batch
from services.contracts.envelope import make_event
from services.notifier.channels import Delivery, EmailChannel
from services.notifier.contact_book import ContactBook
from services.notifier.domain import parse_routing
from services.notifier.handlers import NotifierService
from services.notifier.holidays import load_holidays
from services.notifier.metrics import NotifierMetrics
from services.notifier.reports import AttachmentUnavailable, ReportFetcher
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Renderer
from tests.unit.test_notifier_handlers import Clock

NOW = datetime(2026, 4, 6, 3, 0, tzinfo=UTC)  # Monday 10:00 Bangkok: working hours
PDF = b"%PDF-1.7 quarterly report " + bytes(range(256))
BASE = "http://reports.internal:8105"
KEY = "nn_opdc_" + "k" * 40
ROUTING = parse_routing({
    "recipients": {"pmo": {"email": "pmo@opdc.go.th", "line": "Cpmo"}, "dga": {"email": "owner@dga.or.th"}},
    "routes": [{"name": "report", "match": {"type": ["quarterly_report"]}, "recipients": ["pmo"],
                "channels": ["email", "line"]},
               {"name": "alerts", "match": {"type": ["missed"]}, "recipients": ["dga"], "channels": ["email"]}]})


def announced(url: str = f"{BASE}/v1/reports/quarterly/archive/2569-q2-all.pdf", body: bytes = PDF):
    return make_event("reports.quarterly.generated", {
        "document_id": "2569-q2-all", "fiscal_year": 2569, "quarter": 2, "data_as_of": NOW.isoformat(),
        "pdf_url": url, "html_url": url.replace(".pdf", ".html"), "xlsx_url": url.replace(".pdf", ".xlsx"),
        "pdf_sha256": hashlib.sha256(body).hexdigest(), "pdf_bytes": len(body),
        "section_status": {"roadmap": "amber", "regulation": "red", "readiness": "green", "access": "amber",
                           "awareness": "not_reported"},
        "schedule_changes": 3, "flagged_slips": 1, "unavailable": ["feedback"]},
        agency="opdc", source="/services/reports", id="quarterly:2569-q2-all", time=NOW)


def make_service() -> tuple[NotifierService, FakeRepo]:
    repo = FakeRepo()
    svc = NotifierService(settings=NotifierSettings(notifier_max_attempts=3), repo=repo, routing=ROUTING,
                          renderer=Renderer("https://dash"), channels={}, metrics=NotifierMetrics(CollectorRegistry()),
                          holidays=load_holidays(),
                          contacts=ContactBook(repo, ROUTING, Clock(NOW)), clock=Clock(NOW))
    return svc, repo


def fetcher(answer: httpx.Response | None = None, seen: list | None = None, key: str | None = KEY) -> ReportFetcher:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answer or httpx.Response(200, content=PDF)
    return ReportFetcher(httpx.AsyncClient(transport=httpx.MockTransport(handler)), key, 1024 * 1024, 3, BASE)


async def test_an_announcement_becomes_one_notification_per_report_route_target_once():
    svc, repo = make_service()
    await svc.on_reports(Batch([announced()]))
    await svc.on_reports(Batch([announced()]))  # redelivered: nothing new
    docs = sorted(repo.docs.values(), key=lambda d: d["channel"])
    assert [(d["recipient"], d["channel"], d["kind"]) for d in docs] == [("pmo", "email", "report"),
                                                                         ("pmo", "line", "report")]
    message = svc.renderer.render(docs[0])
    assert "ไตรมาส 2/2569" in message.subject and message.link.endswith("2569-q2-all.pdf")
    assert "ต้องเร่งแก้ไข" in message.text and "feedback" in message.text and "1 รายการ" in message.text


async def test_the_email_carries_the_fetched_pdf_and_the_key_goes_only_to_the_reports_service():
    svc, repo = make_service()
    await svc.on_reports(Batch([announced()]))
    doc = next(d for d in repo.docs.values() if d["channel"] == "email")
    seen: list[httpx.Request] = []
    (attachment,) = await fetcher(seen=seen).attachments(doc)
    assert seen[0].headers["X-API-Key"] == KEY and attachment.content == PDF
    delivery = Delivery(doc["_id"], doc["key"], doc["address"], svc.renderer.render(doc), {}, (attachment,))
    mail = message_from_bytes(EmailChannel(NotifierSettings()).build(delivery).as_bytes())
    parts = [p for p in mail.walk() if p.get_filename()]
    assert [(p.get_filename(), p.get_content_type(), p.get_payload(decode=True)) for p in parts] == [
        ("2569-q2-all.pdf", "application/pdf", PDF)]
    line = next(d for d in repo.docs.values() if d["channel"] == "line")
    assert await fetcher().attachments(line) == ()  # other channels carry the link


@pytest.mark.parametrize(("url", "key"), [
    ("http://evil.example/v1/reports/quarterly/archive/2569-q2-all.pdf", KEY),  # never send the key elsewhere
    (f"{BASE}/v1/reports/quarterly/archive/2569-q2-all.pdf", None),  # no key configured: link only
])
async def test_link_only_without_a_request(url, key):
    svc, repo = make_service()
    await svc.on_reports(Batch([announced(url)]))
    doc = next(d for d in repo.docs.values() if d["channel"] == "email")
    seen: list[httpx.Request] = []
    assert await fetcher(seen=seen, key=key).attachments(doc) == () and seen == []


@pytest.mark.parametrize("answer", [httpx.Response(503), httpx.Response(200, content=PDF + b"tampered")])
async def test_a_failed_or_mismatched_fetch_is_retried_then_sent_as_a_link(answer):
    svc, repo = make_service()
    await svc.on_reports(Batch([announced()]))
    doc = next(d for d in repo.docs.values() if d["channel"] == "email")
    with pytest.raises(AttachmentUnavailable):
        await fetcher(answer).attachments({**doc, "attempts": 1})
    assert await fetcher(answer).attachments({**doc, "attempts": 3}) == ()  # last attempt: the link is enough
