"""xAPI statement mapping, with statements shaped as the xAPI 1.0.3 specification's examples."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, date, datetime

import pytest

from services.training import xapi

NOW = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)

# xAPI 1.0.3, Part 2, Appendix A "Example statements": the simple-CBT-course statement, with the verb
# `completed` and our context extensions (agency, competency) added.
SPEC_CBT = {
    "id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa0",
    "timestamp": "2026-02-28T18:30:00Z",
    "actor": {"objectType": "Agent", "name": "Project Tin Can API", "mbox": "mailto:user@example.com"},
    "verb": {"id": "http://adlnet.gov/expapi/verbs/completed", "display": {"en-US": "completed"}},
    "object": {
        "id": "http://example.adlnet.gov/xapi/example/simpleCBT",
        "definition": {"name": {"en-US": "simple CBT course"}, "description": {"en-US": "A fictitious example CBT course."}},
    },
    "result": {"score": {"scaled": 0.95}, "success": True, "completion": True, "duration": "PT1234S"},
    "context": {"extensions": {xapi.EXT_AGENCY: "dga", xapi.EXT_COMPETENCY: "digital_technology"}},
}
# The spec's Agent identified by an account (the pseudonymous form), from the Actor section.
SPEC_ACCOUNT = {"objectType": "Agent", "account": {"homePage": "http://www.example.com", "name": "1625378"}}


def test_duration_to_hours():
    assert xapi.duration_hours("PT1H30M") == 1.5
    assert xapi.duration_hours("PT1234S") == pytest.approx(0.3428, abs=1e-4)
    assert xapi.duration_hours("P1DT2H") == 26
    for bad in ("P1Y", "PT", "1H", "P1M", ""):
        with pytest.raises(xapi.StatementError):
            xapi.duration_hours(bad)


def test_spec_completed_statement_maps_to_a_completion():
    st = copy.deepcopy(SPEC_CBT)
    sid = xapi.check_statement(st, 0)
    m = xapi.map_statement(st, sid, "dga", NOW)
    d = m.data
    assert (m.statement_id, m.agency) == (SPEC_CBT["id"], "dga")
    assert d.course_id == "http://example.adlnet.gov/xapi/example/simpleCBT" and d.course_title == "simple CBT course"
    assert d.competency.value == "digital_technology" and d.passed is True and d.score == 95.0
    assert d.hours == pytest.approx(1234 / 3600, abs=1e-3)
    assert d.completed_on == date(2026, 3, 1)  # 18:30 UTC is the next day in Bangkok
    # The e-mail address is reduced to the spec's mbox_sha1sum: the same person sent either way is one learner.
    assert d.learner_ref == "mbox_sha1sum:" + hashlib.sha1(b"mailto:user@example.com").hexdigest()
    by_sha = {**st, "actor": {"mbox_sha1sum": hashlib.sha1(b"mailto:user@example.com").hexdigest()}}
    assert xapi.map_statement(by_sha, sid, "dga", NOW).data.learner_ref == d.learner_ref


def test_account_actor_category_competency_and_failed_verb():
    st = copy.deepcopy(SPEC_CBT)
    st["actor"] = SPEC_ACCOUNT
    st["verb"] = {"id": xapi.VERB_FAILED, "display": {"en-US": "failed"}}
    st["context"] = {"contextActivities": {"category": [{"id": xapi.COMPETENCY_CATEGORY_PREFIX + "mindset"}]}}
    del st["result"]["duration"]
    m = xapi.map_statement(st, st["id"], "ocsc", NOW)
    assert m.agency == "ocsc" and m.data.competency.value == "mindset"
    # The account IFI is (homePage, name): the name alone no longer identifies the learner.
    assert m.data.learner_ref == "account:" + hashlib.sha256(b"http://www.example.com\x1f1625378").hexdigest()
    assert m.data.passed is False and m.data.hours == 0
    st["verb"]["id"] = xapi.VERB_COMPLETED
    st["result"]["success"] = False
    assert xapi.map_statement(st, st["id"], "ocsc", NOW).data.passed is False
    st["verb"]["id"] = xapi.VERB_PASSED
    st["result"] = {"score": {"raw": 40, "min": 0, "max": 50}}
    passed = xapi.map_statement(st, st["id"], "ocsc", NOW).data
    assert passed.passed is True and passed.score == 80


def test_refusals_have_reasons():
    national = copy.deepcopy(SPEC_CBT)
    national["actor"] = {"account": {"homePage": "http://hr.example.go.th", "name": "1101700230708"}}
    with pytest.raises(xapi.StatementError) as e:
        xapi.map_statement(national, national["id"], "dga", NOW)
    assert e.value.reason == "national_id"
    no_comp = copy.deepcopy(SPEC_CBT)
    no_comp["context"] = {}
    with pytest.raises(xapi.StatementError) as e:
        xapi.map_statement(no_comp, no_comp["id"], "dga", NOW)
    assert e.value.reason == "missing_competency"
    group = copy.deepcopy(SPEC_CBT)
    group["actor"] = {"objectType": "Group", "name": "Team PB", "member": [{"mbox": "mailto:a@example.com"}]}
    with pytest.raises(xapi.StatementError) as e:
        xapi.map_statement(group, group["id"], "dga", NOW)
    assert e.value.reason == "group_actor"
    for bad, reason in [({**SPEC_CBT, "id": "not-a-uuid"}, "invalid_statement_id"),
                        ({k: v for k, v in SPEC_CBT.items() if k != "verb"}, "malformed_statement"),
                        ({**SPEC_CBT, "actor": {"name": "nobody"}}, "malformed_statement"), ("text", "malformed_statement")]:
        with pytest.raises(xapi.StatementError) as e:
            xapi.check_statement(bad, 0)
        assert e.value.reason == reason


def test_other_verbs_are_not_completions_and_canonical_hash_ignores_lrs_fields():
    created = {"id": "12345678-1234-5678-1234-567812345678", "actor": {"mbox": "mailto:xapi@adlnet.gov"},
               "verb": {"id": "http://adlnet.gov/expapi/verbs/created", "display": {"en-US": "created"}},
               "object": {"id": "http://example.adlnet.gov/xapi/example/activity"}}
    assert xapi.check_statement(created, 0) == created["id"] and not xapi.is_completion(created)
    assert xapi.is_completion(SPEC_CBT)
    stored = {**created, "stored": "2026-01-01T00:00:00Z", "authority": {"mbox": "mailto:lrs@example.com"}, "version": "1.0.3"}
    assert xapi.canonical_hash(stored) == xapi.canonical_hash(created)
    assert xapi.canonical_hash({**created, "verb": {"id": xapi.VERB_COMPLETED}}) != xapi.canonical_hash(created)
    assert xapi.version_ok("1.0.3") and xapi.version_ok("1.0.0") and not xapi.version_ok("2.0.0") and not xapi.version_ok(None)
