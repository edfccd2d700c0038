"""Issue 17 point 1 over the real broker and database: the same implausible dates are refused at the HTTP edge
(400/202 listing each refused event with its reason) and dead-lettered with the same reason when produced straight
to Kafka, while the good events of the same batch are stored."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from support import cloudevent, db_of, header, make_key, poll, produce_events, read_topic, running

from services.contracts import topics
from services.contracts.thai_calendar import bangkok_day
from services.roadmap.main import create_app as roadmap_app
from services.roadmap.settings import RoadmapSettings
from services.training.main import create_app as training_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration
BATCH = "application/cloudevents-batch+json"


def _roadmap_events(tag: str) -> tuple[list[dict], list[dict], dict[str, str]]:
    """(good, bad, expected reason by bad id): every rule of the table in docs/platform.md that roadmap data has."""
    now = datetime.now(UTC)
    today = bangkok_day(now)

    def plan(mid: str, due: str) -> dict:
        return cloudevent("roadmap.milestone.planned", {
            "milestone_id": mid, "title_en": f"Milestone {mid}", "workstream": "technology_access",
            "owner_agency": "dga", "due_date": due}, agency="dga", id=f"{tag}-plan-{mid}")

    good = [plan(f"{tag}-OK", (today + timedelta(days=90)).isoformat())]
    bad = {
        f"{tag}-plan-BE": (plan("BE", "2569-09-30"), "buddhist_era_date"),
        f"{tag}-plan-FAR": (plan("FAR", "9999-12-31"), "date_out_of_range"),
        f"{tag}-plan-2041": (plan("2041", "2041-01-01"), "date_out_of_range"),
        f"{tag}-as-of": (cloudevent("roadmap.milestone.progressed", {
            "milestone_id": f"{tag}-OK", "percent_complete": 50, "as_of": (now + timedelta(days=1)).isoformat()},
            agency="dga", id=f"{tag}-as-of"), "time_in_future"),
        f"{tag}-time": (cloudevent("roadmap.milestone.rescheduled", {
            "milestone_id": f"{tag}-OK", "new_due_date": (today + timedelta(days=120)).isoformat(), "reason": "r"},
            agency="dga", id=f"{tag}-time", time=(now + timedelta(days=365)).isoformat()), "time_in_future"),
        f"{tag}-done": (cloudevent("roadmap.milestone.completed", {
            "milestone_id": f"{tag}-OK", "completed_on": (today + timedelta(days=2)).isoformat()},
            agency="dga", id=f"{tag}-done"), "date_in_future"),
    }
    return good, [event for event, _ in bad.values()], {eid: reason for eid, (_, reason) in bad.items()}


def _statement(timestamp: str) -> dict:
    return {"id": str(uuid.uuid4()), "timestamp": timestamp,
            "actor": {"objectType": "Agent", "account": {"homePage": "https://lms.dga.or.th", "name": "emp-x"}},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/completed", "display": {"en-US": "completed"}},
            "object": {"id": "https://lms.dga.or.th/c/1", "definition": {"name": {"en-US": "Course"}}},
            "result": {"success": True, "completion": True, "duration": "PT1H"},
            "context": {"extensions": {"https://newnormal.go.th/xapi/extensions/competency": "mindset"}}}


async def _dead_letters(bootstrap: str, topic: str, ids: set[str]) -> dict[str, str]:
    async def all_there():
        found = {}
        for record in await read_topic(bootstrap, topics.dlq(topic)):
            try:
                event_id = json.loads(record.value).get("id")
            except ValueError:
                continue
            if event_id in ids:
                found[event_id] = header(record, "dlq-reason")
        return found if set(found) == ids else None

    return await poll(all_there, timeout=60, interval=0.5, what=f"dead letters of {sorted(ids)}")


async def test_roadmap_refuses_implausible_dates_at_the_edge_and_in_the_consumer(settings_for, kafka_bootstrap):
    settings = settings_for(RoadmapSettings)
    key = await make_key(settings, "dga")
    db = db_of(settings)
    app = roadmap_app(settings)
    try:
        async with running(app) as http:
            # HTTP: every bad event alone -> 400 listing it with its reason; mixed with a good one -> 202.
            good, bad, expected = _roadmap_events(f"h{uuid.uuid4().hex[:6]}")
            r = await http.post("/v1/events", content=json.dumps(bad),
                                headers={"X-API-Key": key, "Content-Type": BATCH})
            assert r.status_code == 400, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert {e["id"]: e["reason"] for e in r.json()["errors"]} == expected
            be = next(e for e in r.json()["errors"] if e["id"].endswith("plan-BE"))
            assert "2569 BE = 2026 CE" in be["detail"]
            r = await http.post("/v1/events", content=json.dumps(good + bad),
                                headers={"X-API-Key": key, "Content-Type": BATCH})
            assert r.status_code == 202, r.text
            assert [a["id"] for a in r.json()["accepted"]] == [good[0]["id"]]
            assert {e["id"]: e["reason"] for e in r.json()["rejected"]} == expected

            # Kafka: the same kind of events produced straight to the topic -> dead letters with the same reasons.
            good_k, bad_k, expected_k = _roadmap_events(f"k{uuid.uuid4().hex[:6]}")
            await produce_events(kafka_bootstrap, topics.ROADMAP_EVENTS, good_k + bad_k)
            assert await _dead_letters(kafka_bootstrap, topics.ROADMAP_EVENTS, set(expected_k)) == expected_k

            async def good_ones_readable():
                found = []
                for event in (good[0], good_k[0]):
                    mid = event["data"]["milestone_id"]
                    found.append((await http.get(f"/v1/milestones/{mid}", headers={"X-API-Key": key})).status_code)
                return found == [200, 200]

            await poll(good_ones_readable, timeout=60, interval=0.5, what="the good milestones stored")
            # Nothing refused is stored anywhere (the audit trail included).
            refused_ids = list(expected) + list(expected_k)
            assert await db.events.count_documents({"id": {"$in": refused_ids}}) == 0
    finally:
        await db.client.close()


async def test_training_completion_dates_stay_where_the_readiness_api_shows_them(settings_for, kafka_bootstrap):
    settings = settings_for(TrainingSettings)
    key = await make_key(settings, "dga")
    db = db_of(settings)
    app = training_app(settings)
    tag = uuid.uuid4().hex[:6]
    today = bangkok_day(datetime.now(UTC))

    def completion(eid: str, on: str) -> dict:
        return cloudevent("training.course.completed", {
            "agency": "dga", "learner_ref": f"emp-{eid}", "course_id": "DG-1", "competency": "digital_technology",
            "hours": 2, "completed_on": on, "passed": True}, agency="dga", id=eid)

    expected = {f"{tag}-be": "buddhist_era_date", f"{tag}-old": "date_out_of_range", f"{tag}-future": "date_in_future"}
    dates_of = {f"{tag}-be": "2569-10-01", f"{tag}-old": "2015-06-30",
                f"{tag}-future": (today + timedelta(days=1)).isoformat()}
    try:
        async with running(app) as http:
            r = await http.post("/v1/events", content=json.dumps(
                [completion(f"h-{eid}", on) for eid, on in dates_of.items()]),
                headers={"X-API-Key": key, "Content-Type": BATCH})
            assert r.status_code == 400, r.text
            assert {e["id"]: e["reason"] for e in r.json()["errors"]} == {f"h-{k}": v for k, v in expected.items()}

            # xAPI: a completion's day comes from `timestamp`; the same rule, answered 400 before anything is stored.
            tomorrow = (datetime.now(UTC) + timedelta(days=1, hours=1)).isoformat()
            for timestamp, why in ((tomorrow, "date_in_future"), ("2569-03-01T10:00:00+07:00", "buddhist_era_date")):
                r = await http.post("/xapi/statements", json=_statement(timestamp), headers={
                    "X-API-Key": key, "X-Experience-API-Version": "1.0.3"})
                assert r.status_code == 400 and r.json()["reason"] == why, r.text

            good = completion(f"{tag}-ok", date(2026, 1, 5).isoformat())
            await produce_events(kafka_bootstrap, topics.TRAINING_EVENTS,
                                 [good] + [completion(eid, on) for eid, on in dates_of.items()])
            assert await _dead_letters(kafka_bootstrap, topics.TRAINING_EVENTS, set(expected)) == expected

            async def good_stored():
                return await db.events.count_documents({"id": good["id"]}) == 1

            await poll(good_stored, timeout=60, interval=0.5, what="the good completion stored")
            assert await db.events.count_documents({"id": {"$in": list(expected)}}) == 0
    finally:
        await db.client.close()
