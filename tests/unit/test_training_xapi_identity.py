"""xAPI identity (IFI), strict types, statement comparison, voiding and query parsing: pure rules, no I/O."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from datetime import UTC, datetime

import pytest
from ledger_fakes import MemoryLedgerStore

from services.common import b64url
from services.contracts.events import TRAINING_COURSE_COMPLETED
from services.contracts.training import TrainingCompletionVoided
from services.training import domain, xapi
from services.training.adapters import counting_ledger

NOW = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
SID = "fd41c918-b88b-4b20-a0a5-a4c32391aaa0"
BASE = {
    "id": SID, "timestamp": "2026-02-28T18:30:00Z",
    "actor": {"objectType": "Agent", "account": {"homePage": "https://lms.dga.or.th", "name": "emp-1"}},
    "verb": {"id": xapi.VERB_COMPLETED, "display": {"en-US": "completed"}},
    "object": {"id": "https://lms.dga.or.th/c/1", "definition": {"name": {"en-US": "Course"}}},
    "result": {"success": True, "duration": "PT1H"},
    "context": {"extensions": {xapi.EXT_COMPETENCY: "digital_technology"}},
}


def with_(path: str, value) -> dict:
    st = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = st
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return st


def ref(actor: dict) -> str:
    return xapi.learner_ref_of(actor)


def test_account_identity_is_home_page_and_name():
    a = {"account": {"homePage": "https://lms.dga.or.th", "name": "emp-1"}}
    b = {"account": {"homePage": "https://moodle.dga.or.th", "name": "emp-1"}}
    assert ref(a) != ref(b)  # one name on two LMSs: two learners
    # The same LMS spelt with another host case or a trailing slash is the same LMS.
    assert ref(a) == ref({"account": {"homePage": "HTTPS://LMS.dga.or.th/", "name": "emp-1"}})
    assert ref(a) != ref({"account": {"homePage": "https://lms.dga.or.th", "name": "EMP-1"}})  # names are exact
    assert ref(a) == "account:" + hashlib.sha256(b"https://lms.dga.or.th\x1femp-1").hexdigest()


def test_mbox_domain_is_case_insensitive_local_part_is_not():
    lower = ref({"mbox": "mailto:Somchai.K@dga.or.th"})
    assert lower == ref({"mbox": "MAILTO:Somchai.K@DGA.OR.TH"})
    assert lower != ref({"mbox": "mailto:somchai.k@dga.or.th"})
    # Stored refs of addresses sent in lower case do not change; sha1sum of the normal form is the same learner.
    assert lower == "mbox_sha1sum:" + hashlib.sha1(b"mailto:Somchai.K@dga.or.th").hexdigest()
    assert ref({"mbox_sha1sum": hashlib.sha1(b"mailto:Somchai.K@dga.or.th").hexdigest().upper()}) == lower
    assert ref({"openid": "https://id.example.org/me"}) == "openid:" + hashlib.sha1(b"https://id.example.org/me").hexdigest()
    for bad in ({"mbox": "somchai@dga.or.th"}, {"mbox": "mailto:"}, {"mbox_sha1sum": "xyz"},
                {"mbox": "mailto:a@b.c", "openid": "https://x"}, {"account": {"name": "x"}}, {"mbox": 7}):
        with pytest.raises(xapi.StatementError):
            ref(bad)


@pytest.mark.parametrize("path,value,where", [
    ("result.success", "false", "statement.result.success"),
    ("result.completion", 1, "statement.result.completion"),
    ("result.score", {"scaled": "0.9"}, "statement.result.score.scaled"),
    ("result.score", {"raw": True}, "statement.result.score.raw"),
    ("result.duration", 3600, "statement.result.duration"),
    ("verb.display", {"en-US": 5}, "statement.verb.display"),
    ("timestamp", 1700000000, "statement.timestamp"),
    ("context.registration", 12, "statement.context.registration"),
    ("actor.name", ["x"], "statement.actor.name"),
    ("object.definition", "course", "statement.object.definition"),
    ("result", None, "statement.result"),
])
def test_strict_types_are_refused_with_the_path(path, value, where):
    with pytest.raises(xapi.StatementError) as e:
        xapi.check_statement(with_(path, value), 0)
    assert e.value.reason == "invalid_type" and where in e.value.detail


def test_unknown_properties_and_a_real_boolean():
    with pytest.raises(xapi.StatementError) as e:
        xapi.check_statement(with_("result.sucess", True), 0)
    assert e.value.reason == "unknown_property" and "statement.result.sucess" in e.value.detail
    failed = with_("result.success", False)
    assert xapi.check_statement(failed, 0) == SID
    assert xapi.map_statement(failed, SID, "dga", NOW).data.passed is False


def test_comparison_ignores_what_the_spec_ignores():
    h = xapi.canonical_hash(BASE)
    same = copy.deepcopy(BASE)
    same["timestamp"] = "2026-03-01T01:30:00.000+07:00"  # the same instant, another spelling
    same["stored"] = "2026-03-01T00:00:00Z"
    same["authority"] = {"mbox": "mailto:lrs@example.com"}
    same["version"] = "1.0.3"
    same["id"] = SID.upper()
    same["result"] = {"duration": "PT1H", "success": True}  # member order
    same["verb"]["display"] = {"EN-us": "completed"}  # language tags are case-insensitive
    assert xapi.canonical_hash(same) == h
    number = with_("result.score", {"raw": 1})
    assert xapi.canonical_hash(number) == xapi.canonical_hash(with_("result.score", {"raw": 1.0}))
    atts = [{"usageType": "u", "sha2": "a"}, {"usageType": "u", "sha2": "b"}]
    assert xapi.canonical_hash({**BASE, "attachments": atts}) == xapi.canonical_hash({**BASE, "attachments": atts[::-1]})
    mbox = {**BASE, "actor": {"mbox": "mailto:A@X.ORG"}}
    assert xapi.canonical_hash(mbox) == xapi.canonical_hash({**BASE, "actor": {"mbox": "mailto:A@x.org"}})
    # What the statement says counts: another success, another learner, another instant.
    for other in (with_("result.success", False), with_("actor.account.name", "emp-2"),
                  with_("timestamp", "2026-02-28T18:30:01Z")):
        assert xapi.canonical_hash(other) != h


def test_voiding_needs_a_statement_ref():
    voiding = {"actor": {"mbox": "mailto:admin@dga.or.th"}, "verb": {"id": xapi.VERB_VOIDED},
               "object": {"objectType": "StatementRef", "id": SID.upper()}}
    assert xapi.check_statement(voiding, 0) is None and xapi.voided_target(voiding) == SID
    for obj in ({"id": "https://lms.dga.or.th/c/1"}, {"objectType": "StatementRef", "id": "nope"},
                {"objectType": "Agent", "mbox": "mailto:a@b.c"}):
        with pytest.raises(xapi.StatementError) as e:
            xapi.check_statement({**voiding, "object": obj}, 0)
        assert e.value.reason in ("invalid_voiding", "malformed_statement")
    with pytest.raises(xapi.StatementError) as e:
        xapi.check_statement({**voiding, "object": {"id": "https://lms.dga.or.th/c/1"}}, 0)
    assert e.value.reason == "invalid_voiding"


def test_completion_voided_contract_stays_in_the_agency_namespace():
    ok = TrainingCompletionVoided(agency="dga", voided_source="/agencies/dga/xapi", voided_id="xapi:" + SID)
    assert domain.voided_key(ok.voided_source, ok.voided_id) == f"/agencies/dga/xapi\x1fxapi:{SID}"
    with pytest.raises(ValueError):
        TrainingCompletionVoided(agency="dga", voided_source="/agencies/ocsc/xapi", voided_id="x")


def test_voided_completions_are_not_counted_and_a_retraction_takes_them_out():
    c = {"source": "/agencies/dga/t", "type": TRAINING_COURSE_COMPLETED,
         "data": {"agency": "dga", "competency": "mindset", "hours": 2.0, "passed": True, "learner_ref": "h1",
                  "completed_on": "2026-01-05"}}
    store = MemoryLedgerStore()
    ledger = counting_ledger(store, lambda: datetime(2026, 3, 1, tzinfo=UTC))

    def figures():
        return domain.rollup_figures({k: v for k, v in store.docs(domain.ROLLUPS)[0].items()})

    asyncio.run(ledger.write([domain.void_doc("early", "r-early", datetime(2026, 3, 1, tzinfo=UTC))], domain.VOIDS))
    asyncio.run(ledger.write([{**c, "_id": "late", "id": "late"}, {**c, "_id": "early", "id": "early"}],
                             domain.COMPLETIONS))
    assert figures() == {"completions": 1, "passed_completions": 1, "hours": 2.0, "passed_hours": 2.0,
                         "ready_learners": 1}  # voided before it arrived: stored, never counted
    asyncio.run(ledger.write([domain.void_doc("late", "r-late", datetime(2026, 3, 1, tzinfo=UTC))], domain.VOIDS))
    assert figures() == {"completions": 0, "passed_completions": 0, "hours": 0.0, "passed_hours": 0.0,
                         "ready_learners": 0}


def test_stored_statements_hold_no_address_and_query_parsing():
    st = {**BASE, "actor": {"mbox": "mailto:somchai@dga.or.th", "name": "Somchai"},
          "context": {**BASE["context"], "instructor": {"mbox": "mailto:t@dga.or.th"}}}
    stored = xapi.pseudonymised(st, lambda a: "hmac:" + xapi.agent_ref(a)[:8])
    assert "somchai" not in str(stored).lower() and "t@dga" not in str(stored)
    assert stored["actor"]["account"]["homePage"] == xapi.PSEUDONYM_HOME
    q = xapi.parse_query({"agent": '{"mbox": "mailto:a@b.org"}', "verb": xapi.VERB_COMPLETED, "limit": "2",
                          "since": "2026-01-01T00:00:00Z", "ascending": "true"})
    assert q.limit == 2 and q.ascending and q.agent == {"mbox": "mailto:a@b.org"}
    again = xapi.decode_cursor(xapi.encode_cursor(q, (NOW, SID)).split("more=", 1)[1])
    assert (again.agent, again.verb, again.limit, again.ascending, again.since, again.after) == (
        q.agent, q.verb, 2, True, q.since, (NOW, SID))
    for bad in ({"limit": "-1"}, {"agent": "{"}, {"agent": '{"name": "x"}'}, {"since": "yesterday"},
                {"ascending": "yes"}, {"colour": "red"}, {"attachments": "true"}):
        with pytest.raises(xapi.StatementError):
            xapi.parse_query(bad)
    with pytest.raises(xapi.StatementError):
        xapi.decode_cursor("not-a-cursor")
    # The cursor is the client's text: a crafted one is refused as a bad query would be, never turned into a
    # database filter or a date nothing compares with (year 1 at +14:00 was a 500 as `since`).
    issued = json.loads(b64url.decode(xapi.encode_cursor(q, (NOW, SID)).split("more=", 1)[1]))
    for crafted in ({"verb": {"$ne": None}}, {"since": "0001-01-01T00:00:00+14:00"}, {"until": "2026-01-01T00:00:00"},
                    {"limit": True}, {"limit": "5"}, {"ascending": 1}, {"after": ["0001-01-01T00:00:00+14:00", SID]},
                    {"after": [NOW.isoformat(), {"$gt": ""}]}, {"registration": "x"}, {"format": {"a": 1}},
                    {"agent": {"mbox": {"$regex": "."}}}):
        with pytest.raises(xapi.StatementError, match="more is not a cursor"):
            xapi.decode_cursor(b64url.encode(json.dumps({**issued, **crafted}).encode()))
    with pytest.raises(xapi.StatementError, match="out of range"):
        xapi.parse_query({"since": "0001-01-01T00:00:00+14:00"})


SUB = {"id": "6f3c1a52-2b7e-4c55-9a0e-7d1f2f0e9b11",
       "actor": {"objectType": "Agent", "mbox": "mailto:a@dga.or.th", "name": "A"},
       "verb": {"id": "http://adlnet.gov/expapi/verbs/attempted", "display": {"en-US": "attempted", "en-GB": "tried"}},
       "object": {"objectType": "SubStatement",
                  "actor": {"objectType": "Group", "mbox": "mailto:g@dga.or.th", "name": "G",
                            "member": [{"mbox": "mailto:m@dga.or.th"}]},
                  "verb": {"id": "http://x/v2", "display": {"en-US": "v2"}},
                  "object": {"objectType": "Activity", "id": "http://x/act",
                             "definition": {"name": {"en-US": "n", "en-GB": "n gb"}, "type": "http://x/t"}},
                  "context": {"contextActivities": {"parent": {"id": "http://x/p"}}}},
       "context": {"instructor": {"objectType": "Group", "member": [{"mbox": "mailto:i@dga.or.th", "name": "I"}]},
                   "contextActivities": {"category": {"id": "http://x/c",
                                                      "definition": {"name": {"en-US": "c", "en-GB": "c gb",
                                                                              "fr": "c fr"}}}}}}


def test_format_ids_keeps_identifiers_only():
    """xAPI 1.0.3 `ids`: Agents/Groups by objectType and IFI (an anonymous Group by its members), Activities and
    Verbs by `id` only, at every depth (SubStatement, contextActivities)."""
    out = xapi.formatted(copy.deepcopy(SUB), "ids", [])
    assert out["actor"] == {"objectType": "Agent", "mbox": "mailto:a@dga.or.th"}
    assert out["verb"] == {"id": "http://adlnet.gov/expapi/verbs/attempted"}
    sub = out["object"]
    assert sub["actor"] == {"objectType": "Group", "mbox": "mailto:g@dga.or.th"}  # identified: no members, no name
    assert sub["object"] == {"id": "http://x/act"} and sub["verb"] == {"id": "http://x/v2"}
    assert sub["context"]["contextActivities"] == {"parent": [{"id": "http://x/p"}]}
    assert out["context"]["instructor"] == {"objectType": "Group", "member": [{"mbox": "mailto:i@dga.or.th"}]}
    assert out["context"]["contextActivities"] == {"category": [{"id": "http://x/c"}]}
    assert SUB["verb"]["display"]  # the stored statement is not changed


def test_every_format_returns_context_activities_as_arrays():
    for fmt in ("exact", "ids", "canonical"):
        out = xapi.formatted(copy.deepcopy(SUB), fmt, ["en-US"])
        assert isinstance(out["context"]["contextActivities"]["category"], list)
        assert isinstance(out["object"]["context"]["contextActivities"]["parent"], list)
    exact = xapi.formatted(copy.deepcopy(SUB), "exact", ["en-GB"])
    assert exact["verb"]["display"] == {"en-US": "attempted", "en-GB": "tried"}  # exact ignores Accept-Language


@pytest.mark.parametrize(("header", "verb", "category"), [
    ("en-GB", "en-GB", "en-GB"),
    ("fr;q=0.4, en-GB;q=0.9", "en-GB", "en-GB"),  # q-values, not header order
    ("fr, en-GB;q=0.5", "en-GB", "fr"),           # each map its own best available language
    ("EN-gb", "en-GB", "en-GB"),                  # tags are case-insensitive
    ("en", "en-US", "en-US"),                     # a range matches the tags it prefixes
    ("en-GB-oxendict", "en-GB", "en-GB"),         # a tag falls back to its prefixes
    ("de, en-GB;q=0", "en-US", "en-US"),          # q=0 means "not this"; no match: the first entry
    ("", "en-US", "en-US"),
    ("*", "en-US", "en-US"),
    (";;, ,q=x;q=abc", "en-US", "en-US"),         # garbage is ignored, never an error
])
def test_canonical_picks_one_language_by_accept_language(header, verb, category):
    out = xapi.formatted(copy.deepcopy(SUB), "canonical", xapi.accept_languages(header))
    assert list(out["verb"]["display"]) == [verb]
    assert list(out["context"]["contextActivities"]["category"][0]["definition"]["name"]) == [category]
    assert list(out["object"]["object"]["definition"]["name"]) == [verb]


def test_canonical_prefers_und_when_nothing_matches():
    assert xapi.pick_language({"en-US": "a", "und": "b"}, ["th"]) == "und"
    assert xapi.accept_languages("a;q=0.1," * 100).count("a") == 32  # a header is bounded
