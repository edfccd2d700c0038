"""Same (source, id), different content, over the real broker and database, for each consuming service: a
re-send with the same content is stored once without a dead letter; with other content the first one stands, the
second is dead-lettered `id_conflict` and counted; a kiosk retry with its Idempotency-Key is counted once."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from support import cloudevent, db_of, header, make_key, poll, produce_events, read_topic, running

from services.contracts import topics
from services.feedback.main import create_app as feedback_app
from services.feedback.settings import FeedbackSettings
from services.roadmap.main import create_app as roadmap_app
from services.roadmap.settings import RoadmapSettings
from services.training.main import create_app as training_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def conflicts_dead_lettered(settings, topic: str) -> list:
    """This test's dead letters of `topic` (the topic is shared by the module's tests: filtered by our groups)."""
    records = await read_topic(settings.kafka_bootstrap_servers, topics.dlq(topic))
    prefix = settings.kafka_consumer_group_prefix + "."
    return [r for r in records if (header(r, "dlq-consumer-group") or "").startswith(prefix)
            and header(r, "dlq-reason") == "id_conflict"]


async def settle(client, topic: str, expected: float) -> str:
    """/metrics once the service counted `expected` id conflicts on `topic` (they are dead-lettered first)."""
    async def counted():
        text = (await client.get("/metrics")).text
        return text if metric(text, "newnormal_events_id_conflicts_total", topic=topic) >= expected else None
    return await poll(counted, 60, what="id conflicts counted")


async def test_training_target_resent_with_another_headcount_does_not_move_the_target(settings_for):
    settings = settings_for(TrainingSettings, learner_hmac_secret="integration-secret")
    app = training_app(settings)
    db = db_of(settings)
    time = datetime.now(UTC).isoformat()
    data = {"agency": "dga", "competency": "mindset", "fiscal_year": 2569, "headcount": 40}
    first = cloudevent("training.target.set", data, agency="dga", time=time)
    # The same event re-sent in another form (time in Bangkok's offset), then the same id with another headcount.
    same = dict(first, time=datetime.fromisoformat(time).astimezone(timezone(timedelta(hours=7))).isoformat())
    other = dict(first, data=dict(data, headcount=400))
    marker = cloudevent("training.target.set", dict(data, competency="digital_technology"), agency="dga")
    async with running(app) as client:
        # One agency, one partition key: the marker is handled after the three before it.
        await produce_events(settings.kafka_bootstrap_servers, topics.TRAINING_EVENTS, [first, same, other, marker])
        await poll(lambda: db.events.find_one({"id": marker["id"]}), 60, what="marker stored")
        text = await settle(client, topics.TRAINING_EVENTS, 1)
        assert metric(text, "newnormal_events_id_conflicts_total", topic=topics.TRAINING_EVENTS) == 1
        row = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
        assert row["target"] == 40 and [h["headcount"] for h in row["target_history"]] == [40]
        assert await db.events.count_documents({"id": first["id"]}) == 1
        stored = await db.events.find_one({"id": first["id"]})
        assert stored["data"]["headcount"] == 40  # the audit trail and the target agree
        dead = await poll(lambda: _at_least(conflicts_dead_lettered(settings, topics.TRAINING_EVENTS), 1), 30,
                          what="dead letter")
        assert len(dead) == 1 and header(dead[0], "dlq-original-offset") is not None

        # One HTTP batch holding an id three times: published once, the repeats listed, not accepted.
        key = await make_key(settings, "dga")
        again = cloudevent("training.target.set", dict(data, fiscal_year=2570), agency="dga")
        resp = await client.post("/v1/events", json=[again, dict(again), dict(again, data=dict(data, headcount=1))],
                                 headers={"x-api-key": key, "content-type": "application/cloudevents-batch+json"})
        body = resp.json()
        assert resp.status_code == 202 and [a["index"] for a in body["accepted"]] == [0]
        assert [(d["index"], d["duplicate_of"]) for d in body["duplicates"]] == [(1, 0)]
        assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(2, "id_conflict")]
        row = await poll(lambda: db.training_readiness.find_one({"_id": "2570:dga:mindset", "target": 40}), 60,
                         what="the batch's target applied")
        assert [h["headcount"] for h in row["target_history"]] == [40]
    await db.client.close()


async def test_training_completion_resent_with_other_content_is_refused_and_counted_once(settings_for):
    """A completion's audit record is written by training's own write path (`handler_audits`); the consumer
    still refuses a re-send with other content after the handler, and only the first is counted."""
    settings = settings_for(TrainingSettings, learner_hmac_secret="integration-secret")
    app = training_app(settings)
    db = db_of(settings)
    data = {"agency": "dga", "learner_ref": "emp-c1", "course_id": "DG-1", "competency": "mindset", "hours": 6,
            "completed_on": "2026-02-10", "passed": True}
    first = cloudevent("training.course.completed", data, agency="dga")
    other = dict(first, data=dict(data, passed=False, hours=1))
    marker = cloudevent("training.course.completed", dict(data, course_id="DG-2"), agency="dga")
    async with running(app) as client:
        await produce_events(settings.kafka_bootstrap_servers, topics.TRAINING_EVENTS, [first, dict(first), other, marker])
        await poll(lambda: db.events.find_one({"id": marker["id"]}), 60, what="marker stored")
        text = await settle(client, topics.TRAINING_EVENTS, 1)
        assert metric(text, "newnormal_training_events_applied_total", type="training.course.completed") == 2
        assert await db.events.count_documents({"id": first["id"]}) == 1
        stored = await db.events.find_one({"id": first["id"]})
        assert stored["data"]["passed"] is True and stored["data"]["hours"] == 6

        async def ours() -> list | None:  # the topic holds the other tests' dead letters too
            return [r for r in await conflicts_dead_lettered(settings, topics.TRAINING_EVENTS)
                    if json.loads(r.value)["id"] == first["id"]] or None
        dead = await poll(ours, 30, what="dead letter")
        assert [json.loads(r.value)["data"]["passed"] for r in dead] == [False]
    await db.client.close()


async def test_roadmap_event_id_reused_for_another_milestone_is_refused(settings_for):
    settings = settings_for(RoadmapSettings)
    app = roadmap_app(settings)
    db = db_of(settings)
    due = (datetime.now(UTC) + timedelta(days=200)).date().isoformat()
    m1, m2, m3 = (f"M-{uuid.uuid4().hex[:8]}" for _ in range(3))

    def plan(mid: str) -> dict:
        return {"milestone_id": mid, "title_th": "ระบบงานดิจิทัล", "workstream": "roadmap_governance",
                "owner_agency": "dga", "due_date": due, "weight": 1, "depends_on": []}

    first = cloudevent("roadmap.milestone.planned", plan(m1), agency="dga")
    reused = dict(first, data=plan(m2))  # the same source and id, another milestone
    marker = cloudevent("roadmap.milestone.planned", plan(m3), agency="dga")
    async with running(app) as client:
        await produce_events(settings.kafka_bootstrap_servers, topics.ROADMAP_EVENTS, [first, dict(first), reused, marker])
        await poll(lambda: db.milestones.find_one({"_id": m3}), 60, what="marker milestone planned")
        text = await settle(client, topics.ROADMAP_EVENTS, 1)
        assert metric(text, "newnormal_events_id_conflicts_total", topic=topics.ROADMAP_EVENTS) == 1
        assert await db.milestones.find_one({"_id": m1}) is not None
        assert await db.milestones.find_one({"_id": m2}) is None  # the reused id planned nothing
        assert (await db.events.find_one({"id": first["id"]}))["data"]["milestone_id"] == m1
        dead = await poll(lambda: _at_least(conflicts_dead_lettered(settings, topics.ROADMAP_EVENTS), 1), 30,
                          what="dead letter")
        assert len(dead) == 1
    await db.client.close()


async def test_feedback_conflicts_and_kiosk_retries_are_counted_once(settings_for):
    settings = settings_for(FeedbackSettings)
    app = feedback_app(settings)
    db = db_of(settings)
    kiosk = await make_key(settings, "dga", "survey")
    office = await make_key(settings, "opdc", "programme_office")
    day = "2026-02-11"  # this test's own day: other tests of the module use other days
    answers = {"agency": "dga", "service_name": "ขอใบอนุญาต", "channel": "walk_in", "age_group": "60_plus",
               "satisfaction": 5, "tech_difficulty": "none", "aware_of_digital_channels": True,
               "submitted_at": f"{day}T10:00:00+07:00"}
    first = cloudevent("feedback.response.submitted", answers, agency="dga")
    other = dict(first, data=dict(answers, satisfaction=1))
    async with running(app) as client:
        await produce_events(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, [first, dict(first), other])
        # A kiosk whose first POST timed out (the answer was lost) retries with the same key and body.
        key = uuid.uuid4().hex
        form = dict(answers, satisfaction=3)
        sent = [await client.post("/v1/responses", json=form, headers={"x-api-key": kiosk, "Idempotency-Key": key})
                for _ in range(2)]
        assert [r.status_code for r in sent] == [202, 202] and sent[0].json() == sent[1].json()
        reused = await client.post("/v1/responses", json=dict(form, satisfaction=4),
                                   headers={"x-api-key": kiosk, "Idempotency-Key": key})
        assert reused.status_code == 409 and reused.json()["reason"] == "idempotency_key_reused"

        async def counted():
            got = await client.get("/v1/experience", params={"from": day, "to": day, "agency": "dga"},
                                   headers={"x-api-key": office})
            return got.json()["overall"] if got.json()["overall"].get("responses") == 2 else None

        overall = await poll(counted, 60, what="two responses in the rollups")
        await settle(client, topics.FEEDBACK_EVENTS, 1)
        # The first Kafka response (5) and the kiosk's (3): neither the conflict (1) nor the retry counted.
        assert overall["responses"] == 2 and overall["mean_satisfaction"] == 4.0
        assert await db.events.count_documents({"id": first["id"]}) == 1
        assert await db.events.count_documents({"id": sent[0].json()["id"]}) == 1
        dead = await poll(lambda: _at_least(conflicts_dead_lettered(settings, topics.FEEDBACK_EVENTS), 1), 30,
                          what="dead letter")
        assert len(dead) == 1
    await db.client.close()


async def _at_least(awaitable, n: int):
    got = await awaitable
    return got if len(got) >= n else None
