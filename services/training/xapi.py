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

import dataclasses
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from services.common import b64url
from services.common.params import ANY_YEAR_TO_LAST, WHOLE_NUMBER
from services.contracts import problems, safejson
from services.contracts.common_types import NOT_BLANK, Competency
from services.contracts.dates import DATE_OUT_OF_RANGE, STATIC_REASONS, be_year_refusal, utc_representable
from services.contracts.thai_calendar import bangkok_day, is_valid_thai_national_id
from services.contracts.training import TrainingCourseCompleted

VERSION_HEADER = "X-Experience-API-Version"
VERSION = "1.0.3"
SUPPORTED_VERSIONS = ("1.0.3", "1.0.2", "1.0.1", "1.0.0")
VERB_COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
VERB_PASSED = "http://adlnet.gov/expapi/verbs/passed"
VERB_FAILED = "http://adlnet.gov/expapi/verbs/failed"
VERB_VOIDED = "http://adlnet.gov/expapi/verbs/voided"
COMPLETION_VERBS = frozenset({VERB_COMPLETED, VERB_PASSED, VERB_FAILED})
EXT_AGENCY = "https://newnormal.go.th/xapi/extensions/agency"
EXT_COMPETENCY = "https://newnormal.go.th/xapi/extensions/competency"
EXT_HOURS = "https://newnormal.go.th/xapi/extensions/hours"
COMPETENCY_CATEGORY_PREFIX = "https://newnormal.go.th/xapi/competency/"
_LANGUAGE_PREFERENCE = ("th-TH", "th", "en-US", "en-GB", "en", "und")
_DURATION = re.compile(r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
                       r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")
MBOX_PATTERN = r"^[mM][aA][iI][lL][tT][oO]:[^@]+@[^@]+$"
_VERSION = re.compile(r"^1\.0(\.[0-9]+)?$")  # ASCII digits, as the published pattern (Python's \d takes Thai ones)

# A text with a character that is not blank, as published in the schema (one class in both regex dialects).
_NOT_BLANK = re.compile(NOT_BLANK)


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
    """Hash of what the statement says, per xAPI 1.0.3 Data 2.3.1 (Statement Immutability and the Statement
    Comparison Requirements): ignored are what the LRS assigns (`id`, `authority`, `stored`, `version`, and
    `timestamp` when one side has none), the formatting of a timestamp (compared as an instant, ms),
    the order of object members, attachments and Group members, the case of UUIDs, mailto domains and
    language tags, and 1 vs 1.0. Everything else (the content) must match."""
    body = comparable(statement)
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def legacy_hash(statement: dict[str, Any]) -> str:
    """The hash statements were remembered by before the comparison rules (docs without `hash_version`)."""
    body = {k: v for k, v in statement.items() if k not in ("stored", "authority", "version")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def comparable(statement: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in statement.items() if k not in ("id", "stored", "authority", "version")}
    if "timestamp" in body:
        try:
            body["timestamp"] = _instant(body["timestamp"])
        except (StatementError, TypeError, OverflowError):
            pass  # not comparable as an instant: the text itself counts
    return _normal(body, "")


def _instant(text: Any) -> str:
    moment = parse_timestamp(text, "timestamp")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _normal(value: Any, key: str) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str) and key not in ("mbox", "registration"):
        return value
    if isinstance(value, str):
        return normal_mbox(value) if key == "mbox" else value.lower()
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)
    if isinstance(value, list):
        items = [_normal(v, "") for v in value]
        if key in ("attachments", "member"):  # unordered collections
            items.sort(key=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False))
        return items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if key in ("display", "name", "description") and isinstance(v, str):
                out[k.lower()] = v  # a language map: tags are case-insensitive
            else:
                out[k] = _normal(v, k)
        if value.get("objectType") == "StatementRef" and isinstance(value.get("id"), str):
            out["id"] = value["id"].lower()
        return out
    return value


# --- the Inverse Functional Identifier of an Agent -------------------------------------------------------

def normal_mbox(mbox: str) -> str:
    """`mailto:` + local part as sent + '@' + domain in lower case (domains are case-insensitive, RFC 5321;
    the local part may not be). Scheme in lower case too."""
    if not re.fullmatch(MBOX_PATTERN, mbox):
        raise StatementError("malformed_statement", "mbox must be a mailto: IRI with one address (mailto:name@domain)")
    local, _, domain = mbox[len("mailto:"):].rpartition("@")
    return f"mailto:{local}@{domain.lower()}"


