"""Service layer of the training service: applying events, readiness reads, xAPI intake."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common.auth import Principal
from services.common.consumer import Batch, Rejected
from services.common.kafka import EventPublisher
from services.contracts.envelope import Event, EventError, make_event
from services.contracts.events import TRAINING_COURSE_COMPLETED, TRAINING_TARGET_SET
from services.contracts.thai_calendar import fiscal_year_elapsed_ratio, fiscal_year_of
from services.contracts.training import TrainingCourseCompleted, TrainingTargetSet
from services.training import domain, xapi
from services.training.adapters import TrainingRepository, new_claim
from services.training.metrics import TrainingMetrics

log = logging.getLogger(__name__)


class Pseudonymiser:
    """`prepare` hook of the consumer: learner_ref becomes its keyed hash before anything is stored."""

    def __init__(self, secret: str):
        self._secret = secret

    def __call__(self, event: Event) -> Event:
        if event.type != TRAINING_COURSE_COMPLETED:
            return event
        data: TrainingCourseCompleted = event.data  # type: ignore[assignment]
        hashed = domain.learner_hash(self._secret, data.agency, data.learner_ref)
        return dataclasses.replace(event, data=data.model_copy(update={"learner_ref": hashed}))


class TrainingService:
    def __init__(self, repo: TrainingRepository, metrics: TrainingMetrics, clock: Callable[[], datetime],
                 xapi: XapiIntake | None = None):
        self.repo = repo
        self.metrics = metrics
        self.clock = clock
        self.xapi = xapi  # the xAPI statement intake its routes call
        # Claims this process started and did not finish (the handler failed and will be retried): nothing
        # else can be working on them, so the next batch finishes them at once instead of waiting to go stale.
        self._unfinished: set[str] = set()

    # --- Kafka ---------------------------------------------------------------------------------
    async def handle_batch(self, batch: Batch) -> list[Rejected]:
        """Apply a batch of training events (already pseudonymised by `Pseudonymiser`). Idempotent."""
        for old in sorted(self._unfinished):
            await self.repo.finish_claim(old)
            self._unfinished.discard(old)
        await self.repo.finish_stale_claims()
        claim = new_claim()
        self._unfinished.add(claim)
        now = self.clock()
        docs = []
        rejected: list[Rejected] = []
        for event in batch.events:
            if event.type == TRAINING_TARGET_SET:
                t: TrainingTargetSet = event.data  # type: ignore[assignment]
                await self.repo.set_target(t.fiscal_year, t.agency, t.competency.value, t.headcount, event.time, event.id)
                self.metrics.applied.labels(TRAINING_TARGET_SET).inc()
            elif event.type == TRAINING_COURSE_COMPLETED:
                c: TrainingCourseCompleted = event.data  # type: ignore[assignment]
                if not domain.is_learner_hash(c.learner_ref):
                    # Defence in depth: never store a clear pseudonym, even if wiring forgot the prepare hook.
                    rejected.append(Rejected(event, EventError("not_pseudonymised", "learner_ref was not hashed")))
                    continue
                docs.append(domain.completion_doc(event.source, event.id, c, c.learner_ref, claim, now))
        new = await self.repo.add_completions(docs, claim)
        self._unfinished.discard(claim)
        if new:
            self.metrics.applied.labels(TRAINING_COURSE_COMPLETED).inc(new)
        if len(docs) - new:
            self.metrics.duplicates.inc(len(docs) - new)
        return rejected

    # --- reads ---------------------------------------------------------------------------------
    async def readiness(self, fiscal_year: int, agency: str | None = None, competency: str | None = None) -> dict[str, Any]:
        """Rows of one agency (or all), their total, and the national total (all agencies: readable by any
        agency, as headcounts of trained officials are no one's personal data)."""
        rows = [domain.readiness_row(d) for d in await self.repo.rollup_docs([fiscal_year], agency, competency)]
        national_rows = rows if agency is None else [
            domain.readiness_row(d) for d in await self.repo.rollup_docs([fiscal_year], None, competency)]
        return {"fiscal_year": fiscal_year, "agency": agency, "competency": competency, "rows": rows,
                "total": _totals(rows), "national": _totals(national_rows)}

    async def laggards(self, fiscal_year: int, limit: int = 20, agency: str | None = None) -> dict[str, Any]:
        """Agencies ranked by gap to a linear path; with `agency`, that agency's entry only (with its rank)."""
        now = self.clock()
        rows = [domain.readiness_row(d) for d in await self.repo.rollup_docs([fiscal_year])]
        items = [{**item, "rank": i + 1} for i, item in enumerate(domain.laggards(rows, fiscal_year, now))]
        ranked = len(items)
        if agency is not None:
            items = [item for item in items if item["agency"] == agency]
        return {"fiscal_year": fiscal_year, "as_of": now.isoformat(),
                "elapsed_ratio": round(fiscal_year_elapsed_ratio(fiscal_year, now), 4), "agencies_ranked": ranked,
                "agencies": items[:limit]}

    def current_fiscal_year(self) -> int:
        return fiscal_year_of(self.clock())


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    target = sum(r["target"] or 0 for r in rows)
    ready = sum(r["ready_learners"] for r in rows)
    return {"target": target, "ready_learners": ready, "ratio": domain.readiness_ratio(ready, target),
            "completions": sum(r["completions"] for r in rows), "hours": round(sum(r["hours"] for r in rows), 2)}


@dataclass
class XapiOutcome:
    status: int
    body: Any = None
    reason: str | None = None
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class XapiIntake:
    """xAPI 1.0.3 statement resource (POST / PUT) mapped onto `training.course.completed` events."""

    def __init__(self, repo: TrainingRepository, publisher: EventPublisher, metrics: TrainingMetrics,
                 clock: Callable[[], datetime], max_statements: int):
        self.repo = repo
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.max_statements = max_statements

    def _fail(self, status: int, reason: str, detail: str, outcome: str = "rejected", **extra: Any) -> XapiOutcome:
        self.metrics.xapi.labels(outcome).inc()
        return XapiOutcome(status, reason=reason, detail=detail, extra=extra)

    def _malformed(self, exc: Exception) -> XapiOutcome:
        log.warning("xAPI statement could not be mapped", extra={"error_class": type(exc).__name__})
        return self._fail(400, "malformed_statement", "a statement holds a value of an unexpected type or range "
                          "(for example context or result not an object, a timestamp out of range)")

    async def submit(self, payload: Any, principal: Principal, put_id: str | None = None) -> XapiOutcome:
        statements = payload if isinstance(payload, list) else [payload]
        if put_id is not None and isinstance(payload, list):
            return self._fail(400, "malformed_statement", "PUT takes a single statement")
        if not statements:
            return XapiOutcome(200, body=[])
        if len(statements) > self.max_statements:
            return self._fail(413, "too_many_statements", f"at most {self.max_statements} statements per request")
        ids: list[str] = []
        try:
            for index, st in enumerate(statements):
                sid = xapi.check_statement(st, index)
                if put_id is not None:
                    try:
                        put_id = str(uuid.UUID(put_id))
                    except ValueError:
                        raise xapi.StatementError("invalid_statement_id", f"statementId {put_id!r} is not a UUID") from None
                    if sid is not None and sid != put_id:
                        raise xapi.StatementError("id_mismatch", "statementId differs from the statement's id")
                    sid = put_id
                if sid is None:
                    sid = str(uuid.uuid4())  # the LRS assigns ids to statements without one
                st = {**st, "id": sid}
                statements[index] = st
                ids.append(sid)
        except xapi.StatementError as err:
            return self._fail(400, err.reason, err.detail)
        except Exception as exc:  # a value of an unexpected type or range: this request's 400, never a 500
            return self._malformed(exc)
        if len(set(ids)) != len(ids):
            return self._fail(400, "duplicate_statement_id", "the same statement id appears twice in this request")
        hashes = {st["id"]: xapi.canonical_hash(st) for st in statements}
        known = await self.repo.known_statements(ids)
        conflicts = [sid for sid, h in known.items() if h != hashes[sid]]
        if conflicts:
            return self._fail(409, "statement_conflict", "a different statement is already stored under this id "
                              "(statements are immutable)", outcome="conflict", statement_ids=conflicts)
        fresh = [st for st in statements if st["id"] not in known]
        now = self.clock()
        events: list[Event] = []
        ignored: list[str] = []
        try:
            for st in fresh:
                if not xapi.is_completion(st):
                    ignored.append(st["id"])
                    continue
                mapped = xapi.map_statement(st, st["id"], principal.agency, now)
                if mapped.agency != principal.agency:
                    return self._fail(403, "agency_not_allowed", f"this key belongs to agency {principal.agency!r} and may "
                                      f"not submit statements of agency {mapped.agency!r}", outcome="forbidden")
                events.append(make_event(TRAINING_COURSE_COMPLETED, mapped.data, agency=mapped.agency, id=f"xapi:{mapped.statement_id}",
                                         source=f"/agencies/{mapped.agency}/xapi", time=now,
                                         subject=mapped.data.course_id[:200]))
        except xapi.StatementError as err:
            return self._fail(400, err.reason, err.detail)
        except EventError as err:
            return self._fail(400, err.reason, err.detail)
        except Exception as exc:  # mapping is pure: anything else is a value it could not handle
            return self._malformed(exc)
        errors = await self.publisher.publish_many(events)
        if any(e is not None for e in errors):
            self.metrics.xapi.labels("unavailable").inc(len(statements))
            return XapiOutcome(503, reason="broker_unavailable", detail="Kafka did not acknowledge; retry later",
                               extra={"retry_after": 5})
        # Recorded after Kafka acknowledged: a crash in between means the LMS retries and the same event id is
        # published again, which the consumer stores once.
        await self.repo.remember_statements([{"_id": st["id"], "hash": hashes[st["id"]], "agency": principal.agency,
                                              "verb": st["verb"]["id"], "stored": now,
                                              "event_id": None if st["id"] in ignored else f"xapi:{st['id']}"}
                                             for st in fresh])
        if events:
            self.metrics.xapi.labels("accepted").inc(len(events))
        if ignored:
            self.metrics.xapi.labels("ignored").inc(len(ignored))
        if len(statements) - len(fresh):
            self.metrics.xapi.labels("duplicate").inc(len(statements) - len(fresh))
        if ignored:
            return XapiOutcome(200, body={"ids": ids, "ignored": ignored,
                                          "reason": "only the verbs completed, passed and failed are recorded; "
                                                    "other statements are acknowledged and not stored"})
        return XapiOutcome(204 if put_id is not None else 200, body=None if put_id is not None else ids)
