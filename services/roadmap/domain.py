"""Pure rules of the roadmap: the milestone projection, derived status and alerts.

A milestone is stored as the set of facts its events reported (each fact keyed by the event's
source + id) and its document is *derived* from those facts by `project()`, a pure fold that sorts
the facts deterministically. Applying an event = adding a fact (a duplicate adds nothing) and
recomputing, so the same events give the same document whatever order or how often they arrive.

Status rules (highest first):
  unplanned   facts arrived before the `planned` event (kept, waiting for the plan)
  cancelled   a cancellation was reported
  completed   a completion was reported (late completions record `days_late`, measured against the due date
              in force when the completion was reported: a later reschedule is recorded, not applied)
  missed      the current due date's Asia/Bangkok day has ended without completion
  at_risk     the projected finish (recent progress rate extrapolated to 100 %) falls after the due
              date, or a dependency is missed or at risk
  in_progress progress > 0
  planned     otherwise

A `roadmap.fact.retracted` fact makes the fact it names count as never sent (`corrections.py`), and the alerts
a milestone's facts call for (`alerts_due`) are derived by the same replay, so they too are a function of the facts.

Delivery confidence (five-point scale, Green to Red) over these statuses is in `confidence.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import bson

from services.common.clock import to_millisecond
from services.contracts import events
from services.contracts.agencies import PROGRAMME_OFFICE
from services.contracts.envelope import PROGRAMME_OFFICE_AUTHORITY
from services.contracts.thai_calendar import bangkok_day, end_of_bangkok_day
from services.roadmap import corrections
from services.roadmap.dependencies import unknown_dependencies

# Event type -> short fact kind stored in the milestone document.
FACT_KINDS = {
    events.MILESTONE_PLANNED: "planned",
    events.MILESTONE_PROGRESSED: "progressed",
    events.MILESTONE_COMPLETED: "completed",
    events.MILESTONE_RESCHEDULED: "rescheduled",
    events.MILESTONE_CANCELLED: "cancelled",
    events.FACT_RETRACTED: corrections.RETRACTED,
    events.MILESTONE_ACKNOWLEDGED: "acknowledged",  # from the notifier: an owner answered a missed/at-risk notice
}

# How far back progress reports count towards the "recent" rate, and how many at most.
PROGRESS_WINDOW_DAYS = 30
PROGRESS_WINDOW_POINTS = 10


class Status(StrEnum):
    unplanned = "unplanned"
    planned = "planned"
    in_progress = "in_progress"
    at_risk = "at_risk"
    missed = "missed"
    completed = "completed"
    cancelled = "cancelled"


OPEN_STATUSES = (Status.planned, Status.in_progress, Status.at_risk)


# --- facts -----------------------------------------------------------------------------------

def fact_key(source: str, event_id: str) -> str:
    return f"{source}|{event_id}"


def make_fact(*, type_: str, source: str, event_id: str, agency: str, time: datetime, data: Mapping[str, Any],
              authority: str | None = None) -> dict[str, Any]:
    """The stored form of an event's contribution to a milestone (JSON-mode data, UTC time).

    `authority`: the authority the event was sent with (`programme_office` from a programme-office key), kept
    with the fact so the ownership rule, and therefore `project()`, stays a function of the stored facts."""
    # milestone_id is the document's own id: not repeated in every fact.
    # Its time to the millisecond, as the database keeps it: deriving from a fact just made must give what deriving
    # from the stored one (or from the audit trail, in a rebuild) gives, ties between facts included.
    fact = {"key": fact_key(source, event_id), "kind": FACT_KINDS[type_], "agency": agency,
            "time": to_millisecond(_utc(time)),
            "data": {k: v for k, v in data.items() if k != "milestone_id"}}
    # Always present (None: the sender's own agency only): a fact without the key was stored before facts
    # carried one, and the ownership rule reads it as it was read then (`fact_authority`).
    fact["authority"] = authority or None
    return fact


# A milestone is one document holding its facts, rewritten whole whenever one is added: bounded, so that one
# milestone's reports can neither outgrow what the database stores in a document (16 MiB) nor make every batch that
# touches it rewrite megabytes (1,500 progress notes of 2,000 Thai characters stalled every agency's roadmap for
# minutes, then froze the milestone). Progress reports are the one kind a sender repeats without end: they get a
# share of their own, so that a milestone full of them can still be completed, moved or cancelled.
FACTS_MAX_BYTES = 4 * 1024 * 1024
PROGRESS_MAX_BYTES = 1024 * 1024
MILESTONE_FULL = "milestone_full"


def fact_size(fact: Mapping[str, Any]) -> int:
    return len(bson.encode(fact))


@dataclass
class FactBytes:
    """What a milestone's facts take, in BSON bytes: all of them, and its progress reports. Kept on the milestone
    (`fact_bytes`), so that a batch need not measure the facts it already holds."""

    total: int = 0
    progress: int = 0

    @classmethod
    def of(cls, facts: Iterable[Mapping[str, Any]]) -> FactBytes:
        out = cls()
        for fact in facts:
            out.add(fact, fact_size(fact))
        return out

    @classmethod
    def held(cls, doc: Mapping[str, Any] | None) -> FactBytes:
        """What a stored milestone's facts take: the figure kept on it, else measured (a document from before the
        figure was kept); nothing for no milestone."""
        kept = doc.get("fact_bytes") if doc else None
        if isinstance(kept, Mapping):
            return cls(int(kept["total"]), int(kept["progress"]))
        return cls.of(doc.get("facts", []) if doc else [])

    def refusal(self, milestone_id: str, fact: Mapping[str, Any], size: int) -> str | None:
        """Why `fact` (of `size` bytes) may not join the milestone's facts, or None."""
        if fact["kind"] == "progressed" and self.progress + size > PROGRESS_MAX_BYTES:
            return (f"milestone {milestone_id!r} holds {PROGRESS_MAX_BYTES // 1024} KiB of progress reports, as much "
                    "as one milestone keeps: report its progress less often or with shorter notes")
        if self.total + size > FACTS_MAX_BYTES:
            return (f"milestone {milestone_id!r} holds {FACTS_MAX_BYTES // (1024 * 1024)} MiB of reports, as much as "
                    "one milestone keeps")
        return None

    def add(self, fact: Mapping[str, Any], size: int) -> None:
        self.total += size
        if fact["kind"] == "progressed":
            self.progress += size

    def as_field(self) -> dict[str, int]:
        return {"total": self.total, "progress": self.progress}


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:  # Mongo without tz_aware: stored values are UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _sort_key(fact: Mapping[str, Any]) -> tuple[datetime, str]:
    return (_utc(fact["time"]), fact["key"])


