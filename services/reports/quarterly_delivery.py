"""Scheduled delivery of the quarterly report (off by default).

When NEWNORMAL_REPORTS_QUARTERLY_SCHEDULE_ENABLED is true, a background pass (Runtime.every) checks whether the
quarter that just ended is due: on or after day NEWNORMAL_REPORTS_QUARTERLY_SCHEDULE_DAY of the month after it
(Bangkok time). The whole programme's report is then made once (one content object, three formats), archived in
MongoDB (`quarterly_reports`, one document per quarter) and announced as `reports.quarterly.generated` on
`reports.events` with links to the archived documents; the notifier e-mails it to the programme office.

Once across replicas and restarts: a replica claims the quarter by inserting its archive document (unique `_id`);
a claim left `generating` longer than the lease is taken over; an archived report whose event did not go out is
published again on the next pass (same event id: the notifier's idempotency key drops a repeat).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock
from services.common.mongo import insert_if_new
from services.contracts.agencies import PROGRAMME_OFFICE
from services.contracts.envelope import SERVICE_SOURCE_PREFIX, make_event
from services.contracts.events import REPORT_QUARTERLY_GENERATED
from services.contracts.reports import QuarterlyReportGenerated
from services.contracts.thai_calendar import bangkok_day
from services.reports import domain, quarterly
from services.reports.quarterly_service import FORMATS, QuarterlyReports

log = logging.getLogger(__name__)
COLLECTION = "quarterly_reports"
SOURCE = f"{SERVICE_SOURCE_PREFIX}reports"
LEASE = timedelta(minutes=15)


def due_quarter(today: date, day: int) -> domain.Quarter | None:
    """The quarter that ended before `today`, if day `day` of the month after it has come (else None)."""
    current = domain.quarter_of(today)
    if today < current.start.replace(day=day):
        return None
    return current.previous()


def document_id(q: domain.Quarter, agency: str | None = None) -> str:
    return f"{q.fiscal_year}-q{q.quarter}-{agency or 'all'}"


def archive_url(base: str, doc_id: str, fmt: str) -> str:
    return f"{base.rstrip('/')}/v1/reports/quarterly/archive/{doc_id}.{fmt}"


def announcement(report: quarterly.QuarterlyReport, doc_id: str, base_url: str, pdf: bytes) -> QuarterlyReportGenerated:
    return QuarterlyReportGenerated(
        document_id=doc_id, fiscal_year=report.quarter.fiscal_year, quarter=report.quarter.quarter,
        report_agency=report.agency, data_as_of=report.data_as_of,
        pdf_url=archive_url(base_url, doc_id, "pdf"), html_url=archive_url(base_url, doc_id, "html"),
        xlsx_url=archive_url(base_url, doc_id, "xlsx"), pdf_sha256=hashlib.sha256(pdf).hexdigest(),
        pdf_bytes=len(pdf), section_status={s.key: s.status for s in report.overview.sections()},
        schedule_changes=report.slips_total, flagged_slips=report.flagged, unavailable=list(report.unavailable))


class QuarterlyArchive:
    """The archived documents, one MongoDB document per quarter (each format well under the 16 MB limit)."""

    def __init__(self, db: AsyncDatabase):
        self.collection = db[COLLECTION]

    async def claim(self, doc_id: str, now: datetime) -> dict[str, Any] | None:
        """The archive document if this replica may work on it (new, stale claim, or archived but not yet
        announced); None while another replica holds a fresh claim or it is already announced."""
        if await insert_if_new(self.collection, {"_id": doc_id, "state": "generating", "claimed_at": now}):
            return {"_id": doc_id, "state": "generating"}
        doc = await self.collection.find_one({"_id": doc_id}, {"state": 1, "claimed_at": 1, "event": 1})
        if doc is None or doc["state"] == "published":
            return None
        if doc["state"] == "archived":
            return doc
        taken = await self.collection.find_one_and_update(
            {"_id": doc_id, "state": "generating", "claimed_at": {"$lt": now - LEASE}}, {"$set": {"claimed_at": now}})
        return {"_id": doc_id, "state": "generating"} if taken else None

    async def save(self, doc_id: str, documents: dict[str, bytes], event: dict[str, Any], now: datetime) -> None:
        await self.collection.update_one({"_id": doc_id}, {"$set": {
            "state": "archived", "archived_at": now, "event": event,
            **{f"doc_{fmt}": body for fmt, body in documents.items()}}})

    async def published(self, doc_id: str, now: datetime) -> None:
        await self.collection.update_one({"_id": doc_id}, {"$set": {"state": "published", "published_at": now}})

    async def document(self, doc_id: str, fmt: str) -> bytes | None:
        doc = await self.collection.find_one({"_id": doc_id, "state": {"$in": ["archived", "published"]}},
                                             {f"doc_{fmt}": 1})
        body = (doc or {}).get(f"doc_{fmt}")
        return bytes(body) if body is not None else None


class QuarterlyDelivery:
    def __init__(self, reports: QuarterlyReports, archive: QuarterlyArchive, publisher: Any, *, day: int,
                 base_url: str, clock: Clock | None = None):
        self.reports, self.archive, self.publisher = reports, archive, publisher
        # The report service's clock by default: "due" and "not started yet" must agree.
        self.day, self.base_url, self.clock = day, base_url, clock or reports.service.clock

    async def tick(self) -> str | None:
        """One pass: the id of the report announced in it, or None (nothing due, or another replica's)."""
        now = self.clock()
        q = due_quarter(bangkok_day(now), self.day)
        if q is None:
            return None
        doc_id = document_id(q)
        claim = await self.archive.claim(doc_id, now)
        if claim is None:
            return None
        event_json = claim.get("event")
        if claim["state"] == "generating":
            report = await self.reports.build(q.fiscal_year, q.quarter, None)
            if len(report.unavailable) == 3:  # nothing to report: leave the claim to expire and try again
                log.warning("quarterly report postponed: no read API answered", extra={"document_id": doc_id})
                return None
            # Through the service's render gate (its turn, never refused), not its document cache: the archived
            # documents must carry this report's own "data as of", as the event does.
            documents = {fmt: await self.reports.render_queued(report, fmt) for fmt in FORMATS}
            data = announcement(report, doc_id, self.base_url, documents["pdf"])
            event = make_event(REPORT_QUARTERLY_GENERATED, data, agency=PROGRAMME_OFFICE, source=SOURCE,
                               id=f"quarterly:{doc_id}", time=now, subject=doc_id, partitionkey=doc_id)
            event_json = event.to_json_dict()
            await self.archive.save(doc_id, documents, event_json, now)
        event = _event_from(event_json)
        await self.publisher.publish(event)
        await self.archive.published(doc_id, self.clock())
        log.info("quarterly report announced", extra={"document_id": doc_id})
        return doc_id


def _event_from(stored: dict[str, Any]):
    from services.contracts.envelope import validate_attributes

    attrs = {k: v for k, v in stored.items() if k != "data"}
    return validate_attributes(attrs, stored["data"])
