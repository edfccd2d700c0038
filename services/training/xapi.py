"""xAPI 1.0.3 statements -> `training.course.completed` (pure mapping, no I/O).

Extension IRIs this LRS understands (put them in `context.extensions`):

- `https://newnormal.go.th/xapi/extensions/agency`: agency code from the registry (defaults to the API key's agency).
- `https://newnormal.go.th/xapi/extensions/competency`: one of digital_technology, academic_knowledge, mindset,
  public_service. Alternatively a `context.contextActivities.category` activity whose id is
  `https://newnormal.go.th/xapi/competency/<competency>`.
- `https://newnormal.go.th/xapi/extensions/hours` (optional): credited hours when `result.duration` is absent.

Actor: `account.name` is used as the learner pseudonym (the agency's own opaque id); `mbox`, `mbox_sha1sum`
and `openid` are reduced to a SHA-1 so no e-mail address travels further. All are then stored only as a
keyed hash (see `domain.learner_hash`).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from services.contracts import problems
from services.contracts.common_types import Competency
from services.contracts.thai_calendar import bangkok_day, is_valid_thai_national_id
from services.contracts.training import TrainingCourseCompleted

VERSION_HEADER = "X-Experience-API-Version"
VERSION = "1.0.3"
VERB_COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
VERB_PASSED = "http://adlnet.gov/expapi/verbs/passed"
VERB_FAILED = "http://adlnet.gov/expapi/verbs/failed"
COMPLETION_VERBS = frozenset({VERB_COMPLETED, VERB_PASSED, VERB_FAILED})
EXT_AGENCY = "https://newnormal.go.th/xapi/extensions/agency"
EXT_COMPETENCY = "https://newnormal.go.th/xapi/extensions/competency"
EXT_HOURS = "https://newnormal.go.th/xapi/extensions/hours"
COMPETENCY_CATEGORY_PREFIX = "https://newnormal.go.th/xapi/competency/"
_LANGUAGE_PREFERENCE = ("th-TH", "th", "en-US", "en-GB", "en", "und")
_DURATION = re.compile(r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
                       r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")
_VERSION = re.compile(r"^1\.0(\.\d+)?$")


class StatementError(ValueError):
    """A malformed or unmappable statement: the request gets 400 with this reason."""

    def __init__(self, reason: str, detail: str, statement_id: str | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.statement_id = statement_id


@dataclass(frozen=True)
class Mapped:
    statement_id: str
    agency: str
    data: TrainingCourseCompleted


def version_ok(value: str | None) -> bool:
    return bool(value and _VERSION.match(value.strip()))


def duration_hours(text: str) -> float:
    """ISO 8601 duration to hours (PT1H30M -> 1.5). Years and months are refused: their length is not fixed."""
    m = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not m or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise StatementError("invalid_duration", f"result.duration {text!r} is not an ISO 8601 duration such as PT1H30M")
    parts = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    hours = parts["w"] * 168 + parts["d"] * 24 + parts["h"] + parts["m"] / 60 + parts["s"] / 3600
    return round(hours, 4)


def canonical_hash(statement: dict[str, Any]) -> str:
    """Hash of what the statement says, ignoring what the LRS adds (stored, authority, version)."""
    body = {k: v for k, v in statement.items() if k not in ("stored", "authority", "version")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def check_statement(statement: Any, index: int) -> str | None:
    """Structural checks required of every statement (any verb); returns the statement id or None."""
    if not isinstance(statement, dict):
        raise StatementError("malformed_statement", f"statement {index} is not a JSON object")
    sid = statement.get("id")
    if sid is not None:
        try:
            if not isinstance(sid, str) or str(uuid.UUID(sid)) != sid.lower():
                raise ValueError
        except ValueError:
            raise StatementError("invalid_statement_id", f"statement {index}: id {sid!r} is not a UUID") from None
    for name in ("actor", "verb", "object"):
        if not isinstance(statement.get(name), dict):
            raise StatementError("malformed_statement", f"statement {index}: '{name}' is required and must be an object", sid)
    verb_id = statement["verb"].get("id")
    if not isinstance(verb_id, str) or ":" not in verb_id:
        raise StatementError("malformed_statement", f"statement {index}: verb.id must be an IRI", sid)
    if statement["object"].get("objectType", "Activity") == "Activity" and not isinstance(statement["object"].get("id"), str):
        raise StatementError("malformed_statement", f"statement {index}: object.id is required for an Activity", sid)
    if not _identifier(statement["actor"]) and statement["actor"].get("objectType") != "Group":
        raise StatementError("malformed_statement",
                             f"statement {index}: actor needs exactly one of mbox, mbox_sha1sum, openid, account", sid)
    return sid.lower() if isinstance(sid, str) else None


def is_completion(statement: dict[str, Any]) -> bool:
    return statement["verb"]["id"] in COMPLETION_VERBS


def _identifier(actor: dict[str, Any]) -> list[str]:
    return [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if actor.get(k)]


def learner_ref_of(actor: dict[str, Any]) -> str:
    if actor.get("objectType") == "Group":
        raise StatementError("group_actor", "a course completion needs an individual Agent as actor, not a Group")
    ids = _identifier(actor)
    if len(ids) != 1:
        raise StatementError("malformed_statement", "actor needs exactly one of mbox, mbox_sha1sum, openid, account")
    kind = ids[0]
    if kind == "account":
        account = actor["account"]
        name = account.get("name") if isinstance(account, dict) else None
        if not isinstance(name, str) or not name.strip() or not isinstance(account.get("homePage"), str):
            raise StatementError("malformed_statement", "actor.account needs homePage and name")
        if is_valid_thai_national_id(name.strip().replace("-", "")):
            raise StatementError("national_id", "actor.account.name looks like a Thai national ID: use an opaque pseudonym")
        name = name.strip()
        return name if len(name) <= 200 else "sha1:" + hashlib.sha1(name.encode()).hexdigest()
    if kind == "mbox":
        mbox = str(actor["mbox"]).strip()
        if not mbox.lower().startswith("mailto:"):
            raise StatementError("malformed_statement", "actor.mbox must be a mailto: IRI")
        # Same digest as the spec's mbox_sha1sum, so both forms of one person are one learner.
        return "mbox_sha1sum:" + hashlib.sha1(mbox.encode()).hexdigest()
    if kind == "mbox_sha1sum":
        value = str(actor["mbox_sha1sum"]).strip().lower()
        if not re.fullmatch(r"[0-9a-f]{40}", value):
            raise StatementError("malformed_statement", "actor.mbox_sha1sum must be 40 hex digits")
        return "mbox_sha1sum:" + value
    return "openid:" + hashlib.sha1(str(actor["openid"]).encode()).hexdigest()


def _language_map(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return None
    for lang in _LANGUAGE_PREFERENCE:
        if isinstance(value.get(lang), str):
            return value[lang]
    first = next(iter(value.values()))
    return first if isinstance(first, str) else None


def _competency(statement: dict[str, Any]) -> str:
    context = statement.get("context") or {}
    ext = (context.get("extensions") or {}).get(EXT_COMPETENCY)
    if ext is None:
        ext = ((statement["object"].get("definition") or {}).get("extensions") or {}).get(EXT_COMPETENCY)
    if ext is None:
        for activity in ((context.get("contextActivities") or {}).get("category") or []):
            if isinstance(activity, dict) and str(activity.get("id", "")).startswith(COMPETENCY_CATEGORY_PREFIX):
                ext = activity["id"][len(COMPETENCY_CATEGORY_PREFIX):]
                break
    known = {c.value for c in Competency}
    if ext is None:
        raise StatementError("missing_competency", f"put the competency in context.extensions[{EXT_COMPETENCY!r}] "
                             f"or a category activity {COMPETENCY_CATEGORY_PREFIX}<competency>")
    if ext not in known:
        raise StatementError("unknown_competency", f"competency {ext!r}; known: {', '.join(sorted(known))}")
    return ext


def _score(result: dict[str, Any]) -> float | None:
    score = result.get("score")
    if not isinstance(score, dict):
        return None
    scaled = score.get("scaled")
    if isinstance(scaled, (int, float)):
        if not -1 <= scaled <= 1:
            raise StatementError("malformed_statement", "result.score.scaled must be between -1 and 1")
        return round(max(0.0, float(scaled)) * 100, 2)
    raw, lo, hi = score.get("raw"), score.get("min", 0), score.get("max")
    if isinstance(raw, (int, float)) and isinstance(hi, (int, float)) and isinstance(lo, (int, float)) and hi > lo:
        return round(min(100.0, max(0.0, (raw - lo) / (hi - lo) * 100)), 2)
    return None


def completed_on(statement: dict[str, Any], now: datetime) -> date:
    ts = statement.get("timestamp")
    if ts is None:
        return bangkok_day(now)
    try:
        moment = datetime.fromisoformat(str(ts))
    except ValueError:
        raise StatementError("malformed_statement", f"timestamp {ts!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise StatementError("malformed_statement", "timestamp needs a timezone offset")
    return bangkok_day(moment)


def map_statement(statement: dict[str, Any], statement_id: str, default_agency: str, now: datetime) -> Mapped:
    """A completed / passed / failed statement to completion data (raise StatementError with a reason)."""
    verb = statement["verb"]["id"]
    result = statement.get("result") or {}
    context = statement.get("context") or {}
    learner_ref = learner_ref_of(statement["actor"])
    obj = statement["object"]
    if obj.get("objectType", "Activity") != "Activity":
        raise StatementError("unsupported_object", "the object of a completion must be an Activity (the course)")
    agency = (context.get("extensions") or {}).get(EXT_AGENCY, default_agency)
    if "duration" in result:
        hours = duration_hours(result["duration"])
    else:
        raw = (context.get("extensions") or {}).get(EXT_HOURS, 0)
        if not isinstance(raw, (int, float)):
            raise StatementError("malformed_statement", f"{EXT_HOURS} must be a number")
        hours = float(raw)
    if verb == VERB_PASSED:
        passed = True
    elif verb == VERB_FAILED:
        passed = False
    else:  # completed: a course finished counts unless the LMS says it was not a success
        passed = result.get("success") is not False
    try:
        data = TrainingCourseCompleted(
            agency=str(agency), learner_ref=learner_ref, course_id=obj["id"][:200],
            course_title=(_language_map((obj.get("definition") or {}).get("name")) or None),
            competency=_competency(statement), hours=hours, completed_on=completed_on(statement, now),
            passed=passed, score=_score(result))
    except ValidationError as exc:
        raise StatementError("invalid_statement", problems.explain(exc.errors(), limit=5), statement_id) from None
    return Mapped(statement_id, data.agency, data)


# --- the Statement Resource's request body, as the OpenAPI document describes it --------------------------
# Exactly what check_statement() enforces of every statement (more is checked of completions only).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_PRESENT = {"not": {"enum": [None, False, 0, "", [], {}]}}
STATEMENT_SCHEMA: dict[str, Any] = {
    "title": "XapiStatement",
    "description": "xAPI 1.0.3 statement. Verbs completed / passed / failed become course completions (see the "
                   "extension IRIs in the service README); other verbs are acknowledged and ignored.",
    "type": "object",
    "required": ["actor", "verb", "object"],
    "properties": {
        "id": {"type": "string", "pattern": UUID_PATTERN, "description": "assigned by the LRS when absent"},
        "actor": {"type": "object", "description": "an Agent with an identifier (mbox, mbox_sha1sum, openid or "
                                                   "account), or a Group",
                  "anyOf": [{"required": [name], "properties": {name: _PRESENT}}
                            for name in ("mbox", "mbox_sha1sum", "openid", "account")]
                  + [{"required": ["objectType"], "properties": {"objectType": {"const": "Group"}}}]},
        "verb": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "pattern": ":"}}},
        "object": {"type": "object", "description": "an Activity needs its IRI as `id`",
                   "anyOf": [{"required": ["objectType"], "properties": {"objectType": {"not": {"const": "Activity"}}}},
                             {"required": ["id"], "properties": {"id": {"type": "string"}}}]},
    },
}
