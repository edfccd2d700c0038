"""No personal data on the dead-letter topics, over the real broker and database.

Records that fail at every stage (after parsing in prepare(), in validation, before JSON, in binary mode) carry
national IDs, phones, e-mails, LINE ids, names and birth years; what reaches `<topic>.dlq` is redacted, without
birth years, and the valid neighbours are stored redacted too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import cloudevent, db_of, header, poll, produce, read_topic, running

from services.contracts import topics
from services.contracts.thai_calendar import thai_digits_to_ascii
from services.feedback.main import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.training.main import create_app as create_training
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration

STRUCTURED = [("content-type", b"application/cloudevents+json")]
NID = "1103702071927"
PII = f"นายสมชาย ใจดี บัตร {NID} โทร ๐๘๑-๒๓๔-๕๖๗๘ อีเมล somchai.j@gmail.com ไลน์ somchai99"
SECRETS = (NID, "0812345678", "somchai", "สมชาย", "ใจดี")


def _leaks(raw: bytes | str | None) -> list[str]:
    if raw is None:
        return []
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    flat = thai_digits_to_ascii(text).replace("-", "").replace(" ", "").lower()
    return [s for s in SECRETS if s in flat]


def _response(i: int, **extra: Any) -> dict[str, Any]:
    body = {"agency": "dga", "service_name": "ต่ออายุใบอนุญาต", "channel": "walk_in", "age_group": "45_59",
            "satisfaction": 1 + i % 5, "tech_difficulty": "some", "aware_of_digital_channels": True,
            "submitted_at": "2026-03-10T10:00:00+07:00"}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def _structured(event: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (b"dga", json.dumps(event, ensure_ascii=False).encode(), STRUCTURED)


def _binary(data: dict[str, Any], eid: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (b"dga", json.dumps(data, ensure_ascii=False).encode(),
            [("ce_specversion", b"1.0"), ("ce_id", eid.encode()), ("ce_source", b"/agencies/dga/direct"),
             ("ce_type", b"feedback.response.submitted"), ("ce_agency", b"dga"), ("content-type", b"application/json")])


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def _dead_letters(settings, topic: str, n: int) -> list[Any]:
    async def enough():
        records = await read_topic(settings.kafka_bootstrap_servers, topics.dlq(topic))
        return records if len(records) >= n else None

    return await poll(enough, timeout=40, what=f"{n} dead letters on {topics.dlq(topic)}")


async def _count(db, query, n) -> bool:
    return await db.events.count_documents(query) == n


async def test_feedback_dead_letters_are_redacted_and_without_birth_year(settings_for):
    settings = settings_for(FeedbackSettings)
    app = create_feedback(settings)
    fb = "feedback.response.submitted"
    valid = [cloudevent(fb, _response(i, comment=PII if i % 2 else None), agency="dga") for i in range(6)]
    hostile = [
        # parses, then prepare() refuses it: 126 years old; a phone in service_name
        _structured(cloudevent(fb, _response(1, age_group=None, birth_year=1900, comment=PII,
                                              service_name="ติดต่อ 0812345678"), agency="dga")),
        # parses, then the Bangkok day overflows
        _structured(cloudevent(fb, _response(2, age_group=None, birth_year=2509, comment=PII,
                                              submitted_at="9999-12-31T23:00:00-12:00"), agency="dga")),
        # fails validation: birth year 1800 (outside the contract), and an invented field holding personal data
        _structured(cloudevent(fb, _response(3, age_group=None, birth_year=1800, comment=PII, note=PII), agency="dga")),
        # binary mode, invalid satisfaction
        _binary(_response(4, satisfaction=9, birth_year=2509, comment=PII), "bin-1"),
        # not JSON at all
        (b"dga", f'{{"birth_year": 2509, "comment": "{PII}", '.encode(), STRUCTURED),
    ]
    records = [_structured(e) for e in valid[:3]] + hostile + [_structured(e) for e in valid[3:]]
    db = db_of(settings)
    async with running(app):
        await produce(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, records)
        ids = [e["id"] for e in valid]
        await poll(lambda: _count(db, {"id": {"$in": ids}}, len(valid)), timeout=60, what="valid responses stored")
        dead = await _dead_letters(settings, topics.FEEDBACK_EVENTS, len(hostile))
    assert len(dead) == len(hostile)
    for record in dead:
        assert _leaks(record.value) == [], record.value[:300]
        assert b"birth" not in record.value.lower() and b"2509" not in record.value and b"1800" not in record.value
        for name, value in record.headers or ():
            assert _leaks(value) == [], (name, value[:200])
    assert all(header(r, "dlq-reason") for r in dead)
    # A dead letter that was JSON stays JSON, so it can be inspected and replayed after a fix.
    structured_dead = [_json(r.value) for r in dead if header(r, "ce_id") is None]
    assert any(d.get("data", {}).get("comment", "").count("[REDACTED:") >= 4 for d in structured_dead)
    # The valid neighbours are stored redacted.
    async for doc in db.events.find({"id": {"$in": ids}}):
        assert _leaks(json.dumps(doc, default=str, ensure_ascii=False)) == []


async def test_training_dead_letters_never_carry_a_national_id_as_learner(settings_for):
    settings = settings_for(TrainingSettings, learner_hmac_secret="integration-secret-0123456789")
    app = create_training(settings)
    done = "training.course.completed"

    def completion(i: int, **extra: Any) -> dict[str, Any]:
        body = {"agency": "dga", "learner_ref": f"emp-{i:04d}", "course_id": "DG-101", "competency": "digital_technology",
                "hours": 6, "completed_on": "2026-02-10", "passed": True}
        body.update(extra)
        return body

    valid = [cloudevent(done, completion(i), agency="dga") for i in range(4)]
    hostile = [
        _structured(cloudevent(done, completion(90, learner_ref="1 1 0 3 7 0 2 0 7 1 9 2 7"), agency="dga")),
        _structured(cloudevent(done, completion(91, learner_ref=NID, course_title=PII), agency="dga")),
        _structured(cloudevent(done, completion(92, hours="six", course_title=PII), agency="dga")),
    ]
    db = db_of(settings)
    async with running(app):
        await produce(settings.kafka_bootstrap_servers, topics.TRAINING_EVENTS, [_structured(e) for e in valid] + hostile)
        ids = [e["id"] for e in valid]
        await poll(lambda: _count(db, {"id": {"$in": ids}}, len(valid)), timeout=60, what="valid completions stored")
        dead = await _dead_letters(settings, topics.TRAINING_EVENTS, len(hostile))
    assert len(dead) == len(hostile)
    for record in dead:
        assert _leaks(record.value) == [] and _leaks(header(record, "dlq-detail")) == []
    learners = {json.loads(r.value)["data"]["learner_ref"] for r in dead}
    assert learners == {"[REDACTED:NATIONAL_ID]", "emp-0092"}
