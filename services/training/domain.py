"""Pure rules of the training service: pseudonyms, rollup keys, readiness figures, laggards, CSV rows.

Nothing here does I/O; every function is testable on its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from services.common.counters import Delta, add_delta
from services.contracts import problems
from services.contracts.agencies import get_registry
from services.contracts.common_types import Competency
from services.contracts.thai_calendar import (
    fiscal_year_elapsed_ratio,
    fiscal_year_of,
    is_valid_thai_national_id,
    parse_thai_date,
    thai_digits_to_ascii,
)
from services.contracts.training import TrainingCourseCompleted

HASH_PREFIX = "hmac-sha256:"


# --- pseudonyms ---------------------------------------------------------------------------------

def learner_hash(secret: str, agency: str, learner_ref: str) -> str:
    """Keyed hash of an agency's learner pseudonym: stable for counting, useless without the key.

    The agency is part of the message so the same pseudonym in two agencies stays two learners.
    """
    digest = hmac.new(secret.encode(), f"{agency}:{learner_ref}".encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest


def is_learner_hash(value: str) -> bool:
    return value.startswith(HASH_PREFIX) and len(value) == len(HASH_PREFIX) + 64


# --- rollup keys and completion documents -------------------------------------------------------

def rollup_id(fiscal_year: int, agency: str, competency: str) -> str:
    return f"{fiscal_year}:{agency}:{competency}"


def learner_competency_id(fiscal_year: int, agency: str, competency: str, learner: str) -> str:
    return f"{fiscal_year}:{agency}:{competency}:{learner}"


def voided_key(source: str, event_id: str) -> str:
    """`_id` of the completion a `training.course.completion_voided` names (the completion's own `_id`)."""
    return f"{source}\x1f{event_id}"


def void_doc(completion_id: str, retraction_key: str, now: datetime) -> dict[str, Any]:
    """The stored retraction of a completion: keyed by the completion's `_id`, so it counts once however often it
    is sent (and by whichever retraction came first)."""
    return {"_id": completion_id, "by": retraction_key, "at": now}


# --- counting (the write path's rules: services.common.ledger) -----------------------------------
# Three books, each contributing to the next:
#   completion state (one per completion, whichever of it and its retraction came first): `stored`, `voided`;
#     while live (stored, not voided) it adds itself to its rollup and, when passed, a live pass to its learner;
#   learner x competency x fiscal year: `live_passes`; while it has one, one ready learner of its rollup;
#   readiness rollup: completions, passed completions, hours, passed hours, ready learners.
# A completion is its event's audit record (`Event.to_document()`, the learner already a keyed hash): one document,
# one write, and the audit trail and the completions can never disagree. A retraction is a record of its own, keyed
# by the completion it names (it may come first).
COMPLETIONS = "events"
LEGACY_COMPLETIONS = "training_completions"  # where completions were kept apart until 2026-12 (`migrate` drops it)
VOIDS = "training_voids"
STATES = "training_completion_state"
LEARNERS = "training_learner_competency"
ROLLUPS = "training_readiness"
ROLLUP_COUNTERS = ("completions", "passed_completions", "hours", "passed_hours", "ready_learners")
ROLLUP_KEYS = ("fiscal_year", "agency", "competency")
# A rollup's fields that are not counters: its identity (a rollup may hold only a target) and its target.
ROLLUP_KEPT = (*ROLLUP_KEYS, "target", "target_time", "target_event", "target_history")
STATE_KEYS = ("fiscal_year", "agency", "competency", "learner_hash", "hours", "passed")
# What counting reads of a completion record (a recount's projection of the audit trail).
COMPLETION_PROJECTION = {"_id": 1, **{f"data.{name}": 1 for name in (
    "agency", "competency", "learner_ref", "hours", "passed", "completed_on")}}


def completion_state(record: Mapping[str, Any]) -> dict[str, Any]:
    """A completion's state fields (STATE_KEYS), from its record: the event's data as JSON."""
    data = record["data"]
    return {"fiscal_year": fiscal_year_of(date.fromisoformat(data["completed_on"])), "agency": data["agency"],
            "competency": data["competency"], "learner_hash": data["learner_ref"], "hours": float(data["hours"]),
            "passed": data["passed"]}


def count(kind: str, new: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Delta]]:
    """What newly stored completions (or retractions) add to the completion states."""
    states: dict[str, Delta] = {}
    if kind == COMPLETIONS:
        for doc in new:
            add_delta(states, doc["_id"], completion_state(doc), {"stored": 1})
    elif kind == VOIDS:
        for doc in new:
            add_delta(states, doc["_id"], {}, {"voided": 1})
    else:  # a journal entry of a kind this version does not keep (an older layout's): never guessed at
        raise ValueError(f"no training records of kind {kind!r}")
    return {STATES: states}


