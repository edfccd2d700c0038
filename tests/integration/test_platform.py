"""Platform behaviour over the real broker and database: intake, consumer pattern, DLQ, idempotency."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from support import cloudevent, db_of, header, make_key, poll, produce, produce_events, read_topic, running

from services.common.app import Runtime, create_service_app, mount_event_intake
from services.common.consumer import Batch
from services.common.settings import ServiceSettings
from services.contracts import topics
from services.contracts.events import EVENT_TYPES

pytestmark = pytest.mark.integration

AGENCY_TYPES = sorted(name for name, t in EVENT_TYPES.items() if not t.derived)

SAMPLES = {
    "roadmap.milestone.planned": {"milestone_id": "M-1", "title_th": "ระบบงานดิจิทัล", "workstream": "roadmap_governance",
                                  "owner_agency": "dga", "due_date": "2026-09-30", "weight": 2, "depends_on": []},
    "roadmap.milestone.progressed": {"milestone_id": "M-1", "percent_complete": 40, "as_of": "2026-03-01T10:00:00+07:00"},
    "roadmap.milestone.completed": {"milestone_id": "M-1", "completed_on": "2026-09-01", "evidence": "รายงานผล"},
    "roadmap.milestone.rescheduled": {"milestone_id": "M-1", "new_due_date": "2026-12-31", "reason": "งบประมาณล่าช้า"},
    "roadmap.milestone.cancelled": {"milestone_id": "M-1", "reason": "ยกเลิกตามมติ"},
    "roadmap.fact.retracted": {"milestone_id": "M-1", "retracted_source": "/agencies/dga/test", "retracted_id": "e-1"},
    "training.target.set": {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569, "headcount": 120},
    "training.course.completion_voided": {"agency": "dga", "voided_source": "/agencies/dga/test", "voided_id": "e-1"},
    "training.course.completed": {"agency": "dga", "learner_ref": "emp-0001", "course_id": "DG-101",
                                  "competency": "digital_technology", "hours": 6, "completed_on": "2026-02-10",
                                  "passed": True},
    "feedback.response.submitted": {"agency": "dga", "service_name": "ขอใบอนุญาต", "channel": "online_web",
                                    "age_group": "25_34", "satisfaction": 4, "tech_difficulty": "none",
                                    "aware_of_digital_channels": True, "submitted_at": "2026-03-01T10:00:00+07:00"},
}


def build_app(settings: ServiceSettings, handled: list[Batch] | None = None, after_write=None):
    """A generic service on the shared runtime: every agency event type, audit trail only. `after_write`: awaited
    after a batch was handled, before the consumer may commit it (a test wraps the write path, no hook in it)."""
    runtime = Runtime(settings)

    async def handle(batch: Batch) -> None:
        if handled is not None:
            handled.append(batch)
        if after_write is not None:
            await after_write(batch)

    for topic in (topics.ROADMAP_EVENTS, topics.TRAINING_EVENTS, topics.FEEDBACK_EVENTS):
        runtime.add_consumer(topic=topic, group=f"platform-test-{topic}", handler=handle,
                             allowed_types=[t for t in AGENCY_TYPES if EVENT_TYPES[t].topic == topic])
    app = create_service_app(runtime, title="test", description="test")
    mount_event_intake(app, runtime, AGENCY_TYPES)
    return app, runtime


async def count(db, **query) -> int:
    return await db.events.count_documents(query)


async def test_every_event_type_goes_http_to_kafka_to_audit_log(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    app, _ = build_app(settings)
    key = await make_key(settings, "dga")
    db = db_of(settings)
    async with running(app) as client:
        events = [cloudevent(t, SAMPLES[t], agency="dga") for t in AGENCY_TYPES]
        resp = await client.post("/v1/events", content=json.dumps(events),
                                 headers={"content-type": "application/cloudevents-batch+json", "x-api-key": key})
        assert resp.status_code == 202, resp.text
        assert {a["id"] for a in resp.json()["accepted"]} == {e["id"] for e in events}
        await poll(lambda: count(db, agency="dga"), what="audit rows", timeout=30)
        await poll(lambda: _eq(count(db, id={"$in": [e["id"] for e in events]}), len(events)), what="all stored", timeout=30)
        stored = await db.events.find_one({"id": events[0]["id"]})
        assert stored["source"] == "/agencies/dga/test" and stored["type"] == events[0]["type"] and "data" in stored
        # Structured mode on Kafka, keyed by agency.
        records = await read_topic(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS)
        assert any(header(r, "content-type") == "application/cloudevents+json" and r.key == b"dga" for r in records)
    await db.client.close()


async def _eq(awaitable, expected):
    return (await awaitable) == expected


async def test_binary_and_structured_single_modes(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    app, _ = build_app(settings)
    key = await make_key(settings, "rd")
    async with running(app) as client:
        data = dict(SAMPLES["training.target.set"], agency="rd")
        eid = uuid.uuid4().hex
        resp = await client.post("/v1/events", content=json.dumps(data), headers={
            "ce-specversion": "1.0", "ce-id": eid, "ce-source": "/agencies/rd/hr", "ce-type": "training.target.set",
            "ce-agency": "rd", "content-type": "application/json", "x-api-key": key})
        assert resp.status_code == 202, resp.text
        one = cloudevent("training.target.set", data, agency="rd")
        resp = await client.post("/v1/events", content=json.dumps(one),
                                 headers={"content-type": "application/cloudevents+json", "authorization": f"Bearer {key}"})
        assert resp.status_code == 202, resp.text
        db = db_of(settings)
        await poll(lambda: _eq(count(db, agency="rd"), 2), what="both stored", timeout=30)
        await db.client.close()


async def test_mixed_batch_gets_per_event_answers(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    app, _ = build_app(settings)
    key = await make_key(settings, "dga")
    async with running(app) as client:
        good = cloudevent("training.target.set", SAMPLES["training.target.set"], agency="dga")
        bad_data = cloudevent("training.target.set", dict(SAMPLES["training.target.set"], headcount=-1), agency="dga")
        no_id = {k: v for k, v in good.items() if k != "id"}
        other = cloudevent("training.target.set", dict(SAMPLES["training.target.set"], agency="rd"), agency="rd")
        wrong_ns = cloudevent("training.target.set", SAMPLES["training.target.set"], agency="dga", source="/agencies/rd/x")
        unknown = cloudevent("training.target.set", SAMPLES["training.target.set"], agency="nope")
        derived = cloudevent("roadmap.milestone.missed", {}, agency="dga")
        # Another agency's event is refused as such whatever its content: its data, its time.
        other_bad = cloudevent("training.target.set", dict(SAMPLES["training.target.set"], agency="rd", headcount=-1),
                               agency="rd")
        other_late = cloudevent("training.target.set", dict(SAMPLES["training.target.set"], agency="rd"), agency="rd",
                                time="9999-12-31T23:00:00-12:00")
        batch = [good, bad_data, no_id, other, wrong_ns, unknown, derived, other_bad, other_late]
        resp = await client.post("/v1/events", content=json.dumps(batch),
                                 headers={"content-type": "application/cloudevents-batch+json", "x-api-key": key})
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert [a["id"] for a in body["accepted"]] == [good["id"]]
        reasons = {r["index"]: r["reason"] for r in body["rejected"]}
        assert reasons == {1: "invalid_data", 2: "missing_attribute", 3: "agency_not_allowed",
                           4: "source_outside_namespace", 5: "unknown_agency", 6: "source_not_allowed",
                           7: "agency_not_allowed", 8: "agency_not_allowed"}
        assert "headcount" in next(r["detail"] for r in body["rejected"] if r["index"] == 1)


async def test_keys_and_request_errors(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform", ingest_max_body_bytes=10_000)
    app, _ = build_app(settings)
    key = await make_key(settings, "dga")
    headers = {"content-type": "application/cloudevents+json"}
    other = cloudevent("training.target.set", dict(SAMPLES["training.target.set"], agency="rd"), agency="rd")
    async with running(app) as client:
        assert (await client.post("/v1/events", content=json.dumps(other), headers=headers)).status_code == 401
        resp = await client.post("/v1/events", content=json.dumps(other), headers={**headers, "x-api-key": "nnk_dga_wrong"})
        assert resp.status_code == 401 and resp.json()["reason"] == "invalid_api_key"
        resp = await client.post("/v1/events", content=json.dumps(other), headers={**headers, "x-api-key": key})
        assert resp.status_code == 403 and resp.headers["content-type"].startswith("application/problem+json")
        other_bad = cloudevent("training.target.set", dict(SAMPLES["training.target.set"], agency="rd", headcount=-1),
                               agency="rd")
        resp = await client.post("/v1/events", content=json.dumps(other_bad), headers={**headers, "x-api-key": key})
        assert resp.status_code == 403 and resp.json()["reason"] == "agency_not_allowed", resp.text
        resp = await client.post("/v1/events", content=b"x" * 20_000, headers={**headers, "x-api-key": key})
        assert resp.status_code == 413
        resp = await client.post("/v1/events", content=b"{}", headers={"content-type": "text/plain", "x-api-key": key})
        assert resp.status_code == 415
        resp = await client.post("/v1/events", content=b"{nope", headers={**headers, "x-api-key": key})
        assert resp.status_code == 400 and resp.json()["reason"] == "invalid_json"


async def test_programme_office_key_plans_for_any_agency_in_its_namespace(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    app, _ = build_app(settings)
    key = await make_key(settings, "opdc", "programme_office")
    async with running(app) as client:
        plan = cloudevent("roadmap.milestone.planned", SAMPLES["roadmap.milestone.planned"], agency="dga")
        target = cloudevent("training.target.set", SAMPLES["training.target.set"], agency="dga")
        resp = await client.post("/v1/events", content=json.dumps([plan, target]),
                                 headers={"content-type": "application/cloudevents-batch+json", "x-api-key": key})
        assert resp.status_code == 202
        assert [a["id"] for a in resp.json()["accepted"]] == [plan["id"]]
        assert resp.json()["rejected"][0]["reason"] == "agency_not_allowed"


async def test_malformed_kafka_record_goes_to_dlq_and_next_good_record_is_processed(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    app, _ = build_app(settings)
    good = cloudevent("training.target.set", SAMPLES["training.target.set"], agency="dga")
    bad = cloudevent("training.target.set", dict(SAMPLES["training.target.set"], competency="juggling"), agency="dga")
    binary_good_id = uuid.uuid4().hex
    async with running(app):
        await produce(settings.kafka_bootstrap_servers, topics.TRAINING_EVENTS, [
            (b"dga", b"not json at all", []),
            (b"dga", json.dumps(bad).encode(), [("content-type", b"application/cloudevents+json")]),
            (b"dga", json.dumps(good).encode(), [("content-type", b"application/cloudevents+json")]),
            (b"dga", json.dumps(SAMPLES["training.target.set"]).encode(), [
                ("ce_specversion", b"1.0"), ("ce_id", binary_good_id.encode()), ("ce_source", b"/agencies/dga/hr"),
                ("ce_type", b"training.target.set"), ("ce_agency", b"dga"), ("content-type", b"application/json")]),
        ])
        db = db_of(settings)
        ids = [good["id"], binary_good_id]
        await poll(lambda: _eq(count(db, id={"$in": ids}), 2), what="good records stored", timeout=30)
        dead = await poll(lambda: _dlq(settings, 2), what="dead letters", timeout=20)
        dead = [r for r in dead if r.value == b"not json at all" or bad["id"].encode() in (r.value or b"")]
        reasons = sorted(header(r, "dlq-reason") for r in dead)
        assert reasons == ["invalid_data", "invalid_json"]
        assert all(header(r, "dlq-original-topic") == topics.TRAINING_EVENTS for r in dead)
        assert b"not json at all" in [r.value for r in dead]
        await db.client.close()


async def _dlq(settings, n):
    records = await read_topic(settings.kafka_bootstrap_servers, topics.dlq(topics.TRAINING_EVENTS))
    return records if len(records) >= n else None


async def test_same_event_twice_is_stored_once(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    app, _ = build_app(settings)
    key = await make_key(settings, "dga")
    event = cloudevent("feedback.response.submitted", SAMPLES["feedback.response.submitted"], agency="dga")
    marker = cloudevent("feedback.response.submitted", SAMPLES["feedback.response.submitted"], agency="dga")
    async with running(app) as client:
        for _ in range(2):
            resp = await client.post("/v1/events", content=json.dumps(event),
                                     headers={"content-type": "application/cloudevents+json", "x-api-key": key})
            assert resp.status_code == 202
        await produce_events(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, [event, marker])
        db = db_of(settings)
        # The marker is behind the duplicates on the same partition: once it is stored, they were handled.
        await poll(lambda: count(db, id=marker["id"]), what="marker stored", timeout=30)
        assert await count(db, id=event["id"]) == 1
        await db.client.close()


async def test_consumer_killed_before_commit_redelivers_and_stores_once(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    crashed = asyncio.Event()
    events = [cloudevent("training.target.set", SAMPLES["training.target.set"], agency="dga") for _ in range(5)]
    ids = [e["id"] for e in events]
    db = db_of(settings)

    async def crash_before_commit(batch: Batch) -> None:
        # Earlier batches (other tests' records) commit normally; ours is written and never committed.
        if await count(db, id={"$in": ids}) == 5:
            crashed.set()
            await asyncio.Event().wait()

    handled_first: list[Batch] = []
    app, _ = build_app(settings, handled_first, after_write=crash_before_commit)
    async with running(app):
        await produce_events(settings.kafka_bootstrap_servers, topics.TRAINING_EVENTS, events)
        await asyncio.wait_for(crashed.wait(), 30)
    handled_again: list[Batch] = []
    app2, _ = build_app(settings, handled_again)
    async with running(app2):
        await poll(lambda: _seen(handled_again, {e["id"] for e in events}), what="redelivery", timeout=30)
    assert await count(db, id={"$in": [e["id"] for e in events]}) == 5
    # Redelivered events were already in the audit trail: handlers are told they are not new.
    mine = {(e["source"], e["id"]) for e in events}
    assert all(not (b.new_keys & mine) for b in handled_again if b.events)
    await db.client.close()


async def _seen(batches, ids):
    return ids <= {e.id for b in batches for e in b.events}


async def test_platform_endpoints(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    app, _ = build_app(settings)
    async with running(app) as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"started": True, "mongodb": True, "kafka": True}
        metrics = (await client.get("/metrics")).text
        assert "newnormal_consumer_records_total" in metrics or "newnormal_service_info" in metrics
        asyncapi = (await client.get("/asyncapi.json")).json()
        assert any(topics.TRAINING_EVENTS in json.dumps(ch) for ch in asyncapi.get("channels", {}).values()) or \
            topics.TRAINING_EVENTS in json.dumps(asyncapi)
        assert (await client.get("/docs")).status_code == 200
        assert any(a["code"] == "dga" for a in (await client.get("/v1/agencies")).json())