def effective_time(fact: Mapping[str, Any]) -> datetime:
    """When a fact took effect: a progress report at its `as_of`, anything else at its event time."""
    if fact["kind"] == "progressed":
        return _utc(fact["data"]["as_of"])
    return _utc(fact["time"])


# --- projection ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Projection:
    rate_per_day: float | None  # percentage points per day over the recent window
    finish: date | None  # Bangkok day on which 100 % is reached, None if never at the current rate
    stalled: bool  # two or more recent points without progress
    source: str = "progress_rate"  # or "owner_forecast": an acknowledgement's forecast later than the rate's


def project_finish(points: Sequence[tuple[datetime, float]], origin: datetime | None) -> Projection | None:
    """Extrapolate recent progress to 100 %. `points` = (as_of, percent) sorted by as_of.

    The window is the reports of the last PROGRESS_WINDOW_DAYS before the latest one (at most
    PROGRESS_WINDOW_POINTS); with a single report the plan's start (0 %) is the other point.
    """
    if not points:
        return None
    last_t, last_p = points[-1]
    if last_p >= 100:
        return Projection(None, bangkok_day(last_t), False)
    since = last_t - timedelta(days=PROGRESS_WINDOW_DAYS)
    window = [p for p in points[-PROGRESS_WINDOW_POINTS:] if p[0] >= since]
    if len(window) < 2:
        window = list(points[-2:])
    if len(window) < 2:
        if origin is None or origin >= last_t:
            return None
        window = [(origin, 0.0), window[0]]
    (t0, p0), (t1, p1) = window[0], window[-1]
    days = (t1 - t0).total_seconds() / 86400
    if days <= 0:
        return None
    rate = (p1 - p0) / days
    if rate <= 0:
        return Projection(rate, None, True)
    remaining_days = (100 - p1) / rate
    if remaining_days > 365 * 100:  # beyond any plan: as good as never
        return Projection(rate, None, True)
    return Projection(rate, bangkok_day(t1 + timedelta(days=remaining_days)), False)