def normal_home_page(url: str) -> str:
    """Scheme and host in lower case, no trailing slash on an empty path: one LMS spelt two ways is one LMS."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    host, slash, path = rest.partition("/")
    path = (slash + path).rstrip("/") if path.strip("/") else ""
    return f"{scheme.lower()}://{host.lower()}{path}"


def ifi_of(agent: dict[str, Any], where: str = "actor") -> tuple[str, str]:
    """(kind, normalised value) of the one Inverse Functional Identifier of an Agent (raise StatementError)."""
    ids = _identifier(agent)
    if len(ids) != 1:
        raise StatementError("malformed_statement", f"{where} needs exactly one of mbox, mbox_sha1sum, openid, account")
    kind = ids[0]
    if kind == "account":
        account = agent["account"]
        if not isinstance(account, dict) or not isinstance(account.get("name"), str) \
                or not _NOT_BLANK.search(account["name"]) or not isinstance(account.get("homePage"), str) \
                or not _NOT_BLANK.search(account["homePage"]):
            raise StatementError("malformed_statement", f"{where}.account needs homePage and name (strings)")
        return kind, normal_home_page(account["homePage"]) + "\x1f" + account["name"]
    value = agent[kind]
    if not isinstance(value, str):
        raise StatementError("invalid_type", f"{where}.{kind} must be a string")
    if kind == "mbox":
        return kind, normal_mbox(value)
    if kind == "mbox_sha1sum":
        digest = value.lower()
        if not re.fullmatch(r"[0-9a-f]{40}", digest):
            raise StatementError("malformed_statement", f"{where}.mbox_sha1sum must be 40 hex digits")
        return kind, digest
    if not value:
        raise StatementError("malformed_statement", f"{where}.openid must not be empty")
    return kind, value


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
    try:
        check_types(statement)
        if is_voiding(statement):
            voided_target(statement)
    except StatementError as err:
        raise StatementError(err.reason, f"statement {index}: {err.detail}", sid) from None
    return sid.lower() if isinstance(sid, str) else None


def is_voiding(statement: dict[str, Any]) -> bool:
    return statement["verb"].get("id") == VERB_VOIDED


def voided_target(statement: dict[str, Any]) -> str:
    """The statement id a `voided` statement retracts; its object must be a StatementRef (xAPI 1.0.3 Data 2.3.2)."""
    obj = statement["object"]
    if obj.get("objectType") != "StatementRef" or not is_uuid(obj.get("id")):
        raise StatementError("invalid_voiding", "a voiding statement's object must be a StatementRef with the UUID "
                             "of the statement it voids")
    return obj["id"].lower()


# --- strict JSON types (xAPI 1.0.3 Data 2.4): a string where a boolean or number belongs is refused ----------
_STR, _BOOL, _NUM, _OBJ, _LIST = "a string", "a boolean", "a number", "an object", "an array"


def _type_ok(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _OBJ:
        return isinstance(value, dict)
    if kind == _LIST:
        return isinstance(value, list)
    return isinstance(value, (dict, list))  # an Activity or an array of them


def _fields(obj: Any, path: str, spec: dict[str, str], closed: bool = True) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise StatementError("invalid_type", f"{path} must be an object")
    for name, value in obj.items():
        if name not in spec:
            if closed:
                raise StatementError("unknown_property", f"{path}.{name} is not a property of xAPI 1.0.3")
            continue
        if value is None or not _type_ok(value, spec[name]):
            raise StatementError("invalid_type", f"{path}.{name} must be {spec[name]}")
    return obj


def _language_map_ok(value: Any, path: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StatementError("invalid_type", f"{path} must be a language map (tag -> string)")


_AGENT = {"objectType": _STR, "name": _STR, "mbox": _STR, "mbox_sha1sum": _STR, "openid": _STR, "account": _OBJ,
          "member": _LIST}


def _agent(value: Any, path: str) -> None:
    obj = _fields(value, path, _AGENT)
    if obj.get("objectType", "Agent") not in ("Agent", "Group"):
        raise StatementError("invalid_type", f"{path}.objectType must be Agent or Group")
    if "account" in obj:
        _fields(obj["account"], f"{path}.account", {"homePage": _STR, "name": _STR})
    if "member" in obj:
        if obj.get("objectType") != "Group":
            raise StatementError("unknown_property", f"{path}.member belongs to a Group")
        for i, m in enumerate(obj["member"]):
            if isinstance(m, dict) and m.get("objectType") == "Group":
                raise StatementError("malformed_statement", f"{path}.member[{i}] must be an Agent")
            _agent(m, f"{path}.member[{i}]")
    if obj.get("objectType") != "Group" or _identifier(obj):
        ifi_of(obj, path)


def _activity(value: Any, path: str) -> None:
    obj = _fields(value, path, {"objectType": _STR, "id": _STR, "definition": _OBJ})
    if obj.get("objectType", "Activity") != "Activity" or "id" not in obj:
        raise StatementError("malformed_statement", f"{path} must be an Activity with its id")
    if "definition" in obj:
        d = _fields(obj["definition"], f"{path}.definition", {
            "name": _OBJ, "description": _OBJ, "type": _STR, "moreInfo": _STR, "extensions": _OBJ,
            "interactionType": _STR, "correctResponsesPattern": _LIST, "choices": _LIST, "scale": _LIST,
            "source": _LIST, "target": _LIST, "steps": _LIST})
        for lm in ("name", "description"):
            if lm in d:
                _language_map_ok(d[lm], f"{path}.definition.{lm}")


def _statement_ref(value: Any, path: str) -> None:
    obj = _fields(value, path, {"objectType": _STR, "id": _STR})
    if obj.get("objectType") != "StatementRef" or not is_uuid(obj.get("id")):
        raise StatementError("malformed_statement", f"{path} must be a StatementRef with a UUID id")


def is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _object(value: Any, path: str, sub: bool) -> None:
    kind = value.get("objectType", "Activity") if isinstance(value, dict) else None
    if kind == "Activity":
        _activity(value, path)
    elif kind in ("Agent", "Group"):
        _agent(value, path)
    elif kind == "StatementRef":
        _statement_ref(value, path)
    elif kind == "SubStatement" and not sub:
        _body(value, path, sub=True)
    else:
        raise StatementError("invalid_type", f"{path}.objectType must be Activity, Agent, Group, StatementRef"
                             + ("" if sub else " or SubStatement"))


_RESULT = {"score": _OBJ, "success": _BOOL, "completion": _BOOL, "response": _STR, "duration": _STR, "extensions": _OBJ}
_SCORE = {"scaled": _NUM, "raw": _NUM, "min": _NUM, "max": _NUM}
_CONTEXT = {"registration": _STR, "instructor": _OBJ, "team": _OBJ, "contextActivities": _OBJ, "revision": _STR,
            "platform": _STR, "language": _STR, "statement": _OBJ, "extensions": _OBJ}
_TOP = {"id": _STR, "actor": _OBJ, "verb": _OBJ, "object": _OBJ, "result": _OBJ, "context": _OBJ, "timestamp": _STR,
        "stored": _STR, "authority": _OBJ, "version": _STR, "attachments": _LIST}
_SUB = {"objectType": _STR, "actor": _OBJ, "verb": _OBJ, "object": _OBJ, "result": _OBJ, "context": _OBJ, "timestamp": _STR}


def _body(st: dict[str, Any], path: str, sub: bool) -> None:
    _fields(st, path, _SUB if sub else _TOP)
    for name in ("actor", "verb", "object"):
        if name not in st:
            raise StatementError("malformed_statement", f"{path}.{name} is required")
    _agent(st["actor"], f"{path}.actor")
    verb = _fields(st["verb"], f"{path}.verb", {"id": _STR, "display": _OBJ})
    if not isinstance(verb.get("id"), str) or ":" not in verb["id"]:
        raise StatementError("malformed_statement", f"{path}.verb.id must be an IRI")
    if "display" in verb:
        _language_map_ok(verb["display"], f"{path}.verb.display")
    _object(st["object"], f"{path}.object", sub)
    if "result" in st:
        result = _fields(st["result"], f"{path}.result", _RESULT)
        if "score" in result:
            score = _fields(result["score"], f"{path}.result.score", _SCORE)
            if "scaled" in score and not -1 <= score["scaled"] <= 1:
                raise StatementError("malformed_statement", f"{path}.result.score.scaled must be between -1 and 1")
    if "context" in st:
        ctx = _fields(st["context"], f"{path}.context", _CONTEXT)
        if "registration" in ctx and not is_uuid(ctx["registration"]):
            raise StatementError("malformed_statement", f"{path}.context.registration must be a UUID")
        for who in ("instructor", "team"):
            if who in ctx:
                _agent(ctx[who], f"{path}.context.{who}")
        if "statement" in ctx:
            _statement_ref(ctx["statement"], f"{path}.context.statement")
        for group, acts in _fields(ctx.get("contextActivities", {}), f"{path}.context.contextActivities",
                                   dict.fromkeys(("parent", "grouping", "category", "other"), "x"), closed=True).items():
            for i, act in enumerate(acts if isinstance(acts, list) else [acts]):
                _activity(act, f"{path}.context.contextActivities.{group}[{i}]")
    if "timestamp" in st:
        parse_timestamp(st["timestamp"], f"{path}.timestamp")


def check_types(statement: dict[str, Any]) -> None:
    """Every property of the statement has the type xAPI 1.0.3 gives it; unknown properties are refused
    (raise StatementError `invalid_type` / `unknown_property` with the path)."""
    _body(statement, "statement", sub=False)
    if "authority" in statement:
        _agent(statement["authority"], "statement.authority")


def is_completion(statement: dict[str, Any]) -> bool:
    return statement["verb"]["id"] in COMPLETION_VERBS


def _identifier(actor: dict[str, Any]) -> list[str]:
    return [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in actor]


def learner_ref_of(actor: dict[str, Any]) -> str:
    """The learner pseudonym from the actor's Inverse Functional Identifier (then keyed-hashed by the consumer).

    - `mbox`: the SHA-1 of the normalised address, i.e. the spec's `mbox_sha1sum` of it, so both forms of one
      mailbox are one learner, whatever the case of its domain (unchanged for addresses sent in lower case);
    - `mbox_sha1sum`: as sent (hex in lower case);
    - `openid`: `openid:` + SHA-1 of the URI (unchanged);
    - `account`: `account:` + SHA-256 of (normalised homePage, name): one name on two LMSs is two learners.
    """
    if actor.get("objectType") == "Group":
        raise StatementError("group_actor", "a course completion needs an individual Agent as actor, not a Group")
    kind, value = ifi_of(actor)
    if kind == "account":
        name = value.split("\x1f", 1)[1]
        if is_valid_thai_national_id(name.replace("-", "")):
            raise StatementError("national_id", "actor.account.name looks like a Thai national ID: use an opaque pseudonym")
        return "account:" + hashlib.sha256(value.encode()).hexdigest()
    if kind == "mbox":
        return "mbox_sha1sum:" + hashlib.sha1(value.encode()).hexdigest()
    if kind == "mbox_sha1sum":
        return "mbox_sha1sum:" + value
    return "openid:" + hashlib.sha1(value.encode()).hexdigest()


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


def parse_timestamp(ts: Any, where: str, reason: str = "malformed_statement",
                    wrong_type: str = "invalid_type") -> datetime:
    """An ISO 8601 instant with its offset; StatementError `wrong_type` when it is no string, `reason` when it
    is none (a query's parameter is `invalid_parameter` for both), `date_out_of_range` when it leaves the calendar
    in UTC."""
    if not isinstance(ts, str):
        raise StatementError(wrong_type, f"{where} must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(ts.strip())
    except ValueError:
        raise StatementError(reason, f"{where} {ts[:40]!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise StatementError(reason, f"{where} needs a timezone offset")
    if not utc_representable(moment):
        raise StatementError(DATE_OUT_OF_RANGE, f"{where} is out of range once converted to UTC")
    return moment


def parse_query_instant(text: str, name: str) -> datetime:
    """`since` / `until`: an instant, and the wire's one year rule of every date filter (`buddhist_era_date`,
    `date_out_of_range`; the document publishes years up to 2399). A statement's own timestamp meets the rule when
    it becomes a completion's date."""
    moment = parse_timestamp(text, name, "invalid_parameter", "invalid_parameter")
    if (refused := be_year_refusal(moment.year)) is not None:
        raise StatementError(refused[0], f"{name} {refused[1]}")
    return moment


