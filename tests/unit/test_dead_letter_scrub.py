"""No personal data on the dead-letter topics: the feedback and training scrubs, prepare() on hostile values,
truncation after redaction, and error details that never quote what a citizen typed."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.redact import (
    SCRUB_FAILED,
    TRUNCATION_MARK,
    count_placeholders,
    placeholder,
    redact_to_limit,
    scrub_payload,
    scrub_text,
)
from services.contracts.envelope import EventError, make_event
from services.contracts.events import FEEDBACK_RESPONSE_SUBMITTED
from services.feedback.domain import FREE_TEXT_LIMITS, prepare, scrub_dead_letter
from services.feedback.handlers import FeedbackService
from services.training.privacy import scrub_dead_letter as scrub_training

NID = "1103702071927"  # valid check digit
PHONE = "081-234-5678"
EMAIL = "somchai.j@gmail.com"
PII = f"นายสมชาย ใจดี บัตร {NID} โทร {PHONE} อีเมล {EMAIL} ไลน์ somchai99"
SECRETS = ("1103702071927", "2345678", "somchai", "สมชาย", "ใจดี")


def _clean(value: bytes) -> bool:
    text = value.decode("utf-8", errors="replace").replace("-", "").replace(" ", "").lower()
    return not any(s.replace("-", "") in text for s in SECRETS)


def _form(**extra):
    form = {"agency": "dga", "service_name": "ต่อใบอนุญาต", "channel": "walk_in", "satisfaction": 4,
            "tech_difficulty": "none", "aware_of_digital_channels": True, "submitted_at": "2026-03-01T10:00:00+07:00"}
    form.update(extra)
    if "age_group" not in form and "birth_year" not in form:
        form["age_group"] = "25_34"
    return form


def _structured(data: dict) -> bytes:
    return json.dumps({"specversion": "1.0", "id": "e-1", "source": "/agencies/dga/survey", "type": FEEDBACK_RESPONSE_SUBMITTED,
                       "agency": "dga", "data": data}, ensure_ascii=False).encode()


# --- feedback scrub ------------------------------------------------------------------------------------------
def test_structured_value_keeps_its_shape_with_free_text_redacted_and_birth_year_dropped():
    raw = _structured(_form(birth_year=1800, comment=PII, service_name=f"ติดต่อ {PHONE}"))
    out = scrub_dead_letter(raw)
    doc = json.loads(out)
    assert _clean(out) and "birth_year" not in doc["data"]
    assert doc["id"] == "e-1" and doc["data"]["satisfaction"] == 4 and doc["data"]["channel"] == "walk_in"
    assert count_placeholders(doc["data"]["comment"]) == {"NATIONAL_ID": 1, "PHONE": 1, "EMAIL": 1, "LINE_ID": 1, "NAME": 1}
    assert doc["data"]["service_name"] == f"ติดต่อ {placeholder('PHONE')}"


def test_binary_mode_value_is_the_data_object():
    out = scrub_dead_letter(json.dumps(_form(birthYear=2500, comment=PII, note=PII, **{PII: 1})).encode())
    assert _clean(out)
    assert not any("birth" in key.lower() for key in json.loads(out))


@pytest.mark.parametrize("wrap", ["string", "base64"])
def test_data_carried_as_a_json_string_or_base64_is_scrubbed_inside(wrap):
    data = json.dumps(_form(birth_year=2500, comment=PII))
    if wrap == "string":
        envelope = {"specversion": "1.0", "id": "e", "data": data}
    else:
        envelope = {"specversion": "1.0", "id": "e", "data_base64": base64.b64encode(data.encode()).decode()}
    out = scrub_dead_letter(json.dumps(envelope).encode())
    doc = json.loads(out)
    inner = doc["data"] if wrap == "string" else base64.b64decode(doc["data_base64"]).decode()
    assert "birth_year" not in inner and _clean(inner.encode()) and _clean(out)


@pytest.mark.parametrize("raw", [
    b"[" * 50_000 + f'{{"birth_year": 2500, "comment": "{PII}"'.encode(),  # nested too deep for any parser
    f'{{"birth_year": 2500, "comment": "{PII}", "satisf'.encode(),  # truncated JSON
    b"\xff\xfe\x00" + PII.encode() + b' birth_year=2509 ',  # not UTF-8
    f"ปีเกิด 2509 {PII}".encode(),
    f"{PII}".encode("utf-16"),
])
def test_values_that_are_not_json_are_redacted_as_text(raw):
    out = scrub_dead_letter(raw)
    text = out.decode("utf-8", errors="replace")
    assert "2500" not in text and "2509" not in text
    if b"\x00" not in raw[3:]:  # UTF-16 hides the digits from any text reader; it must at least not raise
        assert _clean(out)


def test_empty_and_scrub_failure_never_return_the_raw_value(monkeypatch):
    assert scrub_dead_letter(b"") == b""

    def boom(*_a, **_k):
        raise RuntimeError("bug")

    monkeypatch.setattr("services.common.redact._scrub_bytes", boom)
    assert scrub_dead_letter(_structured(_form(comment=PII))) == SCRUB_FAILED


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([NID, "0812345678", EMAIL]), st.binary(max_size=50))
def test_scrub_never_raises_and_drops_injected_personal_data(prefix, secret, suffix):
    raw = prefix + b" " + secret.encode() + b" " + suffix
    out = scrub_dead_letter(raw)
    assert isinstance(out, bytes)
    assert secret.encode() not in out


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
                    max_leaves=30))
def test_any_json_value_comes_back_as_json(value):
    out = scrub_dead_letter(json.dumps({"v": value, "comment": PII, "birth_year": 1990}).encode())
    doc = json.loads(out)
    assert "birth_year" not in doc and _clean(json.dumps(doc["comment"], ensure_ascii=False).encode())


# --- training scrub ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ref", [NID, "1-1037-02071-92-7", "1 1 0 3 7 0 2 0 7 1 9 2 7", "๑๑๐๓๗๐๒๐๗๑๙๒๗"])
def test_training_learner_ref_that_is_a_national_id_is_replaced(ref):
    data = {"agency": "dga", "learner_ref": ref, "course_id": "c1", "course_title": f"อบรมโดย{PII}", "hours": 3}
    out = scrub_training(json.dumps({"specversion": "1.0", "data": data}, ensure_ascii=False).encode())
    doc = json.loads(out)["data"]
    assert doc["learner_ref"] == placeholder("NATIONAL_ID") and _clean(out)
    assert doc["course_id"] == "c1" and doc["hours"] == 3


def test_training_opaque_pseudonym_is_kept_for_replay():
    out = scrub_training(json.dumps({"learner_ref": "emp-00042", "course_id": "c1"}).encode())
    assert json.loads(out)["learner_ref"] == "emp-00042"


# --- prepare: hostile values, free text, truncation ----------------------------------------------------------
def _event(**data):
    return make_event(FEEDBACK_RESPONSE_SUBMITTED, _form(**data), agency="dga", source="/agencies/dga/survey", id="e-1",
                      time=datetime.now(UTC))


def test_prepare_turns_out_of_range_dates_into_invalid_data_without_quoting_them():
    with pytest.raises(EventError) as err:
        prepare(_event(submitted_at="9999-12-31T23:00:00-12:00", birth_year=1990, comment=PII))
    # Year 9999 is refused by the date rule's type (issue 17): its own reason, still without quoting the value.
    assert err.value.reason == "date_out_of_range" and "submitted_at" in err.value.detail and "9999" not in err.value.detail
    with pytest.raises(EventError) as err:
        prepare(_event(birth_year=1900))  # 126 years old in 2026
    assert err.value.reason == "invalid_data" and "1900" not in err.value.detail and "126" not in err.value.detail


def test_every_free_text_field_is_redacted():
    prepared = prepare(_event(comment=PII, service_name=f"ต่อใบอนุญาต ติดต่อคุณมาลี {PHONE}"))
    assert _clean(json.dumps(prepared.to_json_dict(), ensure_ascii=False).encode())
    assert prepared.data.service_name == f"ต่อใบอนุญาต ติดต่อคุณ{placeholder('NAME')} {placeholder('PHONE')}"


@pytest.mark.parametrize("name", list(FREE_TEXT_LIMITS))
def test_a_field_that_grows_past_its_limit_is_truncated_after_redaction_never_refused(name):
    limit = FREE_TEXT_LIMITS[name]
    text = ("โทร 0812345678 " * limit)[:limit].rstrip()
    prepared = prepare(_event(**{name: text}))
    value = getattr(prepared.data, name)
    assert len(value) <= limit and value.endswith(TRUNCATION_MARK)
    assert "0812345678" not in value and "[REDACTED:" not in value.split("]")[-1]  # no half placeholder
    assert prepare(prepared) == prepared  # still idempotent


def test_truncation_moves_the_cut_to_the_start_of_a_placeholder():
    text = "x" * 90 + " 0812345678"
    result = redact_to_limit(text, 100)
    assert result.text == "x" * 90 + " " + TRUNCATION_MARK[: 100] and result.counts == {}
    assert len(result.text) <= 100


def test_prepare_of_a_clean_response_changes_nothing():
    event = _event(comment="บริการดีมาก ขอบคุณค่ะ", age_group="25_34")
    assert prepare(event) is event


# --- HTTP: errors never quote what the citizen typed ---------------------------------------------------------
@pytest.mark.parametrize("field", ["service_name", "channel", "age_group", "birth_year", "satisfaction", "tech_difficulty",
                                   "aware_of_digital_channels", "province", "comment", "submitted_at", PII])
@pytest.mark.parametrize("value", [PII, PII * 200, [PII], {"k": PII}, 10**30])
def test_form_errors_do_not_echo_personal_data(field, value):
    form = _form()
    form.pop("agency")
    form[field] = value
    try:
        event = FeedbackService.survey_event(form, "dga")
        prepare(event)
    except EventError as err:
        assert _clean(err.detail.encode()), err.detail


def test_now_is_not_needed_to_scrub():
    # The scrub is pure: same input, same output, at any time.
    raw = _structured(_form(comment=PII, submitted_at=datetime.now(UTC).isoformat()))
    assert scrub_dead_letter(raw) == scrub_dead_letter(raw) == scrub_payload(raw)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("unit", ["birth", "dob_", "x", "1 ", "@a", "นาย", "คุณ", "+66", "a@", "line id ", "ปีเกิด"])
def test_hostile_runs_scrub_in_linear_time(unit):
    # 640 KiB of one repeated unit: linear patterns take well under a second; a quadratic one (as the
    # birth-field pattern once was: 37 s at 70 KiB) would need hours and trip the timeout.
    text = unit * (640 * 1024 // len(unit.encode()))
    assert isinstance(scrub_text(text), str)
    assert isinstance(scrub_payload(text.encode()), bytes)
