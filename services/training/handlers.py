"""Service layer of the training service: applying events, readiness reads, xAPI intake."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.common.auth import Principal
from services.common.consumer import Batch, Rejected
from services.common.kafka import EventPublisher
from services.contracts.dates import DateWindow, check_event_dates
from services.contracts.envelope import Event, EventError, make_event
from services.contracts.events import TRAINING_COMPLETION_VOIDED, TRAINING_COURSE_COMPLETED, TRAINING_TARGET_SET
from services.contracts.thai_calendar import fiscal_year_elapsed_ratio, fiscal_year_of
from services.contracts.training import TrainingCompletionVoided, TrainingCourseCompleted, TrainingTargetSet
from services.training import domain, xapi
from services.training.adapters import ReadinessStore, StatementStore
from services.training.metrics import TrainingMetrics

log = logging.getLogger(__name__)
# The event types whose audit record this service writes itself, as the record of its write path (the consumer's
# `handler_audits`).
COMPLETION_AUDITED_HERE = frozenset({TRAINING_COURSE_COMPLETED})


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
    def __init__(self, repo: ReadinessStore, metrics: TrainingMetrics, clock: Callable[[], datetime],
                 xapi: XapiIntake | None = None):
        self.repo = repo
        self.metrics = metrics
        self.clock = clock
        self.xapi = xapi  # the xAPI statement intake its routes call

    # --- Kafka ---------------------------------------------------------------------------------
    async def handle_batch(self, batch: Batch) -> list[Rejected]:
        """Apply a batch of training events (already pseudonymised by `Pseudonymiser`). Idempotent.

        The consumer leaves the audit records of completions to this handler (`COMPLETION_AUDITED_HERE`): a
        completion's record is its audit record, one write, and only records stored new are counted. The consumer
        refuses one stored before with other content (`id_conflict`: the first stands)."""
        completions: list[Event] = []
        voids: list[tuple[str, str]] = []
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
                completions.append(event)
            elif event.type == TRAINING_COMPLETION_VOIDED:
                v: TrainingCompletionVoided = event.data  # type: ignore[assignment]
                voids.append((domain.voided_key(v.voided_source, v.voided_id), domain.voided_key(event.source, event.id)))
        new = await self.repo.add_completions([e.to_document() for e in completions])
        batch.new_keys.update(new)
        # After this batch's completions, so that a completion and its retraction in one batch cancel out.
        voided = await self.repo.void_completions(voids)
        if voided:  # retractions taken into account for the first time (a redelivered one adds nothing)
            self.metrics.applied.labels(TRAINING_COMPLETION_VOIDED).inc(voided)
        if new:
            self.metrics.applied.labels(TRAINING_COURSE_COMPLETED).inc(len(new))
        if duplicates := len(completions) - len(new):  # stored before: redelivered, re-sent (or in conflict)
            self.metrics.duplicates.inc(duplicates)
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
    """xAPI 1.0.3 Statement Resource: POST / PUT (completions become `training.course.completed`, `voided`
    statements naming one become `training.course.completion_voided`) and GET (the agency's stored statements)."""

    def __init__(self, repo: StatementStore, publisher: EventPublisher, metrics: TrainingMetrics,
                 clock: Callable[[], datetime], max_statements: int, learner_secret: str = "",
                 date_window: DateWindow | None = None):
        self.repo = repo
        self.date_window = date_window or DateWindow()  # the settings' windows (docs/platform.md "Dates")
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.max_statements = max_statements
        self._secret = learner_secret

    def _fail(self, status: int, reason: str, detail: str, outcome: str = "rejected", **extra: Any) -> XapiOutcome:
        self.metrics.xapi.labels(outcome).inc()
        return XapiOutcome(status, reason=reason, detail=detail, extra=extra)

    def _malformed(self, exc: Exception) -> XapiOutcome:
        log.warning("xAPI statement could not be mapped", extra={"error_class": type(exc).__name__})
        return self._fail(400, "malformed_statement", "a statement holds a value of an unexpected type or range "
                          "(for example context or result not an object, a timestamp out of range)")

    def learner_key(self, agency: str, agent: dict[str, Any]) -> str:
        """The keyed hash an Agent is stored and filtered by (the same as the consumer's learner hash)."""
        return domain.learner_hash(self._secret, agency, xapi.agent_ref(agent))

    async def submit(self, payload: Any, principal: Principal, put_id: str | None = None) -> XapiOutcome:
        statements = payload if isinstance(payload, list) else [payload]
        if put_id is not None and isinstance(payload, list):
            return self._fail(400, "malformed_statement", "PUT takes a single statement")
        if not statements:
            return XapiOutcome(200, body=[])
        if len(statements) > self.max_statements:
            return self._fail(413, "too_many_statements", f"at most {self.max_statements} statements per request")
        try:
            ids = self._ids(statements, put_id)
        except xapi.StatementError as err:
            return self._fail(400, err.reason, err.detail)
        except Exception as exc:  # a value of an unexpected type or range: this request's 400, never a 500
            return self._malformed(exc)
        if len(set(ids)) != len(ids):
            return self._fail(400, "duplicate_statement_id", "the same statement id appears twice in this request")
        now = domain.bson_time(self.clock())  # ms: a republished event's `time` equals the stored one
        try:
            planned = [await self._plan(st, principal, now) for st in statements]
        except _Refused as refused:
            return refused.outcome
        except xapi.StatementError as err:
            return self._fail(400, err.reason, err.detail)
        except EventError as err:
            return self._fail(400, err.reason, err.detail)
        except Exception as exc:  # mapping is pure: anything else is a value it could not handle
            return self._malformed(exc)
        return await self._decide_and_publish(planned, principal, put_id, now)

    def _ids(self, statements: list[Any], put_id: str | None) -> list[str]:
        ids: list[str] = []
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
            statements[index] = {**st, "id": sid or str(uuid.uuid4())}  # the LRS assigns missing ids
            ids.append(statements[index]["id"])
        return ids

    async def _plan(self, st: dict[str, Any], principal: Principal, now: datetime) -> _Planned:
        """What one statement becomes: its reservation doc and the event (if any) its acceptance publishes."""
        sid = st["id"]
        agency = principal.agency
        event = None
        voids = None
        if xapi.is_voiding(st):
            voids = xapi.voided_target(st)
            target = (await self.repo.statement_docs([voids])).get(voids)
            if target is not None and target.get("voiding"):
                raise xapi.StatementError("invalid_voiding", "a voiding statement cannot itself be voided")
            if target is not None and target["agency"] != agency:
                raise _Refused(self._fail(403, "agency_not_allowed", "the statement to void belongs to another "
                                          "agency", outcome="forbidden"))
            event = make_event(TRAINING_COMPLETION_VOIDED,
                               TrainingCompletionVoided(agency=agency, voided_source=f"/agencies/{agency}/xapi",
                                                        voided_id=f"xapi:{voids}"),
                               agency=agency, id=f"xapi-void:{sid}", source=f"/agencies/{agency}/xapi", time=now)
        elif xapi.is_completion(st):
            mapped = xapi.map_statement(st, sid, agency, now)
            if mapped.agency != agency:
                raise _Refused(self._fail(403, "agency_not_allowed", f"this key belongs to agency {agency!r} and may "
                                          f"not submit statements of agency {mapped.agency!r}", outcome="forbidden"))
            event = make_event(TRAINING_COURSE_COMPLETED, mapped.data, agency=agency, id=f"xapi:{sid}",
                               source=f"/agencies/{agency}/xapi", time=now, subject=mapped.data.course_id[:200])
            # The date windows /v1/events and the consumer apply (one function): refused here, never 200 and then
            # dead-lettered.
            if (refused := check_event_dates(event, now, self.date_window)) is not None:
                raise xapi.StatementError(refused.reason, refused.detail, sid)
        stored_iso = now.isoformat().replace("+00:00", "Z")
        readable = xapi.pseudonymised(st, lambda a: self.learner_key(agency, a))
        readable = {**readable, "stored": stored_iso, "timestamp": st.get("timestamp", stored_iso),
                    "version": st.get("version", xapi.VERSION),
                    "authority": {"objectType": "Agent", "account": {"homePage": xapi.AUTHORITY_HOME, "name": agency}}}
        obj = st["object"]
        activities, agents = xapi.related(st)
        registration = (st.get("context") or {}).get("registration")
        doc = {"_id": sid, "hash": xapi.canonical_hash(st), "hash_version": 2, "agency": agency,
               "verb": st["verb"]["id"], "state": "pending", "stored": now,
               "event_id": event.id if event is not None else None, "learner": self.learner_key(agency, st["actor"]),
               "activity": obj.get("id") if obj.get("objectType", "Activity") == "Activity" else None,
               # As JSON text: a statement's keys (extension IRIs, language tags) are the client's, and some
               # are not valid MongoDB field names.
               "voided": False, "voiding": voids is not None, "statement": json.dumps(readable, ensure_ascii=False),
               "registration": registration.lower() if registration else None, "activities": sorted(set(activities)),
               "agents": sorted({self.learner_key(agency, a) for a in agents})}
        if voids is not None:
            doc["voids"] = voids
        if (ref := xapi.statement_ref(st)) is not None:
            doc["ref"] = ref  # its `ref_keys` are set once stored (_link_refs)
        return _Planned(sid, st, doc, event)

    async def _decide_and_publish(self, planned: list[_Planned], principal: Principal, put_id: str | None,
                                  now: datetime) -> XapiOutcome:
        token = uuid.uuid4().hex
        docs = [{**p.doc, "token": token} for p in planned]
        inserted = set(await self.repo.reserve_statements(docs))  # the unique _id decides, atomically
        mine = [planned[i] for i in sorted(inserted)]
        others = [p for i, p in enumerate(planned) if i not in inserted]
        existing = await self.repo.statement_docs([p.sid for p in others]) if others else {}
        conflicts = [p.sid for p in others if not _same(existing.get(p.sid), p)]
        if conflicts:
            await self.repo.release_statements([p.sid for p in mine], token)
            return self._fail(409, "statement_conflict", "a different statement is already stored under this id "
                              "(statements are immutable)", outcome="conflict", statement_ids=conflicts)
        # An identical statement still pending (its first request is between reservation and Kafka's answer, or
        # got 503): publish the same event again (same id, content and time), so answering 200 is true.
        again = [p for p in others if existing[p.sid].get("state") == "pending"
                 and existing[p.sid]["agency"] == principal.agency and p.event is not None]
        events = [p.event for p in mine if p.event is not None]
        events += [dataclasses.replace(p.event, time=existing[p.sid]["stored"].replace(tzinfo=UTC)) for p in again]
        errors = await self.publisher.publish_many(events)
        if any(e is not None for e in errors):
            self.metrics.xapi.labels("unavailable").inc(len(planned))
            return XapiOutcome(503, reason="broker_unavailable", detail="Kafka did not acknowledge; retry later",
                               extra={"retry_after": 5})
        # A crash before this line leaves the reservation pending: the LMS retries, gets here through `again`.
        await self.repo.mark_stored([p.sid for p in mine] + [p.sid for p in again])
        await self.repo.mark_voided([p.doc["voids"] for p in mine if "voids" in p.doc])
        await self.repo.mark_voided(await self.repo.voided_among([p.sid for p in mine]))
        # Identical statements already stored are linked again too: a crash between mark_stored and here is
        # repaired by the client's retry.
        await self._link_refs([p.sid for p in mine] + [p.sid for p in others if existing[p.sid]["agency"] == principal.agency],
                              principal.agency)
        counted = sum(1 for p in mine if p.event is not None)
        if counted:
            self.metrics.xapi.labels("accepted").inc(counted)
        if len(mine) - counted:
            self.metrics.xapi.labels("ignored").inc(len(mine) - counted)
        if others:
            self.metrics.xapi.labels("duplicate").inc(len(others))
        return XapiOutcome(204 if put_id is not None else 200, body=None if put_id is not None else [p.sid for p in planned])

    async def _link_refs(self, sids: list[str], agency: str) -> None:
        """StatementRef filter-through keys (xapi.ref_keys), both ways, once `sids` are stored: statements among
        them that target a stored statement of the agency take its keys, and statements that already targeted one
        of them (it arrived later) take them now, up the chain to MAX_REF_DEPTH. Both steps run after the
        statement's own reservation, so a referrer and its target stored concurrently still meet in one of them.
        Idempotent ($addToSet): a retried request repeats them harmlessly."""
        if not sids:
            return
        docs = await self.repo.statement_docs(sids)
        refs = {sid: d["ref"] for sid, d in docs.items() if d.get("ref")}
        if refs:
            targets = await self.repo.statement_docs(sorted(set(refs.values())))
            for rid, target in targets.items():
                # Another agency's statement lends no keys: a filter must not reveal what it holds.
                if target.get("state") != "stored" or target["agency"] != agency:
                    continue
                keys = xapi.ref_keys(target)
                referring = [sid for sid, r in refs.items() if r == rid]
                await self.repo.add_ref_keys(referring, keys)  # one update per target, however many refer to it
                for sid in referring:
                    docs[sid] = {**docs[sid], "ref_keys": sorted(set(docs[sid].get("ref_keys") or []) | set(keys))}
        waiting: dict[str, list[str]] = {}  # one query for the whole request; usually nothing refers to it yet
        for r in await self.repo.referrers(list(docs), agency):
            waiting.setdefault(r["ref"], []).append(r["_id"])
        for rid, level in waiting.items():
            keys = xapi.ref_keys(docs[rid])
            for by in range(1, xapi.MAX_REF_DEPTH + 1):
                await self.repo.add_ref_keys(level, xapi.deepen(keys, by))
                if by == xapi.MAX_REF_DEPTH:
                    break
                level = [r["_id"] for r in await self.repo.referrers(level, agency)]
                if not level:
                    break

    # --- GET /xapi/statements ----------------------------------------------------------------------
    async def one(self, sid: str, voided: bool, agency: str | None) -> dict[str, Any] | None:
        doc = (await self.repo.statement_docs([sid])).get(sid)
        if doc is None or doc.get("state") != "stored" or "statement" not in doc or bool(doc.get("voided")) != voided:
            return None
        if agency is not None and doc["agency"] != agency:
            return None
        return json.loads(doc["statement"])  # our own JSON text

    async def query(self, q: xapi.StatementQuery, agency: str | None, agencies: list[str],
                    languages: list[str] | None = None) -> dict[str, Any]:
        """A page of statements (voided ones left out, as the spec says) and the `more` cursor."""
        conditions: dict[str, list[str]] = {}  # met by the statement itself or by a statement it targets
        if q.agent is not None:
            conditions["agents" if q.related_agents else "learner"] = sorted(
                {self.learner_key(a, q.agent) for a in ([agency] if agency else agencies)})
        if q.verb is not None:
            conditions["verb"] = [q.verb]
        if q.activity is not None:
            conditions["activities" if q.related_activities else "activity"] = [q.activity]
        if q.registration is not None:
            conditions["registration"] = [q.registration]
        docs = await self.repo.stored_statements(agency, conditions, since=q.since, until=q.until, after=q.after,
                                                 ascending=q.ascending, limit=q.limit + 1)
        more = None
        if len(docs) > q.limit:
            docs = docs[:q.limit]
            more = xapi.encode_cursor(q, (docs[-1]["stored"], docs[-1]["_id"]))
        return {"statements": [xapi.formatted(json.loads(d["statement"]), q.format, languages or []) for d in docs],
                "more": more or ""}


@dataclass
class _Planned:
    sid: str
    statement: dict[str, Any]
    doc: dict[str, Any]
    event: Event | None


class _Refused(Exception):
    def __init__(self, outcome: XapiOutcome):
        self.outcome = outcome


def _same(stored: dict[str, Any] | None, planned: _Planned) -> bool:
    """Whether a stored statement doc holds the same statement (xapi.canonical_hash; docs written before the
    comparison rules were compared with the hash of that time)."""
    if stored is None:  # reserved and released again by a refused batch in between: the client may retry
        return False
    if stored.get("hash_version") == 2:
        return stored["hash"] == planned.doc["hash"]
    return stored["hash"] == xapi.legacy_hash(planned.statement)