@dataclass
class _State:
    """Running state while replaying facts in effective-time order."""

    plan: dict[str, Any] | None = None
    due: date | None = None
    completed_on: date | None = None
    cancelled: bool = False
    points: list[tuple[datetime, float]] | None = None
    origin: datetime | None = None
    forecast: date | None = None  # the owner's forecast completion for the current due date (acknowledgement)

    def status(self, now: datetime) -> tuple[Status, Projection | None]:
        if self.plan is None or self.due is None:
            return Status.unplanned, None
        if self.cancelled:
            return Status.cancelled, None
        if self.completed_on is not None:
            return Status.completed, None
        if now >= end_of_bangkok_day(self.due):
            return Status.missed, self._with_forecast(None)
        projection = self._with_forecast(project_finish(self.points or [], self.origin))
        if projection is not None and (projection.finish is None or projection.finish > self.due):
            return Status.at_risk, projection
        percent = self.points[-1][1] if self.points else 0.0
        return (Status.in_progress if percent > 0 else Status.planned), projection

    def _with_forecast(self, projection: Projection | None) -> Projection | None:
        """The owner's forecast becomes the projected finish when it is later than the rate's (what the owner
        says counts against optimism, never for it); a stalled projection (never) stays."""
        if self.forecast is None or (projection is not None and (projection.finish is None
                                                                  or projection.finish >= self.forecast)):
            return projection
        return Projection(projection.rate_per_day if projection else None, self.forecast, False, "owner_forecast")


