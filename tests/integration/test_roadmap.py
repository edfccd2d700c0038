"""Roadmap over the real broker and database: two replicas, a deadline that passes during the test,
exactly-once alerts, recovery, reschedule, and the summary / metrics against MongoDB."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from support import MovableClock, cloudevent, db_of, make_key, poll, read_topic, running

from services.contracts import topics
from services.contracts.thai_calendar import bangkok_day, end_of_bangkok_day
from services.roadmap.main import create_app
from services.roadmap.settings import RoadmapSettings

pytestmark = pytest.mark.integration
BATCH = "application/cloudevents-batch+json"


def plan(mid: str, due, *, agency: str = "dga", ws: str = "technology_access", weight: float = 1, deps=()) -> dict:
    return cloudevent("roadmap.milestone.planned", {
        "milestone_id": mid, "title_th": f"หมุดหมาย {mid}", "title_en": f"Milestone {mid}", "workstream": ws,
        "owner_agency": agency, "due_date": due.isoformat(), "weight": weight, "depends_on": list(deps)},
        agency=agency, id=f"plan-{mid}")


async def alerts_on_topic(bootstrap: str) -> list[dict]:
    return [json.loads(r.value) for r in await read_topic(bootstrap, topics.ROADMAP_ALERTS)]


async def test_deadline_alerts_with_two_replicas_summary_and_metrics(settings_for, kafka_bootstrap):
    # Alerts wait 1 s for a milestone's facts to settle (default 5 s): the polls below allow 10 s each.
    # The clock is set up to 10 minutes behind real time (just before the Bangkok day ends) while events carry
    # real times: a tolerance of an hour keeps them from being refused time_in_future whenever the suite runs.
    settings = settings_for(RoadmapSettings, watcher_max_tick_seconds=0.5, watcher_rescan_seconds=30,
                            stats_refresh_seconds=0.2, alert_settle_seconds=1, event_time_tolerance_seconds=3600)
    clock = MovableClock()
    today = bangkok_day(clock())
    deadline = end_of_bangkok_day(today)
    clock.set(deadline - timedelta(minutes=10))  # ten minutes before today's Bangkok day ends
    key = await make_key(settings, "opdc", "programme_office")
    dga_key = await make_key(settings, "dga")
    headers = {"X-API-Key": key, "Content-Type": BATCH}
    db = db_of(settings)
    app_a, app_b = create_app(settings, clock=clock), create_app(settings, clock=clock)
    try:
        async with running(app_a) as http, running(app_b):
            far = today + timedelta(days=200)
            events = [
                plan("M-MISS", today, weight=2), plan("M-RESCHED", today),
                plan("M-RISK", far, ws="personnel_readiness"),
                plan("M-DEP", far, ws="personnel_readiness", deps=["M-MISS"]),
                plan("M-OK", far, ws="public_awareness"),
            ]
            r = await http.post("/v1/events", content=json.dumps(events), headers=headers)
            assert r.status_code == 202, r.text
            # M-RISK: 10 % after 100 days -> 100 % far beyond its due date: at risk at once.
            start = clock() - timedelta(days=100)
            progress = [
                cloudevent("roadmap.milestone.progressed", {"milestone_id": "M-RISK", "percent_complete": 5,
                                                            "as_of": (start).isoformat()}, agency="dga", id="p1"),
                cloudevent("roadmap.milestone.progressed", {"milestone_id": "M-RISK", "percent_complete": 10,
                                                            "as_of": (start + timedelta(days=20)).isoformat()},
                           agency="dga", id="p2"),
                cloudevent("roadmap.milestone.rescheduled", {"milestone_id": "M-RESCHED",
                                                             "new_due_date": far.isoformat(), "reason": "งบประมาณ"},
                           agency="dga", id="r1"),
            ]
            r = await http.post("/v1/events", content=json.dumps(progress), headers=headers)
            assert r.status_code == 202, r.text
            # Another agency's key may not report on dga's milestone: refused (dead-lettered), nothing changes.
            # (Sent with the programme-office key it would count: that key's events carry its authority.)
            foreign = cloudevent("roadmap.milestone.progressed", {"milestone_id": "M-OK", "percent_complete": 90,
                                                                  "as_of": clock().isoformat()}, agency="dopa", id="x1")
            r = await http.post("/v1/events", content=json.dumps([foreign]),
                                headers={**headers, "X-API-Key": await make_key(settings, "dopa")})
            assert r.status_code == 202, r.text

            async def applied():
                docs = {d["_id"]: d async for d in db.milestones.find({}, {"facts": 0})}
                # Every plan applied: a report can reach the service before its milestone's plan (the
                # producers' partition key is the agency), so a milestone may exist with no owner yet.
                return docs if len(docs) == 5 and all(d.get("owner_agency") for d in docs.values()) \
                    and docs["M-RESCHED"]["reschedule_count"] == 1 and docs["M-RISK"]["status"] == "at_risk" \
                    else None

            docs = await poll(applied, 20, what="milestones applied")
            assert docs["M-OK"]["percent_complete"] == 0 and docs["M-MISS"]["status"] == "planned"
            at_risk = await poll(lambda: _of_type(kafka_bootstrap, "roadmap.milestone.at_risk"), 10,
                                 what="at-risk alert")
            assert [a["id"] for a in at_risk] == [f"at_risk:M-RISK:{far.isoformat()}"]

            # Let the deadline pass in about one real second; both replicas' watchers are running.
            clock.set(deadline - timedelta(seconds=1))
            deadline_real = time.monotonic() + 1
            missed = await poll(lambda: _of_type(kafka_bootstrap, "roadmap.milestone.missed"), 10, interval=0.05,
                                what="missed alert")
            delay = time.monotonic() - deadline_real
            print(f"missed alert published {delay:.2f} s after the deadline")
            assert delay < 5, f"missed alert {delay:.2f} s after the deadline"
            assert [a["id"] for a in missed] == [f"missed:M-MISS:{today.isoformat()}"]
            assert missed[0]["source"] == "/services/roadmap/watcher" and missed[0]["agency"] == "dga"
            # The dependant of a missed milestone is at risk and alerted too.
            dep_alert = await poll(lambda: _of_type(kafka_bootstrap, "roadmap.milestone.at_risk", "M-DEP"), 10,
                                   what="dependant at risk")
            assert len(dep_alert) == 1

            # Completion a day late: recovered, with the lateness recorded.
            done = cloudevent("roadmap.milestone.completed", {"milestone_id": "M-MISS",
                                                              "completed_on": (today + timedelta(days=1)).isoformat()},
                              agency="dga", id="c1", time=clock().isoformat())
            r = await http.post("/v1/events", content=json.dumps([done]), headers={**headers, "X-API-Key": dga_key})
            assert r.status_code == 202, r.text
            recovered = await poll(lambda: _of_type(kafka_bootstrap, "roadmap.milestone.recovered"), 10,
                                   what="recovered alert")
            assert recovered[0]["data"]["days_late"] == 1
            got = (await http.get("/v1/milestones/M-MISS", headers={"X-API-Key": dga_key})).json()
            assert got["status"] == "completed" and got["days_late"] == 1
            assert [t["status"] for t in got["timeline"]][-2:] == ["missed", "completed"]

            # Exactly one alert per milestone and due date, whichever replica saw it; none for the reschedule.
            all_alerts = await alerts_on_topic(kafka_bootstrap)
            ids = [a["id"] for a in all_alerts]
            assert len(ids) == len(set(ids)) == 4, ids
            assert not any("M-RESCHED" in i or "M-OK" in i for i in ids)

            # Summary and metrics agree with MongoDB.
            async def consistent():
                truth: dict[tuple[str, str], int] = {}
                async for d in db.milestones.find({}, {"workstream": 1, "status": 1}):
                    truth[(d["workstream"], d["status"])] = truth.get((d["workstream"], d["status"]), 0) + 1
                summary = (await http.get("/v1/summary", headers={"X-API-Key": dga_key})).json()
                from_summary = {(ws, s): n for ws, f in summary["workstreams"].items() for s, n in f["counts"].items()}
                metrics = (await http.get("/metrics")).text
                from_metrics = {}
                for line in metrics.splitlines():
                    if line.startswith("newnormal_roadmap_milestones{"):
                        labels = dict(p.split("=") for p in line[line.index("{") + 1:line.index("}")].split(","))
                        n = int(float(line.rsplit(" ", 1)[1]))
                        if n:
                            from_metrics[(labels["workstream"].strip('"'), labels["status"].strip('"'))] = n
                ok = truth == from_summary == from_metrics
                return (summary, metrics) if ok else None

            summary, metrics = await poll(consistent, 10, what="summary == metrics == MongoDB")
            assert summary["programme"]["total"] == 5
            assert summary["workstreams"]["personnel_readiness"]["confidence"]["rating"] == "red"
            assert [m["milestone_id"] for m in summary["next_due"]][:1] in (["M-RISK"], ["M-DEP"], ["M-OK"], ["M-RESCHED"])
            # dopa's report was refused: dead-lettered if the plan was already known, else kept but ignored.
            refused = 'newnormal_roadmap_events_rejected_total{reason="agency_not_owner"} 1.0'

            async def dopa_refused():  # by whichever replica took it, counted after its milestone write
                ok_doc = (await http.get("/v1/milestones/M-OK", headers={"X-API-Key": dga_key})).json()
                seen = (refused in (await http.get("/metrics")).text or refused in app_b_metrics(app_b)
                        or [i["reason"] for i in ok_doc["ignored"]] == ["agency_not_owner"])
                return ok_doc if seen else None

            ok_doc = await poll(dopa_refused, 30, what="dopa's report refused")
            assert ok_doc["percent_complete"] == 0
            listed = (await http.get("/v1/milestones", params={"workstream": "personnel_readiness", "status": "at_risk"},
                                     headers={"X-API-Key": dga_key})).json()
            # M-DEP is no longer at risk: its dependency has been completed.
            assert {m["milestone_id"] for m in listed["items"]} == {"M-RISK"}
            assert (await http.get("/v1/milestones/M-DEP", headers={"X-API-Key": dga_key})).json()["status"] == "planned"
            assert (await http.get("/v1/milestones/NOPE", headers={"X-API-Key": dga_key})).status_code == 404
    finally:
        await db.client.close()


def app_b_metrics(app) -> str:
    from prometheus_client import generate_latest

    return generate_latest(app.state.runtime.registry).decode()


async def _of_type(bootstrap: str, type_: str, milestone: str | None = None) -> list[dict]:
    return [a for a in await alerts_on_topic(bootstrap)
            if a["type"] == type_ and (milestone is None or a["data"]["milestone_id"] == milestone)]


async def test_personal_data_an_agency_writes_into_a_milestone_is_redacted_over_http_and_kafka(settings_for, kafka_bootstrap):
    """A phone number, a national ID and an e-mail address typed into a milestone's title or a reschedule reason
    (over HTTP, or produced straight to Kafka) are never stored, shown or published in clear."""
    from support import produce_events

    settings = settings_for(RoadmapSettings)
    dga_key = await make_key(settings, "dga")
    db = db_of(settings)
    pii = "โทร 081-234-5678 บัตร 1-1037-02071-92-7 somchai.probe@example.co.th"
    secrets = ("081-234-5678", "1-1037-02071-92-7", "somchai.probe@example.co.th")
    app = create_app(settings)
    try:
        async with running(app) as http:
            http_plan = cloudevent("roadmap.milestone.planned", {
                "milestone_id": "M-PII-H", "title_th": f"หมุดหมาย {pii}", "workstream": "technology_access",
                "owner_agency": "dga", "due_date": "2026-12-31"}, agency="dga", id="plan-pii-h")
            r = await http.post("/v1/events", content=json.dumps([http_plan]),
                                headers={"X-API-Key": dga_key, "Content-Type": BATCH})
            assert r.status_code == 202 and not r.json()["rejected"], r.text
            await produce_events(settings.kafka_bootstrap_servers, topics.ROADMAP_EVENTS, [
                cloudevent("roadmap.milestone.planned", {
                    "milestone_id": "M-PII-K", "title_th": "หมุดหมาย K", "workstream": "technology_access",
                    "owner_agency": "dga", "due_date": "2026-12-31"}, agency="dga", id="plan-pii-k"),
                cloudevent("roadmap.milestone.rescheduled", {"milestone_id": "M-PII-K", "new_due_date": "2027-01-31",
                                                             "reason": pii}, agency="dga", id="move-pii-k")])

            async def both():
                docs = [d async for d in db.milestones.find({"_id": {"$in": ["M-PII-H", "M-PII-K"]}})]
                return docs if len(docs) == 2 and all(d.get("due_date") for d in docs) \
                    and any(d["due_date"] == "2027-01-31" for d in docs) else None

            docs = await poll(both, 30, what="both milestones stored")
            audit = [d async for d in db.events.find({"id": {"$in": ["plan-pii-h", "move-pii-k"]}})]
            shown = [(await http.get(f"/v1/milestones/{m}", headers={"X-API-Key": dga_key})).text
                     for m in ("M-PII-H", "M-PII-K")]
            for text in [str(docs), str(audit), *shown]:
                assert not any(s in text for s in secrets), text[:500]
            assert "[REDACTED:PHONE]" in shown[0] and "[REDACTED:NATIONAL_ID]" in shown[1]
    finally:
        await db.client.close()


async def test_personal_data_stored_before_redaction_is_redacted_once_at_startup(settings_for, kafka_bootstrap):
    """A database from before free text was redacted on arrival: its audit records and milestones lose the personal
    data at the next start, and the agency's re-send of such an event is a duplicate, not an `id_conflict`."""
    from support import produce_events

    from services.contracts.envelope import parse_kafka
    from services.roadmap.upgrades import REDACT_FREE_TEXT

    settings = settings_for(RoadmapSettings)
    db = db_of(settings)
    pii = "โทร 081-234-5678 somchai.probe@example.co.th"
    old = cloudevent("roadmap.milestone.planned", {
        "milestone_id": "M-OLD-PII", "title_th": f"หมุดหมาย {pii}", "workstream": "technology_access",
        "owner_agency": "dga", "due_date": "2026-12-31"}, agency="dga", id="plan-old-pii")
    # As the roadmap's consumer stored it then: the event as sent, unredacted.
    stored = parse_kafka([("content-type", b"application/cloudevents+json")], b"dga", json.dumps(old).encode())
    await db.events.insert_one(stored.to_document())
    try:
        async with running(create_app(settings)) as http:
            await poll(lambda: db.roadmap_migrations.find_one({"_id": REDACT_FREE_TEXT, "done": True}), 30,
                       what="the upgrade done (in the background)")
            record = await db.events.find_one({"id": "plan-old-pii"})
            assert "081-234-5678" not in str(record) and "[REDACTED:PHONE]" in record["data"]["title_th"]
            milestone = await db.milestones.find_one({"_id": "M-OLD-PII"})
            assert "[REDACTED:EMAIL]" in milestone["title_th"] and "somchai" not in str(milestone)

            marker = plan("M-AFTER-PII", bangkok_day(datetime.now(UTC)) + timedelta(days=30))
            await produce_events(settings.kafka_bootstrap_servers, topics.ROADMAP_EVENTS, [old, marker])
            await poll(lambda: db.milestones.find_one({"_id": "M-AFTER-PII"}), 30, what="marker applied")
            text = (await http.get("/metrics")).text
            conflicts = re.search(rf'newnormal_events_id_conflicts_total{{topic="{topics.ROADMAP_EVENTS}"}} (\S+)', text)
            assert conflicts is None or float(conflicts.group(1)) == 0
            assert await db.events.count_documents({"id": "plan-old-pii"}) == 1
    finally:
        await db.client.close()