def is_live(state: Mapping[str, Any]) -> bool:
    """A completion counts while it is stored and not retracted (a retraction may come before it)."""
    return state.get("stored", 0) > 0 and not state.get("voided", 0)


def _rollup_keys(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {name: doc[name] for name in ROLLUP_KEYS}


def state_contributes(state: Mapping[str, Any]) -> dict[str, dict[str, Delta]]:
    if not is_live(state):
        return {}
    rid = rollup_id(state["fiscal_year"], state["agency"], state["competency"])
    hours = round(float(state["hours"]), 4)
    inc: dict[str, int | float] = {"completions": 1, "hours": hours}
    out: dict[str, dict[str, Delta]] = {ROLLUPS: {}}
    if state["passed"]:
        inc.update(passed_completions=1, passed_hours=hours)
        lid = learner_competency_id(state["fiscal_year"], state["agency"], state["competency"], state["learner_hash"])
        out[LEARNERS] = {lid: Delta(_rollup_keys(state), {"live_passes": 1})}
    out[ROLLUPS][rid] = Delta(_rollup_keys(state), inc)
    return out


def learner_contributes(learner: Mapping[str, Any]) -> dict[str, dict[str, Delta]]:
    """A learner is ready (counted once) while one of its passes in the fiscal year x competency is live."""
    if learner.get("live_passes", 0) <= 0:
        return {}
    rid = rollup_id(learner["fiscal_year"], learner["agency"], learner["competency"])
    return {ROLLUPS: {rid: Delta(_rollup_keys(learner), {"ready_learners": 1})}}


def rollup_figures(delta: Delta | Mapping[str, Any] | None) -> dict[str, Any]:
    """The five counters of a rollup (zero where absent), hours to 4 digits."""
    values = delta.inc if isinstance(delta, Delta) else (delta or {})
    out = {name: values.get(name, 0) for name in ROLLUP_COUNTERS}
    out["hours"] = round(float(out["hours"]), 4)
    out["passed_hours"] = round(float(out["passed_hours"]), 4)
    return out


# --- targets ------------------------------------------------------------------------------------

def bson_time(value: datetime) -> datetime:
    """Truncate to the millisecond MongoDB stores, so a stored time compares equal to the event's."""
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def target_is_newer(new: tuple[datetime, str], current: tuple[datetime, str] | None) -> bool:
    """A later target replaces the earlier one; order by event time, then id, so redelivery order does not matter."""
    return current is None or new > current


TARGET_HISTORY_KEEP = 100  # target events kept per rollup, oldest dropped first


def with_target(doc: Mapping[str, Any] | None, fy: int, agency: str, competency: str, headcount: int, time: datetime,
                event_id: str) -> dict[str, Any] | None:
    """The rollup document with a target event taken in (None: it changes nothing, e.g. a redelivery): its history
    keeps every distinct target event once, ordered by time; the current target is the latest (`target_is_newer`)."""
    time = bson_time(time)
    out = dict(doc) if doc is not None else {"fiscal_year": fy, "agency": agency, "competency": competency}
    history = out.get("target_history", [])
    changed = doc is None
    if all(h["event_id"] != event_id for h in history):
        entry = {"headcount": headcount, "time": time, "event_id": event_id}
        out["target_history"] = sorted([*history, entry], key=lambda h: (h["time"], h["event_id"]))[-TARGET_HISTORY_KEEP:]
        changed = True
    current = (out["target_time"], out["target_event"]) if "target_time" in out else None
    if target_is_newer((time, event_id), current):
        out.update(target=headcount, target_time=time, target_event=event_id)
        changed = True
    return out if changed else None


# --- readiness figures --------------------------------------------------------------------------

def readiness_ratio(ready: int, target: int | None) -> float | None:
    if not target:
        return None
    return round(ready / target, 4)


def readiness_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    target = doc.get("target")
    ready = int(doc.get("ready_learners", 0))
    return {
        "fiscal_year": doc["fiscal_year"], "agency": doc["agency"], "competency": doc["competency"],
        "target": target, "ready_learners": ready, "ratio": readiness_ratio(ready, target),
        "completions": int(doc.get("completions", 0)), "passed_completions": int(doc.get("passed_completions", 0)),
        "hours": round(float(doc.get("passed_hours", 0.0)), 2), "all_hours": round(float(doc.get("hours", 0.0)), 2),
        "target_history": [{"headcount": h["headcount"], "set_at": h["time"].isoformat() if isinstance(h["time"], datetime) else h["time"],
                            "event_id": h["event_id"]} for h in doc.get("target_history", [])],
    }


def laggards(rows: Iterable[Mapping[str, Any]], fiscal_year: int, now: datetime) -> list[dict[str, Any]]:
    """Agencies furthest behind a linear path from 0 on 1 October to the target on 30 September.

    Per agency (competencies summed): expected = target × elapsed share of the fiscal year,
    gap = expected − ready. Only agencies with a target; largest gap first, then lowest ratio.
    """
    elapsed = fiscal_year_elapsed_ratio(fiscal_year, now)
    per_agency: dict[str, dict[str, Any]] = {}
    for row in rows:
        target = row.get("target")
        if not target:
            continue
        a = per_agency.setdefault(row["agency"], {"agency": row["agency"], "target": 0, "ready_learners": 0,
                                                  "competencies": []})
        a["target"] += target
        a["ready_learners"] += row["ready_learners"]
        expected = target * elapsed
        a["competencies"].append({"competency": row["competency"], "target": target, "ready_learners": row["ready_learners"],
                                  "expected": round(expected, 2), "gap": round(expected - row["ready_learners"], 2)})
    out = []
    registry = get_registry()
    for a in per_agency.values():
        expected = a["target"] * elapsed
        agency = registry.get(a["agency"])
        out.append({**a, "name_th": getattr(agency, "name_th", None), "name_en": getattr(agency, "name_en", None),
                    "expected": round(expected, 2), "gap": round(expected - a["ready_learners"], 2),
                    "ratio": readiness_ratio(a["ready_learners"], a["target"]),
                    "on_track": a["ready_learners"] >= expected,
                    "competencies": sorted(a["competencies"], key=lambda c: -c["gap"])})
    out.sort(key=lambda a: (-a["gap"], a["ratio"] if a["ratio"] is not None else 0, a["agency"]))
    return out


# --- CSV rows -----------------------------------------------------------------------------------

REQUIRED_COLUMNS = ("agency", "learner_ref", "course_id", "competency", "hours", "completed_on", "passed")
_TRUE = {"true", "1", "yes", "y", "t", "ผ่าน", "ใช่"}
_FALSE = {"false", "0", "no", "n", "f", "ไม่ผ่าน", "ไม่ใช่"}


@dataclass
class RowError(Exception):
    reason: str
    detail: str


@dataclass
class ParsedRow:
    id: str
    data: TrainingCourseCompleted
    extra: dict[str, Any] = field(default_factory=dict)


def parse_csv_row(row: Mapping[str, str | None]) -> ParsedRow:
    """One CSV row to validated completion data and a deterministic event id; raises RowError(reason, detail).

    Accepts Thai digits anywhere, Buddhist-era or Gregorian dates (`parse_thai_date`), and Thai yes/no words.
    The id is the row's own `id` column if present, else a hash of the normalised content, so re-importing
    the same file publishes the same events (stored once).
    """
    values = {k.strip().lower(): thai_digits_to_ascii((v or "").strip()) for k, v in row.items() if k}
    missing = [c for c in REQUIRED_COLUMNS if not values.get(c)]
    if missing:
        raise RowError("missing_value", "empty or missing: " + ", ".join(missing))
    if values["agency"] not in get_registry():
        raise RowError("unknown_agency", f"agency {values['agency']!r} is not in the registry")
    if values["competency"] not in {c.value for c in Competency}:
        raise RowError("unknown_competency", f"competency {values['competency']!r}; known: "
                       + ", ".join(c.value for c in Competency))
    if is_valid_thai_national_id(values["learner_ref"].replace("-", "").replace(" ", "")):
        raise RowError("national_id", "learner_ref looks like a Thai national ID: use an opaque pseudonym")
    try:
        completed_on = parse_thai_date(values["completed_on"])
    except (ValueError, TypeError) as exc:
        raise RowError("invalid_date", str(exc)) from None
    try:
        hours = float(values["hours"].replace(",", ""))
        score = float(values["score"].replace(",", "")) if values.get("score") else None
    except ValueError:
        raise RowError("invalid_number", f"hours {values['hours']!r} / score {values.get('score')!r} must be numbers") from None
    passed_text = values["passed"].lower()
    if passed_text in _TRUE:
        passed = True
    elif passed_text in _FALSE:
        passed = False
    else:
        raise RowError("invalid_passed", f"passed {values['passed']!r}: use true/false, 1/0, yes/no, ผ่าน/ไม่ผ่าน")
    try:
        data = TrainingCourseCompleted(agency=values["agency"], learner_ref=values["learner_ref"],
                                       course_id=values["course_id"], course_title=values.get("course_title") or None,
                                       competency=values["competency"], hours=hours, completed_on=completed_on,
                                       passed=passed, score=score)
    except ValidationError as exc:
        raise RowError("invalid_value", problems.explain(exc.errors(), limit=5)) from None
    if values.get("id"):
        event_id = "csv:" + values["id"]
    else:
        canonical = "\x1f".join([data.agency, data.learner_ref, data.course_id, data.competency.value,
                                 repr(data.hours), data.completed_on.isoformat(), str(data.passed), repr(data.score)])
        event_id = "csv:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return ParsedRow(event_id, data)