def project(milestone_id: str, facts: Iterable[Mapping[str, Any]], now: datetime,
            dependency_status: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Derive the milestone document from its facts, as at `now`.

    Pure and order-independent: the facts are de-duplicated by key and sorted by (event time, key);
    progress is ordered by `as_of`, so a stale report never overrides a newer one.
    `dependency_status` gives the current status of the milestones this one depends on.
    """
    now = _utc(now)
    corrected = corrections.apply_retractions(facts)  # a retracted fact counts as never sent
    accepted = accept_facts(corrected.facts)
    progress, late_reports = progress_points(accepted.of_kind("progressed"), accepted.completed_on)
    considered = [f for f in accepted.facts if f["kind"] not in ("progressed", "acknowledged")] + progress
    considered.sort(key=_effective_sort_key)
    replay = replay_facts(considered, now)
    acknowledged = acknowledgements(accepted.of_kind("acknowledged"), replay.state.due)
    replay.state.forecast = acknowledged.forecast
    verdict = status_and_reasons(replay.state, now, dependency_status or {})
    doc = document(milestone_id, accepted, progress, replay, verdict,
                   ignored=corrected.ignored + accepted.ignored + late_reports)
    doc.update(acknowledged.fields)
    doc["event_count"] = corrected.count
    doc["retractions"] = corrected.retractions
    return doc


# --- step 1: accepted facts ------------------------------------------------------------------

NOT_OWNER = "agency_not_owner"  # the reason code of a report refused or ignored by the ownership rule
ID_TAKEN = "milestone_id_taken"  # a plan naming another owner for a milestone that already has one


def may_report(owner: str | None, agency: str, authority: str | None = None) -> bool:
    """The ownership rule: only the owner agency, and events sent with programme-office authority, report
    on a planned milestone. The authority is the role of the key that sent the event (set by the intake),
    never the agency code: an ordinary key of OPDC is one agency among others.

    `owner` is the agency named by the milestone's accepted plans (None before any plan: facts are kept
    until the plan says whose they were). The service refuses a report this rule rejects; the
    projection ignores a stored fact it rejects (a plan that arrived late decides afterwards).
    """
    return owner is None or agency == owner or authority == PROGRAMME_OFFICE_AUTHORITY


def refusal(owner: str | None, fact: Mapping[str, Any]) -> str | None:
    """The reason the ownership rule refuses this fact, or None. A plan may name the current owner (its
    re-plan) or, with programme-office authority, any agency: the programme office re-plans any milestone
    and may hand it to another owner (how a squatted id is given back). Any other plan is `milestone_id_taken`."""
    if fact["kind"] == "planned":
        named = fact["data"]["owner_agency"]
        ok = owner is None or named == owner or fact_authority(fact) == PROGRAMME_OFFICE_AUTHORITY
        return None if ok else ID_TAKEN
    return None if may_report(owner, fact["agency"], fact_authority(fact)) else NOT_OWNER


def fact_authority(fact: Mapping[str, Any]) -> str | None:
    """The authority a fact was sent with. A fact stored before facts carried one (no `authority` key) keeps
    the reading it had then, since which key sent it is not known: the programme office's agency code acted
    with its authority. So an upgrade changes no stored record; every fact stored since is judged by its key."""
    if "authority" in fact:
        return fact["authority"]
    return PROGRAMME_OFFICE_AUTHORITY if fact.get("agency") == PROGRAMME_OFFICE else None


def owner_of(plans: Iterable[Mapping[str, Any]]) -> tuple[str | None, list[Mapping[str, Any]]]:
    """The owner after these plan facts in (event time, key) order, and the plans the rule refused."""
    owner, refused = None, []
    for plan in sorted(plans, key=_sort_key):
        if refusal(owner, plan) is None:
            owner = plan["data"]["owner_agency"]
        else:
            refused.append(plan)
    return owner, refused


@dataclass(frozen=True)
class Accepted:
    """The facts that count: de-duplicated, sorted by (event time, key), allowed by the ownership rule."""

    facts: list[Mapping[str, Any]]
    owner: str | None
    ignored: list[dict[str, Any]]  # facts the ownership rule set aside
    event_count: int  # distinct facts, ignored ones included

    def of_kind(self, kind: str) -> list[Mapping[str, Any]]:
        return [f for f in self.facts if f["kind"] == kind]

    @property
    def completion(self) -> Mapping[str, Any] | None:
        completions = self.of_kind("completed")
        return completions[-1] if completions else None

    @property
    def completed_on(self) -> date | None:
        completion = self.completion
        return _date(completion["data"]["completed_on"]) if completion else None


def accept_facts(facts: Iterable[Mapping[str, Any]]) -> Accepted:
    unique: dict[str, Mapping[str, Any]] = {}
    for fact in facts:
        unique.setdefault(fact["key"], fact)
    ordered = sorted(unique.values(), key=_sort_key)
    owner, refused_plans = owner_of(f for f in ordered if f["kind"] == "planned")
    refused_keys = {f["key"] for f in refused_plans}
    accepted, ignored = [], []
    for fact in ordered:
        reason = ID_TAKEN if fact["key"] in refused_keys else (None if fact["kind"] == "planned" else refusal(owner, fact))
        if reason is None:
            accepted.append(fact)
        else:
            ignored.append({"event": fact["key"], "kind": fact["kind"], "reason": reason})
    return Accepted(accepted, owner, ignored, len(unique))


# --- step 2: progress points -----------------------------------------------------------------

def progress_points(reports: Iterable[Mapping[str, Any]], completed_on: date | None,
                    ) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]]]:
    """The progress reports that count, one per `as_of` (sorted by it), and the ones ignored.

    By `as_of`, ties won by the later event; a report dated after the completion day is ignored.
    """
    by_as_of: dict[datetime, Mapping[str, Any]] = {}
    ignored: list[dict[str, Any]] = []
    for fact in sorted(reports, key=_effective_sort_key):
        if completed_on is not None and bangkok_day(effective_time(fact)) > completed_on:
            ignored.append({"event": fact["key"], "kind": "progressed", "reason": "progress_after_completion"})
        else:
            by_as_of[effective_time(fact)] = fact  # same as_of twice: the later event (sort order) wins
    return sorted(by_as_of.values(), key=effective_time), ignored


def _effective_sort_key(fact: Mapping[str, Any]) -> tuple[datetime, datetime, str]:
    return (effective_time(fact), _utc(fact["time"]), fact["key"])


# --- step 3: replay of due dates and timeline ------------------------------------------------

def replay_facts(considered: Iterable[Mapping[str, Any]], now: datetime) -> Replay:
    """Replay the facts in effective-time order: the due-date history and the status timeline."""
    replay = Replay(now)
    for fact in considered:
        replay.apply(fact)
    replay.pass_deadlines(now)
    return replay


class Replay:
    """The state as facts are applied one by one, recording each due-date change and status change."""

    def __init__(self, now: datetime):
        self.now = now
        self.state = _State(points=[])
        self.due_history: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self._deadlines_seen: set[date] = set()
        # (kind, due date) of each alert the facts call for, in the order the replay meets them.
        self.alerts: list[tuple[str, date]] = []

    def apply(self, fact: Mapping[str, Any]) -> None:
        at = effective_time(fact)
        self.pass_deadlines(at)
        kind, data, state = fact["kind"], fact["data"], self.state
        if kind == "planned":
            self._plan(fact, at)
        elif kind == "rescheduled":
            new_due = _date(data["new_due_date"])
            self.due_history.append({"due_date": new_due.isoformat(), "set_at": at, "change": self._move_due(new_due),
                                     "reason": data.get("reason"), "approved_by": data.get("approved_by"),
                                     "event": fact["key"]})
        elif kind == "progressed":
            state.points.append((at, float(data["percent_complete"])))
        elif kind == "completed":
            state.completed_on = _date(data["completed_on"])
            if ("missed", state.due) in self.alerts:
                self._alert("recovered", state.due)  # only after a real miss of the due date in force
        elif kind == "cancelled":
            state.cancelled = True
        self._note(state.status(at)[0], at, kind)

    def _plan(self, fact: Mapping[str, Any], at: datetime) -> None:
        state, data = self.state, fact["data"]
        first = state.plan is None
        state.plan = dict(data)
        planned_due = _date(data["due_date"])
        rescheduled = any(h["change"] == "rescheduled" for h in self.due_history)
        if first:
            state.origin = at
            # A reschedule stamped earlier than the plan (clock skew, late plan) still wins over it.
            if not rescheduled:
                state.due = planned_due
            self.due_history.insert(0, {"due_date": planned_due.isoformat(), "set_at": at, "change": "baseline",
                                        "reason": None, "event": fact["key"]})
        elif not rescheduled and planned_due != state.due:
            # A re-sent plan with a new date before any reschedule: the plan was revised.
            change = self._move_due(planned_due, "replanned")
            self.due_history.append({"due_date": planned_due.isoformat(), "set_at": at, "change": change,
                                     "reason": None, "event": fact["key"]})

    def _move_due(self, new_due: date, change: str = "rescheduled") -> str:
        """Move the due date, unless the milestone is already completed: lateness is measured against the due
        date in force when the completion was reported, so a later move is only recorded (`..._after_completion`).
        Moving a missed due date ends that miss: `rebaselined` for it (its reminders and escalation stop)."""
        if self.state.completed_on is not None and self.state.due is not None:
            return f"{change}_after_completion"
        old = self.state.due
        if old is not None and new_due != old and ("missed", old) in self.alerts:
            self._alert("rebaselined", old)
        self.state.due = new_due
        return change

    def pass_deadlines(self, until: datetime) -> None:
        # A deadline between two facts is itself a moment: the milestone became missed then.
        due = self.state.due
        if due is not None and due not in self._deadlines_seen:
            deadline = end_of_bangkok_day(due)
            if deadline <= until and deadline <= self.now:
                self._deadlines_seen.add(due)
                self._note(self.state.status(deadline)[0], deadline, "deadline_passed")

    def _note(self, status: Status, at: datetime, cause: str) -> None:
        if status is Status.missed and self.state.due is not None:
            self._alert("missed", self.state.due)
        if not self.timeline or self.timeline[-1]["status"] != status.value:
            self.timeline.append({"status": status.value, "at": at, "cause": cause})

    def _alert(self, kind: str, due: date) -> None:
        if (kind, due) not in self.alerts:  # at most one per kind and due date
            self.alerts.append((kind, due))


# --- step 4: status and reasons --------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    status: Status
    reasons: list[str]
    blocked_by: list[str]  # dependencies that are missed or at risk
    projection: Projection | None
    unknown_dependencies: list[str]  # dependencies that name no planned milestone


def status_and_reasons(state: _State, now: datetime, dependency_status: Mapping[str, str]) -> Verdict:
    """The status as at `now`, raised to at risk by a missed or at-risk dependency, with its reasons."""
    own_status, projection = state.status(now)
    status = own_status
    reasons: list[str] = []
    deps = state.plan.get("depends_on", []) if state.plan else []
    blocking = sorted(d for d in deps if dependency_status.get(d) in (Status.missed, Status.at_risk))
    if own_status is Status.at_risk:
        reasons.append(("owner_forecast_after_due" if projection.source == "owner_forecast" else
                        "projected_finish_after_due") if projection and projection.finish else "progress_stalled")
    if blocking and own_status in OPEN_STATUSES:
        status = Status.at_risk
        reasons.append("dependency_at_risk_or_missed")
    if own_status is Status.missed:
        reasons.append("deadline_passed")
    return Verdict(status, reasons, blocking, projection, unknown_dependencies(deps, dependency_status))


# --- step 5: the document --------------------------------------------------------------------

def document(milestone_id: str, accepted: Accepted, progress: list[Mapping[str, Any]], replay: Replay,
             verdict: Verdict, ignored: list[dict[str, Any]]) -> dict[str, Any]:
    """The stored and served form of the milestone, section by section (key order kept stable)."""
    plan = replay.state.plan or {}
    return {
        "milestone_id": milestone_id,
        "status": verdict.status.value,
        "status_reasons": verdict.reasons,
        "blocked_by": verdict.blocked_by,
        "title_th": plan.get("title_th"),
        "title_en": plan.get("title_en"),
        "workstream": plan.get("workstream"),
        "owner_agency": accepted.owner,
        "weight": float(plan.get("weight", 1.0)) if plan else 0.0,
        "depends_on": list(plan.get("depends_on", [])),
        # Dependencies naming no planned milestone: kept on the plan, shown, counted in the summary, and
        # cleared when that milestone is planned (its planning refreshes its dependants).
        "unknown_dependencies": verdict.unknown_dependencies,
        "description": plan.get("description"),
        **_due_fields(replay, verdict.status),
        **_progress_fields(replay.state, progress, verdict.projection, accepted.completed_on),
        **_outcome_fields(accepted, replay.state.due),
        **_alert_fields(milestone_id, replay, verdict),
        "timeline": replay.timeline,
        "ignored": ignored,
        "event_count": accepted.event_count,
    }


def _due_fields(replay: Replay, status: Status) -> dict[str, Any]:
    due, history = replay.state.due, replay.due_history
    return {
        "baseline_due_date": history[0]["due_date"] if history else None,
        "due_date": due.isoformat() if due else None,
        # The instant the due date's Bangkok day ends; `open_deadline` only while the milestone is
        # open (planned, in progress, at risk): the deadline watcher's indexed range queries use it.
        "deadline": end_of_bangkok_day(due) if due else None,
        "open_deadline": end_of_bangkok_day(due) if due and status in OPEN_STATUSES else None,
        "due_history": history,
        "reschedule_count": sum(1 for h in history if h["change"] == "rescheduled"),
        # The stated reason of the latest due-date change, in the list too (the list omits due_history): the
        # quarterly report prints it for every moved milestone without one detail request each.
        "latest_reason": next((h["reason"] for h in reversed(history)
                               if h.get("reason") and not h["change"].endswith("_after_completion")), None),
    }


def _progress_fields(state: _State, progress: list[Mapping[str, Any]], projection: Projection | None,
                     completed_on: date | None) -> dict[str, Any]:
    points = state.points or []
    rate = projection.rate_per_day if projection else None
    return {
        "percent_complete": 100.0 if completed_on is not None else (points[-1][1] if points else 0.0),
        "progress_as_of": points[-1][0] if points else None,
        "progress_history": [{"as_of": effective_time(f), "percent_complete": float(f["data"]["percent_complete"]),
                              **({"note": f["data"]["note"]} if f["data"].get("note") else {})}
                             for f in progress],
        "progress_rate_per_day": round(rate, 6) if rate is not None else None,
        "projected_finish": projection.finish.isoformat() if projection and projection.finish else None,
        "projected_finish_source": projection.source if projection and projection.finish else None,
    }


def _outcome_fields(accepted: Accepted, due: date | None) -> dict[str, Any]:
    # `due` is the due date in force when the completion was reported (a later move does not rewrite lateness).
    completion, completed_on = accepted.completion, accepted.completed_on
    days_late = max(0, (completed_on - due).days) if (completed_on and due) else 0
    # Completion reported only after the deadline had passed: the milestone was shown as missed (and
    # alerted) in between, so the completion is a recovery even when it is dated on time.
    reported_late = bool(completion and due and _utc(completion["time"]) >= end_of_bangkok_day(due))
    cancellations = accepted.of_kind("cancelled")
    return {
        "completed_on": completed_on.isoformat() if completed_on else None,
        "completion_evidence": completion["data"].get("evidence") if completion else None,
        "days_late": days_late,
        "completion_reported_after_deadline": reported_late,
        "cancelled_reason": cancellations[-1]["data"].get("reason") if cancellations else None,
    }


# --- acknowledgements ------------------------------------------------------------------------

@dataclass(frozen=True)
class Acknowledged:
    fields: dict[str, Any]
    forecast: date | None  # the latest forecast given for the current due date


def acknowledgements(facts: Iterable[Mapping[str, Any]], current_due: date | None) -> Acknowledged:
    """Owners' acknowledgements (from the notifier's links), oldest first; those for the current due date name
    who acknowledged it, when, their recovery note and forecast. One for an earlier due date stays in history."""
    history = sorted(({"by": f["data"]["acknowledged_by"], "by_name": f["data"].get("acknowledged_by_name"),
                       "at": _utc(f["data"]["acknowledged_at"]), "due_date": f["data"]["due_date"],
                       "alert_type": f["data"].get("alert_type"), "note": f["data"].get("note"),
                       "forecast_completion": f["data"].get("forecast_completion"), "event": f["key"]}
                      for f in facts), key=lambda a: (a["at"], a["event"]))
    current = [a for a in history if current_due is not None and a["due_date"] == current_due.isoformat()]
    first = current[0] if current else None
    forecasts = [a["forecast_completion"] for a in current if a["forecast_completion"]]
    return Acknowledged(
        {"acknowledgements": history,
         "acknowledged_by": first["by"] if first else None,
         "acknowledged_by_name": first["by_name"] if first else None,
         "acknowledged_at": first["at"] if first else None,
         "acknowledgement_note": next((a["note"] for a in reversed(current) if a["note"]), None),
         "forecast_completion": forecasts[-1] if forecasts else None},
        _date(forecasts[-1]) if forecasts else None)


# --- alerts ----------------------------------------------------------------------------------

ALERT_TYPES = {
    "missed": events.MILESTONE_MISSED,
    "at_risk": events.MILESTONE_AT_RISK,
    "recovered": events.MILESTONE_RECOVERED,
    "rebaselined": events.MILESTONE_REBASELINED,
}


def alert_id(kind: str, milestone_id: str, due_date: str) -> str:
    """Deterministic id: one alert per milestone, kind and due date, whichever replica sends it."""
    return f"{kind}:{milestone_id}:{due_date}"


def _alert_fields(milestone_id: str, replay: Replay, verdict: Verdict) -> dict[str, Any]:
    """The alerts the milestone's facts call for, as a function of the facts like the rest of the record.

    From the replay in effective-time order, history: `missed` for each due date whose Bangkok day ended while it
    was in force and the milestone open; `recovered` for a completion reported after such a miss, the due date
    unchanged. And the current state: `at_risk` for the current due date while the record is at risk (its own
    progress, or a dependency missed or at risk), so a history loaded at once does not alert risks long past.
    At most one alert per kind and due date.
    """
    due = list(replay.alerts)
    current = replay.state.due
    if verdict.status is Status.at_risk and current is not None and ("at_risk", current) not in due:
        due.append(("at_risk", current))
    return {
        # The latest alert kind the facts call for (null: none); indexed so the rescan reads only these.
        "alert_kind": due[-1][0] if due else None,
        "alerts_due": [{"id": alert_id(kind, milestone_id, day.isoformat()), "kind": kind, "due_date": day.isoformat()}
                       for kind, day in due],
    }


def alerts_due(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, due date) of every alert a stored milestone's facts call for (a document written before
    `alerts_due` existed: the one its `alert_kind` named, for its current due date)."""
    if "alerts_due" in doc:
        return [(a["kind"], a["due_date"]) for a in doc["alerts_due"] or []]
    return [(doc["alert_kind"], doc["due_date"])] if doc.get("alert_kind") and doc.get("due_date") else []


