"""Quarterly reports by e-mail: `reports.quarterly.generated` (topic reports.events) -> one notification per
(recipient, channel) of every route matching type `quarterly_report` (deploy/notifier/routes.yaml: the programme
office), delivered by the same dispatcher, retries and idempotency as alerts.

The event carries links, not the document (CloudEvents' 64 KiB): at delivery the e-mail channel gets the PDF
fetched from `pdf_url` with NEWNORMAL_NOTIFIER_REPORTS_API_KEY (a programme-office key) and checked against the
event's SHA-256 and size. The key is sent only to URLs under NEWNORMAL_NOTIFIER_REPORTS_URL. Without that key, for a PDF over NEWNORMAL_NOTIFIER_REPORT_ATTACHMENT_MAX_BYTES, or when
the last attempt still cannot fetch it, the e-mail goes with the link only and says so; a transient fetch failure
before that is retried like any delivery. Other channels (LINE, Teams, Slack, webhook) always carry the link.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from services.contracts.envelope import Event
from services.notifier.domain import Channel, Kind, idempotency_key

log = logging.getLogger(__name__)
REPORT_TYPE = "quarterly_report"  # the routing file's match.type


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"


class AttachmentUnavailable(RuntimeError):
    """The PDF could not be fetched now; the delivery is retried (not on its last attempt: link only then)."""


def report_notifications(service: Any, event: Event, now: datetime) -> list[dict[str, Any]]:
    """Notification documents of one announcement (`service` is the NotifierService: its routing and _doc)."""
    data = event.data_dict()
    agency = data.get("report_agency")
    docs: dict[str, dict[str, Any]] = {}
    for route in service.routing.match(REPORT_TYPE, agency, None):
        for target in service.routing.targets(route.recipients, route.channels):
            key = idempotency_key(event.id, target.recipient, target.channel)
            if key in docs:
                continue
            # Sent when announced: the reports service's schedule (day of the month) already says when.
            doc = service._doc(key=key, kind=Kind.report, alert_type=REPORT_TYPE, event_id=event.id,
                               event_time=event.time, target=target, route=route, urgent=True, now=now, agency=agency)
            doc["report"] = data
            docs[key] = doc
    return list(docs.values())


class ReportFetcher:
    """Fetches an announced PDF for the e-mail channel (see the module's rules)."""

    def __init__(self, client: httpx.AsyncClient | None, api_key: str | None, max_bytes: int, max_attempts: int,
                 reports_url: str):
        self.client, self.api_key, self.max_bytes, self.max_attempts = client, api_key, max_bytes, max_attempts
        self.reports_url = reports_url.rstrip("/") + "/"

    async def attachments(self, doc: dict[str, Any]) -> tuple[Attachment, ...]:
        report = doc.get("report")
        if report is None or doc.get("channel") != Channel.email.value:
            return ()
        if self.client is None or not self.api_key or int(report.get("pdf_bytes") or 0) > self.max_bytes:
            return ()
        if not str(report.get("pdf_url", "")).startswith(self.reports_url):
            # The key goes only to our own reports service, whatever a record on the topic says.
            log.warning("report link outside the reports service; sent as a link only",
                        extra={"notification_id": doc.get("_id")})
            return ()
        try:
            return (await self._fetch(report),)
        except AttachmentUnavailable as exc:
            if int(doc.get("attempts") or 1) >= self.max_attempts:
                log.warning("report e-mailed without its PDF", extra={"notification_id": doc.get("_id"),
                                                                       "error": str(exc)[:200]})
                return ()
            raise

    async def _fetch(self, report: dict[str, Any]) -> Attachment:
        assert self.client is not None and self.api_key
        try:
            response = await self.client.get(report["pdf_url"], headers={"X-API-Key": self.api_key})
        except httpx.HTTPError as exc:
            raise AttachmentUnavailable(type(exc).__name__) from None
        if response.status_code != 200:
            raise AttachmentUnavailable(f"HTTP {response.status_code}")
        body = response.content
        # The hash in the event is what the reports service archived: anything else is not that report.
        if len(body) != report.get("pdf_bytes") or hashlib.sha256(body).hexdigest() != report.get("pdf_sha256"):
            raise AttachmentUnavailable("the fetched PDF does not match the announced hash")
        return Attachment(f"{report['document_id']}.pdf", body)
