"""`services.roadmap.privacy.prepare`: personal data in what agencies write freely is redacted before a milestone is
stored or published (its title and reasons reach the public overview, the report to Cabinet and e-mail subjects)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts.envelope import make_event
from services.roadmap.privacy import FREE_TEXT, prepare

NOW = datetime(2026, 3, 1, tzinfo=UTC)
PII = "โทร 081-234-5678 บัตร 1-1037-02071-92-7 somchai.probe@example.co.th"
SECRETS = ("081-234-5678", "1-1037-02071-92-7", "somchai.probe@example.co.th")


def event(type_: str, **data):
    return make_event(f"roadmap.milestone.{type_}", {"milestone_id": "M1", **data}, agency="dga",
                      source="/agencies/dga/pm", id=f"{type_}-1", time=NOW)


CASES = [
    ("planned", {"title_th": PII, "title_en": PII, "description": PII, "workstream": "technology_access",
                 "owner_agency": "dga", "due_date": "2026-06-30"}),
    ("progressed", {"percent_complete": 40, "as_of": NOW.isoformat(), "note": PII}),
    ("completed", {"completed_on": "2026-02-01", "evidence": PII}),
    ("rescheduled", {"new_due_date": "2026-08-31", "reason": PII}),
    ("cancelled", {"reason": PII}),
]


@pytest.mark.parametrize(("type_", "data"), CASES, ids=[c[0] for c in CASES])
def test_free_text_of_every_report_is_redacted_and_nothing_else_changes(type_, data):
    original = event(type_, **data)
    prepared = prepare(original)
    text = str(prepared.data.model_dump())
    assert not any(s in text for s in SECRETS) and "[REDACTED:PHONE]" in text
    assert prepared.id == original.id and prepared.data.milestone_id == "M1"
    assert prepare(prepared) is prepared  # idempotent: a redelivery is the same event
    untouched = {k: v for k, v in original.data.model_dump().items() if k not in FREE_TEXT[type(original.data)]}
    assert {k: v for k, v in prepared.data.model_dump().items() if k in untouched} == untouched


def test_a_report_without_personal_data_is_the_same_event():
    original = event("rescheduled", new_due_date="2026-08-31", reason="งบประมาณล่าช้า รอ ครม. 12/2569")
    assert prepare(original) is original


def test_a_text_that_grows_by_redaction_is_cut_to_its_limit():
    long_reason = ("x" * 1990) + " a@b.co"
    prepared = prepare(event("cancelled", reason=long_reason))
    assert len(prepared.data.reason) <= 2000 and "a@b.co" not in prepared.data.reason


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300))
def test_any_title_stays_a_valid_title(title):
    data = {"title_th": title or "ก", "workstream": "technology_access", "owner_agency": "dga", "due_date": "2026-06-30"}
    try:
        original = event("planned", **data)
    except Exception:  # not a valid event to begin with
        return
    assert len(prepare(original).data.title_th) <= 300