def alert_data(kind: str, doc: Mapping[str, Any], detected_at: datetime, due_date: str | None = None) -> dict[str, Any]:
    """The alert's data; `due_date`: the due date it is about (default: the current one)."""
    due_date = due_date or doc["due_date"]
    reason = {"missed": "deadline_passed", "recovered": "completed_after_deadline",
              "rebaselined": "due_date_moved_after_miss"}.get(kind, ",".join(doc.get("status_reasons") or []) or None)
    data = {
        "milestone_id": doc["milestone_id"], "title_th": doc.get("title_th"), "title_en": doc.get("title_en"),
        "workstream": doc["workstream"], "owner_agency": doc["owner_agency"], "due_date": due_date,
        "percent_complete": min(100.0, float(doc.get("percent_complete") or 0)),
        "days_late": int(doc.get("days_late") or 0), "reason": reason,
        "projected_finish": doc.get("projected_finish"), "completed_on": doc.get("completed_on"),
        "detected_at": _utc(detected_at).isoformat(),
    }
    if kind == "missed":
        data["days_late"] = max(0, (bangkok_day(_utc(detected_at)) - _date(due_date)).days)
    if kind == "rebaselined":
        data["new_due_date"] = doc["due_date"]
        data["reason"] = doc.get("latest_reason") or reason
    return {k: v for k, v in data.items() if v is not None}


def schedule_change(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the schedule changes: baseline and current due date, the slip in days (positive = later) and
    the reason last stated for a due date change (None: none stated; absent: not known from this row)."""
    base, due = date.fromisoformat(doc["baseline_due_date"]), date.fromisoformat(doc["due_date"])
    return {"milestone_id": str(doc.get("milestone_id") or doc.get("_id")), "title_th": doc.get("title_th"),
            "title_en": doc.get("title_en"), "workstream": doc.get("workstream"), "owner_agency": doc.get("owner_agency"),
            "status": doc.get("status"), "baseline_due_date": base.isoformat(), "due_date": due.isoformat(),
            "variance_days": (due - base).days,
            # Absent (not None) for a milestone projected before the reason was kept: a reader asks its history.
            **({"latest_reason": doc["latest_reason"]} if "latest_reason" in doc else {})}
