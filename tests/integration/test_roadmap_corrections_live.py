"""Roadmap over the real broker and database: the same facts (a wrong report and its retraction included) posted
one by one in two different orders to two milestone ids give equal records and equal alert sets on roadmap.alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from support import cloudevent, db_of, header, make_key, poll, read_topic, running

from services.contracts import topics
from services.contracts.thai_calendar import bangkok_day
from services.roadmap.main import create_app
from services.roadmap.settings import RoadmapSettings

pytestmark = pytest.mark.integration
BATCH = "application/cloudevents-batch+json"
SOURCE = "/agencies/dga/pm"
# Storage details and per-milestone names: everything else of the two records must be equal.
_LOCAL = {"_id", "facts", "rev", "version", "updated_at", "created_at", "status_since", "facts_at"}


def facts_for(mid: str, now: datetime) -> list[dict]:
    """One milestone's history: planned, slow progress, a mistyped report and its retraction, missed, completed
    five days late, then moved into the past after completion (recorded, lateness unchanged)."""
    today = bangkok_day(now)
    due = today - timedelta(days=20)

    def at(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    def ev(type_: str, eid: str, data: dict, days_ago: float) -> dict:
        return cloudevent(type_, {"milestone_id": mid, **data}, agency="dga", id=f"{mid}-{eid}", source=SOURCE,
                          time=at(days_ago))

    return [
        ev("roadmap.milestone.planned", "plan", {"title_th": "ทดสอบการแก้ไข", "workstream": "technology_access",
                                                 "owner_agency": "dga", "due_date": due.isoformat()}, 60),
        ev("roadmap.milestone.progressed", "p1", {"percent_complete": 30, "as_of": at(50)}, 50),
        ev("roadmap.milestone.progressed", "p2", {"percent_complete": 70, "as_of": at(40)}, 40),
        ev("roadmap.milestone.progressed", "typo", {"percent_complete": 7, "as_of": at(30), "note": "พิมพ์ผิด"}, 30),
        ev("roadmap.fact.retracted", "undo", {"retracted_source": SOURCE, "retracted_id": f"{mid}-typo",
                                              "reason": "รายงานผิด"}, 29),
        ev("roadmap.milestone.completed", "done", {"completed_on": (due + timedelta(days=5)).isoformat()}, 14),
        ev("roadmap.milestone.rescheduled", "moved", {"new_due_date": (due - timedelta(days=10)).isoformat(),
                                                      "reason": "ปรับแผน"}, 10),
    ]


def comparable(doc: dict, mid: str) -> dict:
    text = json.dumps({k: v for k, v in doc.items() if k not in _LOCAL}, default=str, sort_keys=True)
    return json.loads(text.replace(mid, "MID"))


async def test_same_facts_in_two_orders_give_equal_records_and_equal_alerts(settings_for, kafka_bootstrap):
    # Each fact is applied on its own (the next is posted once the previous is stored), so every intermediate state
    # is real: ORD-1 is missed after its plan and at risk after the typo. Alerts wait until a milestone's facts have
    # been quiet for 20 s (seconds here, even on a loaded machine), so only what the final facts call for goes out.
    settings = settings_for(RoadmapSettings, alert_settle_seconds=20, watcher_max_tick_seconds=0.5)
    key = await make_key(settings, "dga")
    headers = {"X-API-Key": key, "Content-Type": BATCH}
    now = datetime.now(UTC)
    first, second = facts_for("ORD-1", now), facts_for("ORD-2", now)
    second = [second[i] for i in (6, 4, 5, 3, 1, 0, 2)]  # the retraction before its target, the plan late
    db = db_of(settings)
    try:
        async with running(create_app(settings)) as http:
            async def count(mid: str) -> int:
                doc = await db.milestones.find_one({"_id": mid}, {"event_count": 1})
                return doc["event_count"] if doc else 0

            for n, pair in enumerate(zip(first, second, strict=True), start=1):
                for mid, event in zip(("ORD-1", "ORD-2"), pair, strict=True):
                    r = await http.post("/v1/events", content=json.dumps([event]), headers=headers)
                    assert r.status_code == 202, r.text
                    await poll(lambda mid=mid, n=n: _at_least(count(mid), n), 30, interval=0.05, what=f"{mid} fact {n}")

            async def applied():
                docs = {d["_id"]: d async for d in db.milestones.find({"_id": {"$in": ["ORD-1", "ORD-2"]}})}
                return docs if len(docs) == 2 and all(d["event_count"] == 7 for d in docs.values()) else None

            docs = await poll(applied, 60, what="both milestones with all seven facts")
            one, two = comparable(docs["ORD-1"], "ORD-1"), comparable(docs["ORD-2"], "ORD-2")
            assert one == two
            assert one["status"] == "completed" and one["days_late"] == 5 and one["percent_complete"] == 100
            assert [p["percent_complete"] for p in one["progress_history"]] == [30, 70]  # the typo never counted
            assert [r["effect"] for r in one["retractions"]] == ["applied"]
            assert [h["change"] for h in one["due_history"]] == ["baseline", "rescheduled_after_completion"]
            wanted = sorted((a["kind"], a["due_date"]) for a in one["alerts_due"])
            assert ("missed", one["due_date"]) in wanted and ("recovered", one["due_date"]) in wanted

            async def alerts(mid: str) -> list[tuple[str, str, int]]:
                sent = [json.loads(r.value) for r in await read_topic(kafka_bootstrap, topics.ROADMAP_ALERTS)]
                return sorted((a["type"].rsplit(".", 1)[1], a["data"]["due_date"], a["data"]["days_late"])
                              for a in sent if a["data"]["milestone_id"] == mid)

            async def both_alerted():
                got = await alerts("ORD-1"), await alerts("ORD-2")
                return got if all(len(g) >= len(wanted) for g in got) else None

            sent_one, sent_two = await poll(both_alerted, 90, what="the alerts of both milestones")
            assert sent_one == sent_two  # the same alerts, whatever the order the facts came in
            assert [(k, d) for k, d, _ in sent_one] == wanted  # exactly the ones the record calls for, once each
            recovered = [late for k, _d, late in sent_one if k == "recovered"]
            assert recovered == [5]  # days late as the record says, not rewritten by the later move
    finally:
        await db.client.close()


async def _at_least(value, n: int) -> bool:
    return await value >= n


async def test_refused_retractions_are_dead_lettered_with_their_reason(settings_for, kafka_bootstrap):
    settings = settings_for(RoadmapSettings, alert_settle_seconds=1)
    dga, dopa = await make_key(settings, "dga"), await make_key(settings, "dopa")
    now = datetime.now(UTC)
    facts = facts_for("REF-1", now)
    plan, typo, undo = facts[0], facts[3], facts[4]
    undo_undo = cloudevent("roadmap.fact.retracted", {"milestone_id": "REF-1", "retracted_source": SOURCE,
                                                      "retracted_id": "REF-1-undo"}, agency="dga", id="REF-1-undo-undo",
                           source=SOURCE)
    # dopa names dga's event from its own namespace's point of view: another agency's fact, refused by the source.
    foreign = cloudevent("roadmap.fact.retracted", {"milestone_id": "REF-1", "retracted_source": SOURCE,
                                                    "retracted_id": "REF-1-typo"}, agency="dopa", id="REF-1-dopa",
                         source="/agencies/dopa/pm")
    db = db_of(settings)
    try:
        async with running(create_app(settings)) as http:
            async def stored() -> bool:
                doc = await db.milestones.find_one({"_id": "REF-1"}, {"event_count": 1})
                return bool(doc and doc["event_count"] == 3)

            for n, (key, batch) in enumerate(((dga, [plan, typo, undo]), (dga, [undo_undo]), (dopa, [foreign]))):
                r = await http.post("/v1/events", content=json.dumps(batch), headers={"X-API-Key": key,
                                                                                      "Content-Type": BATCH})
                assert r.status_code == 202, r.text
                if n == 0:  # the retraction is stored before anyone tries to retract it
                    await poll(stored, 30, what="plan, report and retraction stored")

            async def dead_letters() -> dict[str, str] | None:
                found = {json.loads(r.value)["id"]: header(r, "dlq-reason")
                         for r in await read_topic(kafka_bootstrap, topics.dlq(topics.ROADMAP_EVENTS), timeout=2)}
                return found if {"REF-1-undo-undo", "REF-1-dopa"} <= found.keys() else None

            reasons = await poll(dead_letters, 60, what="refused retractions dead-lettered")
            assert reasons["REF-1-undo-undo"] == "cannot_retract_retraction"
            # dopa is not REF-1's owner: the ownership rule refuses it first (retraction_not_same_agency otherwise).
            assert reasons["REF-1-dopa"] in ("agency_not_owner", "retraction_not_same_agency")
            doc = await db.milestones.find_one({"_id": "REF-1"})
            assert doc["progress_history"] == [] and [r["effect"] for r in doc["retractions"]] == ["applied"]
            assert doc["event_count"] == 3
    finally:
        await db.client.close()