def completed_on(statement: dict[str, Any], now: datetime) -> date:
    ts = statement.get("timestamp")
    if ts is None:
        return bangkok_day(now)
    return bangkok_day(parse_timestamp(ts, "timestamp"))


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
        if not isinstance(raw, (int, float)) or isinstance(raw, bool):
            raise StatementError("invalid_type", f"context.extensions[{EXT_HOURS!r}] must be a number")
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
        # The date rule's own reason (buddhist_era_date, date_out_of_range), as /v1/events answers it.
        kinds = [str(e["type"]) for e in exc.errors() if e["type"] in STATIC_REASONS]
        raise StatementError(kinds[0] if kinds else "invalid_statement", problems.explain(exc.errors(), limit=5),
                             statement_id) from None
    return Mapped(statement_id, data.agency, data)


# --- the stored (readable) form of a statement ------------------------------------------------------------
PSEUDONYM_HOME = "https://newnormal.go.th/xapi/learner"
AUTHORITY_HOME = "https://newnormal.go.th/xapi/agency"


def pseudonymised(statement: dict[str, Any], pseudonym: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """A copy whose Agents (actor, Agent objects, instructor, team, Group members, also in a SubStatement) are
    replaced by an account holding `pseudonym(agent)` (a keyed hash): no e-mail address, OpenID or LMS account
    name is stored in clear (PDPA), and the `agent` filter still finds them by the same hash."""
    def agent(a: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"objectType": a.get("objectType", "Agent")}
        if out["objectType"] == "Group" and "member" in a:
            out["member"] = [agent(m) for m in a["member"]]
        if out["objectType"] != "Group" or _identifier(a):
            out["account"] = {"homePage": PSEUDONYM_HOME, "name": pseudonym(a)}
        return out

    def body(st: dict[str, Any]) -> dict[str, Any]:
        out = dict(st)
        out["actor"] = agent(st["actor"])
        obj = st["object"]
        if obj.get("objectType") in ("Agent", "Group"):
            out["object"] = agent(obj)
        elif obj.get("objectType") == "SubStatement":
            out["object"] = body(obj)
        if isinstance(st.get("context"), dict):
            ctx = dict(st["context"])
            for who in ("instructor", "team"):
                if isinstance(ctx.get(who), dict):
                    ctx[who] = agent(ctx[who])
            out["context"] = ctx
        return out

    return body(statement)


def related(statement: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Activity ids and Agents a statement involves anywhere (object, context activities, instructor, team,
    a SubStatement's), for `related_activities` / `related_agents`."""
    activities: list[str] = []
    agents: list[dict[str, Any]] = [statement["actor"]]
    obj = statement["object"]
    kind = obj.get("objectType", "Activity")
    if kind == "Activity":
        activities.append(obj["id"])
    elif kind in ("Agent", "Group"):
        agents.append(obj)
    elif kind == "SubStatement":
        more_activities, more_agents = related(obj)
        activities += more_activities
        agents += more_agents
    ctx = statement.get("context") or {}
    for acts in (ctx.get("contextActivities") or {}).values():
        activities += [a["id"] for a in (acts if isinstance(acts, list) else [acts]) if isinstance(a.get("id"), str)]
    agents += [ctx[who] for who in ("instructor", "team") if isinstance(ctx.get(who), dict)]
    return activities, agents


# --- StatementRef filter-through (xAPI 1.0.3 Communication 2.1.3 "Filter Conditions for StatementRefs") ----
# A statement whose object is a StatementRef meets the agent/verb/activity/registration filters when its target
# does, recursively. Each stored doc carries its targets' filter values as `ref_keys` strings "depth|field|value"
# (depth 1 = the target, 2 = the target's target...), so one multikey index answers the query; a filter of
# several fields must be met by ONE target (the same depth), never pieced together from different ones.
MAX_REF_DEPTH = 3
REF_FIELDS = ("learner", "verb", "activity", "registration", "activities", "agents")


def statement_ref(statement: dict[str, Any]) -> str | None:
    """The id of the statement this one targets (its object is a StatementRef), lower-cased; else None."""
    obj = statement.get("object")
    if isinstance(obj, dict) and obj.get("objectType") == "StatementRef" and is_uuid(obj.get("id")):
        return obj["id"].lower()
    return None


def ref_keys(target: dict[str, Any]) -> list[str]:
    """The `ref_keys` a statement targeting the stored doc `target` gets: the target's own filter values at depth
    1, and its own `ref_keys` one level deeper (bounded by MAX_REF_DEPTH)."""
    keys: set[str] = set()
    for name in REF_FIELDS:
        value = target.get(name)
        for v in (value if isinstance(value, list) else [value]):
            if isinstance(v, str):
                keys.add(f"1|{name}|{v}")
    for key in target.get("ref_keys") or []:
        depth, _, rest = key.partition("|")
        if depth.isdigit() and int(depth) < MAX_REF_DEPTH:
            keys.add(f"{int(depth) + 1}|{rest}")
    return sorted(keys)


def deepen(keys: list[str], by: int) -> list[str]:
    """`keys` (as `ref_keys` builds them) seen from `by - 1` levels further up a chain of references."""
    out = []
    for key in keys:
        depth, _, rest = key.partition("|")
        if depth.isdigit() and int(depth) + by - 1 <= MAX_REF_DEPTH:
            out.append(f"{int(depth) + by - 1}|{rest}")
    return out


def filter_through(conditions: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The MongoDB conditions "the statement meets `conditions` (field -> accepted values) itself, or one of its
    targets does": to be OR-ed. Empty when there is nothing to filter on."""
    if not conditions:
        return []
    own = {name: values[0] if len(values) == 1 else {"$in": values} for name, values in conditions.items()}
    through = [{"$and": [{"ref_keys": {"$in": [f"{depth}|{name}|{v}" for v in values]}}
                         for name, values in conditions.items()]} for depth in range(1, MAX_REF_DEPTH + 1)]
    return [own, *through]


def accept_languages(header: str) -> list[str]:
    """The language ranges of an Accept-Language header, best first (RFC 9110 q-values; q=0 means "not this";
    a malformed q counts as 1, equal q keeps the client's order)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:32]):  # bounded: a header is outside input
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p[:2].lower() == "q=":
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 1.0
        if tag and q > 0:
            ranked.append((-q, i, tag))
    return [tag for _, _, tag in sorted(ranked)]


def pick_language(value: dict[str, str], languages: list[str]) -> str:
    """The key of a language map that best answers `languages` (RFC 4647 lookup, case-insensitive): an exact tag,
    then a tag the range is a prefix of (`en` → `en-GB`), then the range's own prefixes (`en-GB` → `en`); `*` or
    no match: `und` if present, else the first entry."""
    keys = {k.lower(): k for k in value}
    for lang in languages:
        low = lang.lower()
        if low == "*":
            break
        if low in keys:
            return keys[low]
        for k_low, k in keys.items():
            if k_low.startswith(low + "-"):
                return k
        parts = low.split("-")
        for n in range(len(parts) - 1, 0, -1):
            if "-".join(parts[:n]) in keys:
                return keys["-".join(parts[:n])]
    return keys.get("und", next(iter(value)))


def _context_arrays(st: dict[str, Any]) -> dict[str, Any]:
    """xAPI 1.0.3 (Data 2.4.6.2): the LRS returns every contextActivities value as an array, a single Activity
    as an array of one."""
    out = dict(st)
    ctx = st.get("context")
    if isinstance(ctx, dict) and isinstance(ctx.get("contextActivities"), dict):
        acts = {k: (v if isinstance(v, list) else [v]) for k, v in ctx["contextActivities"].items()}
        out["context"] = {**ctx, "contextActivities": acts}
    if isinstance(st.get("object"), dict) and st["object"].get("objectType") == "SubStatement":
        out["object"] = _context_arrays(st["object"])
    return out


def formatted(statement: dict[str, Any], fmt: str, languages: list[str]) -> dict[str, Any]:
    """The statement in the requested `format` (xAPI 1.0.3 Communication 2.1.3). `exact`: as stored. `ids`:
    Agents and Groups by objectType and identifier only (an anonymous Group by its members'), Activities and
    Verbs by `id` only. `canonical`: every language map reduced to the one language that best answers
    Accept-Language (`languages`, best first; `pick_language`). In every format contextActivities values are
    arrays."""
    statement = _context_arrays(statement)
    if fmt == "exact":
        return statement

    def agent(a: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in a.items() if k in ("objectType", "mbox", "mbox_sha1sum", "openid", "account")}
        if a.get("objectType") == "Group" and not _identifier(a) and isinstance(a.get("member"), list):
            out["member"] = [agent(m) for m in a["member"] if isinstance(m, dict)]
        return out

    def activity(a: Any) -> Any:
        return {"id": a["id"]} if isinstance(a, dict) and "id" in a else a

    def ids(st: dict[str, Any]) -> dict[str, Any]:
        out = dict(st)
        if isinstance(st.get("actor"), dict):
            out["actor"] = agent(st["actor"])
        if isinstance(st.get("verb"), dict):
            out["verb"] = activity(st["verb"])
        obj = st.get("object")
        if isinstance(obj, dict):
            kind = obj.get("objectType", "Activity")
            out["object"] = (agent(obj) if kind in ("Agent", "Group") else ids(obj) if kind == "SubStatement"
                             else activity(obj) if kind == "Activity" else obj)
        ctx = st.get("context")
        if isinstance(ctx, dict):
            c = dict(ctx)
            for who in ("instructor", "team"):
                if isinstance(c.get(who), dict):
                    c[who] = agent(c[who])
            if isinstance(c.get("contextActivities"), dict):
                c["contextActivities"] = {k: [activity(a) for a in v] for k, v in c["contextActivities"].items()}
            out["context"] = c
        if isinstance(st.get("authority"), dict):
            out["authority"] = agent(st["authority"])
        return out

    if fmt == "ids":
        return ids(statement)

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if not isinstance(value, dict):
            return value
        if key in ("display", "name", "description") and value and all(isinstance(v, str) for v in value.values()):
            pick = pick_language(value, languages)
            return {pick: value[pick]}
        return {k: walk(v, k) for k, v in value.items()}

    return walk(statement, "")


def agent_ref(agent: dict[str, Any]) -> str:
    """The learner pseudonym of any Agent (`learner_ref_of`), or of a Group by its members' pseudonyms."""
    if agent.get("objectType") == "Group" and not _identifier(agent):
        members = sorted(agent_ref(m) for m in agent.get("member", []))
        return "group:" + hashlib.sha256("\x1f".join(members).encode()).hexdigest()
    return learner_ref_of({k: v for k, v in agent.items() if k != "objectType"})


# --- GET /xapi/statements parameters and its `more` cursor -------------------------------------------------
MAX_LIMIT = 500
QUERY_PARAMS = frozenset({"agent", "verb", "activity", "since", "until", "limit", "ascending", "format",
                          "attachments", "related_activities", "related_agents", "registration"})


@dataclass(frozen=True)
class StatementQuery:
    agent: dict[str, Any] | None = None
    verb: str | None = None
    activity: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = MAX_LIMIT
    ascending: bool = False
    after: tuple[datetime, str] | None = None  # keyset: the last (stored, id) of the previous page
    registration: str | None = None
    related_activities: bool = False
    related_agents: bool = False
    format: str = "exact"


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise StatementError("invalid_parameter", f"{name} must be true or false")
    return value == "true"


def parse_query(params: Mapping[str, str]) -> StatementQuery:
    """The filters of a statement query (raise StatementError `invalid_parameter` / `unsupported_parameter`)."""
    unknown = sorted(set(params) - QUERY_PARAMS)
    if unknown:
        raise StatementError("invalid_parameter", f"unknown parameter {unknown[0][:40]!r}")
    if _flag(params, "attachments"):
        raise StatementError("unsupported_parameter", "attachments=true: this LRS stores no attachments")
    if params.get("format", "exact") not in ("exact", "ids", "canonical"):
        raise StatementError("invalid_parameter", "format must be exact, ids or canonical")
    registration = params.get("registration")
    if registration is not None and not is_uuid(registration.lower()):
        raise StatementError("invalid_parameter", "registration must be a UUID")
    agent = None
    if params.get("agent") is not None:
        try:
            agent = safejson.loads(params["agent"].encode())
        except ValueError:
            raise StatementError("invalid_parameter", "agent must be a JSON Agent object") from None
        _agent(agent, "agent")
    if not WHOLE_NUMBER.fullmatch(limit_text := params.get("limit", "0")) or int(limit_text) < 0:
        raise StatementError("invalid_parameter", "limit must be a whole number: 0 (the server's maximum) or more")
    limit = int(limit_text)
    for name in ("verb", "activity"):
        if params.get(name) is not None and ":" not in params[name]:
            raise StatementError("invalid_parameter", f"{name} must be an IRI")
    since = parse_query_instant(params["since"], "since") if "since" in params else None
    until = parse_query_instant(params["until"], "until") if "until" in params else None
    return StatementQuery(agent, params.get("verb"), params.get("activity"), since, until,
                          min(limit, MAX_LIMIT) if limit else MAX_LIMIT, _flag(params, "ascending"), None,
                          registration.lower() if registration else None, _flag(params, "related_activities"),
                          _flag(params, "related_agents"), params.get("format", "exact"))


def encode_cursor(q: StatementQuery, after: tuple[datetime, str]) -> str:
    """The `more` URL: the same filters and where the page ended, opaque to the client (base64url JSON)."""
    def iso(d: datetime | None) -> str | None:
        return None if d is None else d.replace(tzinfo=d.tzinfo or UTC).isoformat()
    state = {"agent": q.agent, "verb": q.verb, "activity": q.activity, "since": iso(q.since), "until": iso(q.until),
             "limit": q.limit, "ascending": q.ascending, "after": [iso(after[0]), after[1]],
             "registration": q.registration, "related": [q.related_activities, q.related_agents], "format": q.format}
    token = b64url.encode(json.dumps(state, separators=(",", ":")).encode())
    return "/xapi/statements?more=" + token


def decode_cursor(token: str) -> StatementQuery:
    """The query a `more` cursor stands for. The cursor is the client's text (base64url JSON, unsigned): its filters
    pass the very checks of the query parameters (`parse_query`), so a crafted one is refused like a bad query,
    never turned into a database filter (an object where an IRI belongs) or a date nothing can compare with."""
    try:
        state = safejson.loads(b64url.decode(token))
        params = {name: state[name] for name in ("verb", "activity", "since", "until", "registration", "format")
                  if state[name] is not None}
        if state["agent"] is not None:
            params["agent"] = json.dumps(state["agent"])
        if type(state["limit"]) is not int or not all(type(v) is bool for v in (state["ascending"], *state["related"])):
            raise ValueError("limit, ascending, related")
        params |= {"limit": str(state["limit"]), "ascending": str(state["ascending"]).lower(),
                   "related_activities": str(state["related"][0]).lower(),
                   "related_agents": str(state["related"][1]).lower()}
        after = state["after"]
        if not all(isinstance(v, str) for v in (*params.values(), *after)) or len(after) != 2:
            raise ValueError("a value of the wrong type")
        return dataclasses.replace(parse_query(params), after=(parse_timestamp(after[0], "after"), after[1]))
    except Exception:  # anything not made by encode_cursor
        raise StatementError("invalid_parameter", "more is not a cursor this LRS issued") from None


# --- the Statement Resource's request body, as the OpenAPI document describes it --------------------------
# Built from the same tables check_types() enforces, so what the document allows is what the service accepts
# (cross-field rules JSON Schema cannot state are in the description).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_JSON = {_STR: {"type": "string"}, _BOOL: {"type": "boolean"}, _NUM: {"type": "number"}, _OBJ: {"type": "object"},
         _LIST: {"type": "array"}}
_LANG = {"type": "object", "additionalProperties": {"type": "string"}}
_UUID = {"type": "string", "pattern": UUID_PATTERN}


def _closed(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        out["required"] = required
    return out


def _agent_schema(object_type_required: bool) -> dict[str, Any]:
    props = {"objectType": {"const": "Agent"}, "name": {"type": "string"},
             "mbox": {"type": "string", "pattern": MBOX_PATTERN},
             "mbox_sha1sum": {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"},
             "openid": {"type": "string", "minLength": 1},
             "account": _closed({"homePage": {"type": "string", "pattern": NOT_BLANK},
                                 "name": {"type": "string", "pattern": NOT_BLANK}}, ["homePage", "name"])}
    out = _closed(props, ["objectType"] if object_type_required else None)
    out["oneOf"] = [{"required": [k]} for k in ("mbox", "mbox_sha1sum", "openid", "account")]
    return out


def _group_schema() -> dict[str, Any]:
    agent = _agent_schema(False)
    props = {k: v for k, v in agent["properties"].items() if k != "objectType"}
    ifis = ("mbox", "mbox_sha1sum", "openid", "account")
    out = _closed({**props, "objectType": {"const": "Group"}, "member": {"type": "array", "items": agent}},
                  ["objectType"])
    out["not"] = {"anyOf": [{"required": [a, b]} for i, a in enumerate(ifis) for b in ifis[i + 1:]]}
    return out


def _activity_schema() -> dict[str, Any]:
    definition = _closed({"name": _LANG, "description": _LANG, "type": {"type": "string"},
                          "moreInfo": {"type": "string"}, "extensions": {"type": "object"},
                          "interactionType": {"type": "string"},
                          **{k: {"type": "array"} for k in ("correctResponsesPattern", "choices", "scale", "source",
                                                           "target", "steps")}})
    return _closed({"objectType": {"const": "Activity"}, "id": {"type": "string"}, "definition": definition}, ["id"])


_REF = _closed({"objectType": {"const": "StatementRef"}, "id": _UUID}, ["objectType", "id"])


def _body_schema(sub: bool) -> dict[str, Any]:
    actor = {"oneOf": [_agent_schema(False), _group_schema()]}
    objects = [_activity_schema(), _agent_schema(True), _group_schema(), _REF]
    if not sub:
        objects.append(_body_schema(sub=True))
    score = _closed({"scaled": {"type": "number", "minimum": -1, "maximum": 1},
                     **{k: {"type": "number"} for k in ("raw", "min", "max")}})
    result = _closed({**{k: _JSON[v] for k, v in _RESULT.items()}, "score": score})
    activities = {"oneOf": [_activity_schema(), {"type": "array", "items": _activity_schema()}]}
    context = _closed({**{k: _JSON[v] for k, v in _CONTEXT.items()}, "registration": _UUID, "instructor": actor,
                       "team": actor, "statement": _REF,
                       "contextActivities": _closed(dict.fromkeys(("parent", "grouping", "category", "other"),
                                                                  activities))})
    props = {"actor": actor, "verb": _closed({"id": {"type": "string", "pattern": ":"}, "display": _LANG}, ["id"]),
             "object": {"oneOf": objects}, "result": result, "context": context,
             "timestamp": {"type": "string", "format": "date-time"}}
    if sub:
        return _closed({**props, "objectType": {"const": "SubStatement"}}, ["objectType", "actor", "verb", "object"])
    return _closed({**props, "id": _UUID, "stored": {"type": "string"}, "authority": actor,
                    "version": {"type": "string"}, "attachments": {"type": "array"}}, ["actor", "verb", "object"])


STATEMENT_SCHEMA: dict[str, Any] = {
    **_body_schema(sub=False),
    "title": "XapiStatement",
    "description": "xAPI 1.0.3 statement, with the types the specification gives every property (unknown properties "
                   "are refused). Verbs completed / passed / failed become course completions and need the "
                   "competency extension (see the service README); `voided` needs a StatementRef object; an "
                   "account name that is a Thai national ID is refused; other verbs are stored and not counted.",
}


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_BOOLEAN = {"type": "string", "enum": ["true", "false"]}
# A query's instant: a year past params.LAST_YEAR (2399) is the wire's one year rule (`buddhist_era_date`, `date_out_of_range`).
_INSTANT = {"type": "string", "format": "date-time", "pattern": f"^{ANY_YEAR_TO_LAST}-"}
QUERY_PARAMETERS: list[dict[str, Any]] = [
    _param("statementId", _UUID, "one statement by id (not a voided one)"),
    _param("voidedStatementId", _UUID, "one voided statement by id"),
    {"name": "agent", "in": "query", "required": False, "description": "statements about this Agent (JSON)",
     "content": {"application/json": {"schema": {"oneOf": [_agent_schema(False), _group_schema()]}}}},
    _param("verb", {"type": "string", "pattern": ":"}, "verb IRI"),
    _param("activity", {"type": "string", "pattern": ":"}, "the object's Activity IRI"),
    _param("registration", _UUID, "context.registration"),
    _param("related_activities", _BOOLEAN, "activity also matches context activities and sub-statements"),
    _param("related_agents", _BOOLEAN, "agent also matches instructor, team, object and sub-statement agents"),
    _param("since", _INSTANT, "stored after this instant"),
    _param("until", _INSTANT, "stored at or before this instant"),
    _param("limit", {"type": "integer", "minimum": 0}, f"page size; 0 = the maximum ({MAX_LIMIT})"),
    _param("format", {"type": "string", "enum": ["exact", "ids", "canonical"]}, "exact (default), ids, canonical"),
    _param("attachments", {"type": "string", "enum": ["false"]}, "this LRS stores no attachments"),
    _param("ascending", _BOOLEAN, "oldest first (default newest first)"),
    _param("more", {"type": "string"}, "the `more` URL's cursor of the previous page"),
]
