"""Service layer of the feedback service: one function per use case, I/O through the repository."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse

from services.common import idempotency as idempotency_keys
from services.common.auth import Principal
from services.common.consumer import Batch, Rejected
from services.common.http_ingest import Ingestor, problem
from services.common.idempotency import IdempotencyStore
from services.common.mongo import TRANSIENT_ERRORS
from services.common.ratelimit import TokenBucket
from services.contracts.envelope import Event, EventError, make_event
from services.contracts.events import FEEDBACK_RESPONSE_SUBMITTED
from services.contracts.thai_calendar import bangkok_today, format_thai_date
from services.feedback import disclosure, domain
from services.feedback.adapters import ResponseStore
from services.feedback.settings import FeedbackSettings

log = logging.getLogger(__name__)


class FeedbackService:
    def __init__(self, repo: ResponseStore, settings: FeedbackSettings, clock: Callable[[], datetime],
                 intake: Ingestor | None = None, form_limiter: TokenBucket | None = None,
                 idempotency: IdempotencyStore | None = None):
        self.repo = repo
        self.settings = settings
        self.clock = clock
        self.intake = intake  # the service's /v1/events intake: forms are published through it
        self.form_limiter = form_limiter  # the per-key budget of /v1/responses, counted in responses
        self.idempotency = idempotency  # claims of Idempotency-Key headers (create_app builds it over MongoDB)

    # --- write path --------------------------------------------------------------------------------
    async def handle_batch(self, batch: Batch) -> list[Rejected]:
        """Consumer handler: events arrive prepared (redacted, age group set). The consumer runs with
        `handler_audits`: the stored response is the audit record, and its keys stored first are reported back
        (only those reach the rollups). The consumer refuses a re-sent response with other content (`id_conflict`)."""
        documents = [domain.response_document(e) for e in batch.events]  # redactions counted once, here
        stored = await self.repo.store(batch.events, documents)
        batch.new_keys.update(stored)
        redactions = sum(sum(d["redactions"].values()) for d in documents)
        # Counts only: comments never reach the logs.
        log.info("feedback batch stored", extra={"events": len(batch.events), "new": len(stored), "redactions": redactions})
        return []

    @staticmethod
    def survey_event(body: dict[str, Any], agency: str, time: datetime | None = None, id: str | None = None) -> Event:
        """Wrap a plain form submission into a CloudEvent with a server-generated id, or the one an idempotency
        key stands for (validated like any event); `time`: when it was received (the service's clock)."""
        data = {k: v for k, v in body.items()}
        data["agency"] = agency
        return make_event(FEEDBACK_RESPONSE_SUBMITTED, data, agency=agency, source=f"/agencies/{agency}/survey",
                          id=id or str(uuid.uuid4()), time=time, partitionkey=agency)

    async def submit_response(self, form: Any, principal: Principal, idempotency_key: str | None = None) -> JSONResponse:
        """One citizen's form (plain JSON; `agency` defaults to the key's) wrapped into a CloudEvent and
        published through the service's intake, so every rule of `/v1/events` applies unchanged: the key's
        own agency only (403 `agency_not_allowed`), prepare (redaction), 503 when Kafka does not take it.

        With an `Idempotency-Key`, a retry of the same body gets the first answer (the same response id; the same
        event is published again and the consumer stores it once); another body under that key: 409."""
        if idempotency_key is not None and not idempotency_keys.valid_key(idempotency_key):
            return problem(400, idempotency_keys.INVALID_KEY, f"{idempotency_keys.HEADER} must be {idempotency_keys.KEY_FORMAT}")
        if not isinstance(form, dict):
            return problem(400, "invalid_form", "the body must be a JSON object")
        body_fingerprint = idempotency_keys.fingerprint(form)
        agency = form.pop("agency", None) or principal.agency
        if not isinstance(agency, str):
            return problem(400, "invalid_form", "agency must be an agency code (GET /v1/agencies)")
        now = self.clock()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as MongoDB keeps it: a retry repeats it exactly
        event_id = idempotency_keys.event_id(idempotency_key) if idempotency_key else None
        try:
            event = self.survey_event(form, agency, now, event_id)
        except EventError as err:
            return problem(400, err.reason, err.detail)
        claim = None
        if idempotency_key is not None and principal.may_submit(event) is None:
            assert self.idempotency is not None, "create_app builds the idempotency store"
            try:
                claim = await self.idempotency.claim(principal.agency, idempotency_key, body_fingerprint, now)
            except TRANSIENT_ERRORS:
                return problem(503, "database_unavailable", f"the response store is unreachable; retry later with the "
                               f"same {idempotency_keys.HEADER}", headers={"Retry-After": "5"})
            if claim.fingerprint != body_fingerprint:
                return problem(409, idempotency_keys.KEY_REUSED, f"this {idempotency_keys.HEADER} was sent before with another "
                               "body: make a new key for every new submission")
            if not claim.first:
                event = self.survey_event(form, agency, claim.time, event_id)
        assert self.intake is not None, "create_app mounts the intake before the routes"
        answer = await self.intake.ingest([event], principal)
        if answer.status_code != 202:
            if claim is not None and claim.first and 400 <= answer.status_code < 500:
                # Refused, nothing published: the key stays free for the corrected form (the page makes a new
                # key after a 4xx anyway, so a release lost to an outage costs nothing).
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await self.idempotency.release(principal.agency, idempotency_key)  # type: ignore[arg-type]
            return answer
        return JSONResponse({"id": event.id, "source": event.source, "status": "accepted"}, status_code=202)

    # --- read path ---------------------------------------------------------------------------------
    def resolve_range(self, start: date | None, end: date | None) -> tuple[date, date]:
        today = bangkok_today(self.clock())
        _, default_end = domain.default_range(today, self.settings.feedback_default_days)
        end = end or (default_end if start is None else max(start, default_end))
        start = start or (end - timedelta(days=self.settings.feedback_default_days - 1))
        if start > end:
            raise EventError("invalid_range", "from must not be after to")
        if (end - start).days + 1 > self.settings.feedback_max_days:
            raise EventError("invalid_range", f"at most {self.settings.feedback_max_days} days per query")
        return start, end

    async def cells(self, start: date, end: date, agency: str | None) -> list[domain.Cell]:
        counters = await self.repo.daily_cells(start, end, agency)
        return domain.cells_in_order(domain.Cell.from_counts(age_group, channel, counts)
                                     for (channel, age_group), counts in counters.items() if counts.get("responses"))

    async def suppression(self, cells: list[domain.Cell], start: date, end: date, agency: str | None,
                          reader: Principal | None) -> disclosure.Suppression:
        """Nothing hidden from the programme office; small cells hidden from everyone else. Reading the
        national aggregate, an agency is assumed to know its own agency's part of it."""
        if reader is None or reader.reads_all:
            return disclosure.NONE
        known_cells = None
        if agency is None:
            known_cells = await self.cells(start, end, reader.agency)
        return disclosure.plan(cells, self.settings.feedback_min_published_cell, known_cells=known_cells)

    async def experience(self, start: date | None, end: date | None, agency: str | None,
                         reader: Principal | None = None) -> dict[str, Any]:
        _check_reader(agency, reader)
        start, end = self.resolve_range(start, end)
        cells = await self.cells(start, end, agency)
        hidden = await self.suppression(cells, start, end, agency, reader)
        return {**_period(start, end, agency), "overall": disclosure.overall_dict(domain.overall(cells), hidden),
                "cells": [disclosure.cell_dict(c, hidden) for c in cells], "suppression": hidden.as_dict()}

    async def gaps(self, start: date | None, end: date | None, agency: str | None,
                   reader: Principal | None = None) -> dict[str, Any]:
        _check_reader(agency, reader)
        start, end = self.resolve_range(start, end)
        cells = await self.cells(start, end, agency)
        hidden = await self.suppression(cells, start, end, agency, reader)
        s = self.settings
        results = domain.satisfaction_gaps(cells, alpha=s.feedback_gap_alpha, min_cell=s.feedback_gap_min_cell,
                                           bonferroni=s.feedback_gap_bonferroni)
        tested = len(results)
        return {
            **_period(start, end, agency),
            "overall": disclosure.overall_dict(domain.overall(cells), hidden),
            "suppression": hidden.as_dict(),
            "test": {
                "name": "one-sided two-proportion z-test (pooled), share satisfied (4-5) of the cell vs all other responses",
                "name_th": "การทดสอบ z สองสัดส่วนแบบทางเดียว: สัดส่วนผู้พึงพอใจ (4-5) ของกลุ่มเทียบกับผู้ตอบที่เหลือ",
                "alpha": s.feedback_gap_alpha,
                "bonferroni": s.feedback_gap_bonferroni,
                "alpha_per_cell": (s.feedback_gap_alpha / tested) if s.feedback_gap_bonferroni and tested else s.feedback_gap_alpha,
                "min_cell_responses": s.feedback_gap_min_cell,
                "cells_tested": tested,
                "cells_too_small": sum(1 for c in cells if c.responses < s.feedback_gap_min_cell),
            },
            "gaps": [disclosure.gap_dict(_gap(r), r.cell, hidden) for r in results if r.significant],
        }


def _check_reader(agency: str | None, reader: Principal | None) -> None:
    """`agency` omitted is the national aggregate, readable by every reader; naming an agency is the read
    rule of every service (another agency's figures: 403 `agency_not_allowed`)."""
    if agency is not None and reader is not None:
        reader.read_scope(agency)


def _period(start: date, end: date, agency: str | None) -> dict[str, Any]:
    return {"from": start.isoformat(), "to": end.isoformat(), "agency": agency,
            "period_th": f"{format_thai_date(start)} – {format_thai_date(end)}"}


def _gap(result: domain.GapResult) -> dict[str, Any]:
    cell = result.cell
    return {
        "age_group": cell.age_group, "cohort": domain.cohort_of(cell.age_group), "channel": cell.channel,
        "responses": cell.responses, "share_satisfied": round(result.cell_share, 4),
        "rest_share_satisfied": round(result.rest_share, 4), "overall_share_satisfied": round(result.overall_share, 4),
        "z": round(result.z, 3), "p_value": result.p_value,
    }
