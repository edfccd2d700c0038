"""Issue 17 points 5 and 6 over the real broker and database: authority from the key's role (an OPDC agency key
cannot cancel or reschedule dga's milestone, the programme-office key can; a second agency's plan for an existing
id is dead-lettered `milestone_id_taken`), and dependencies as a graph (cycle refused, a missed root puts a chain
of 30 at risk, unknown dependencies flagged until planned)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from support import MovableClock, cloudevent, db_of, header, make_key, poll, read_topic, running

from services.contracts import topics
from services.contracts.thai_calendar import bangkok_day, end_of_bangkok_day
from services.roadmap.main import create_app
from services.roadmap.settings import RoadmapSettings

pytestmark = pytest.mark.integration
BATCH = "application/cloudevents-batch+json"


def plan(mid: str, due, *, agency: str = "dga", deps=(), id: str | None = None, title: str | None = None) -> dict:
    return cloudevent("roadmap.milestone.planned", {
        "milestone_id": mid, "title_th": title or f"หมุดหมาย {mid}", "workstream": "technology_access",
        "owner_agency": agency, "due_date": due.isoformat(), "depends_on": list(deps)},
        agency=agency, id=id or f"plan-{mid}")


async def dead_letters(bootstrap: str, ids: set[str]) -> dict[str, str] | None:
    """event id -> dlq-reason, once every id in `ids` is on the roadmap dead-letter topic."""
    found = {}
    for record in await read_topic(bootstrap, topics.dlq(topics.ROADMAP_EVENTS), timeout=2):
        try:
            found[json.loads(record.value)["id"]] = header(record, "dlq-reason")
        except (ValueError, KeyError, TypeError):
            continue
    return found if ids <= set(found) else None


async def test_authority_comes_from_the_key_role_and_ids_cannot_be_squatted(settings_for, kafka_bootstrap):
    settings = settings_for(RoadmapSettings, stats_refresh_seconds=0.2)
    clock = MovableClock()
    far = bangkok_day(clock()) + timedelta(days=200)
    po = await make_key(settings, "opdc", "programme_office")
    opdc_agency, dopa = await make_key(settings, "opdc"), await make_key(settings, "dopa")
    db = db_of(settings)
    app = create_app(settings, clock=clock)
    try:
        async with running(app) as http:
            async def post(key: str, events: list[dict]):
                return await http.post("/v1/events", content=json.dumps(events),
                                       headers={"X-API-Key": key, "Content-Type": BATCH})

            assert (await post(po, [plan("M-A", far), plan("M-B", far)])).status_code == 202
            await poll(lambda: _docs(db, {"M-A", "M-B"}), 30, what="plans applied")
            # An ordinary OPDC key sends in its own namespace (the intake lets it), but it owns nothing of dga's.
            own = dict(agency="opdc")
            r = await post(opdc_agency, [
                cloudevent("roadmap.milestone.cancelled", {"milestone_id": "M-A", "reason": "ยกเลิก"}, id="x-cancel", **own),
                cloudevent("roadmap.milestone.rescheduled", {"milestone_id": "M-A", "reason": "เลื่อน",
                                                             "new_due_date": (far + timedelta(days=9)).isoformat()},
                           id="x-resched", **own)])
            assert r.status_code == 202, r.text
            # Another agency's events stay refused at the edge, and nobody may send the authority marker itself.
            forged = cloudevent("roadmap.milestone.cancelled", {"milestone_id": "M-A", "reason": "x"}, id="x-forged",
                                authority="programme_office", **own)
            r = await post(opdc_agency, [forged])
            assert r.status_code == 400 and r.json()["errors"][0]["reason"] == "reserved_attribute", r.text
            r = await post(opdc_agency, [cloudevent("roadmap.milestone.cancelled", {"milestone_id": "M-A", "reason": "x"},
                                                    agency="dga", id="x-dga")])
            assert r.status_code == 403 and r.json()["reason"] == "agency_not_allowed", r.text
            # dopa plans an id dga already holds: dead-lettered, the milestone unchanged.
            r = await post(dopa, [plan("M-A", far + timedelta(days=1), agency="dopa", id="squat", title="ยึด")])
            assert r.status_code == 202, r.text
            reasons = await poll(lambda: dead_letters(kafka_bootstrap, {"x-cancel", "x-resched", "squat"}), 60,
                                 what="refusals dead-lettered")
            assert reasons == {"x-cancel": "agency_not_owner", "x-resched": "agency_not_owner",
                               "squat": "milestone_id_taken"}
            got = (await http.get("/v1/milestones/M-A", headers={"X-API-Key": po})).json()
            assert got["status"] == "planned" and got["due_date"] == far.isoformat() and got["owner_agency"] == "dga"
            assert got["title_th"] == "หมุดหมาย M-A" and got["event_count"] == 1

            # The programme-office key may act on any agency's milestone.
            r = await post(po, [cloudevent("roadmap.milestone.cancelled", {"milestone_id": "M-B", "reason": "มติ"},
                                           id="po-cancel", **own)])
            assert r.status_code == 202, r.text
            docs = await poll(lambda: _docs(db, {"M-B"}, lambda d: d["status"] == "cancelled"), 30,
                              what="programme office cancelled M-B")
            [fact] = [f for f in docs["M-B"]["facts"] if f["kind"] == "cancelled"]
            assert fact["authority"] == "programme_office" and fact["agency"] == "opdc"
            stored = await db.events.find_one({"id": "po-cancel"})
            assert stored["authority"] == "programme_office"  # the audit trail shows with what authority it came
    finally:
        await db.client.close()


async def test_dependency_graph_cycles_depth_and_unknown_ids(settings_for, kafka_bootstrap):
    settings = settings_for(RoadmapSettings, watcher_max_tick_seconds=0.5, watcher_rescan_seconds=30,
                            stats_refresh_seconds=0.2)
    clock = MovableClock()
    today = bangkok_day(clock())
    # An hour before the day ends, never earlier than now: the events carry the real time, and a service clock
    # behind them refuses them as from the future (this test failed when run between 23:05 and 24:00 Bangkok).
    clock.set(max(clock(), end_of_bangkok_day(today) - timedelta(hours=1)))
    far = today + timedelta(days=200)
    po = await make_key(settings, "opdc", "programme_office")
    db = db_of(settings)
    app = create_app(settings, clock=clock)
    n = 30
    try:
        async with running(app) as http:
            async def post(events: list[dict]):
                r = await http.post("/v1/events", content=json.dumps(events),
                                    headers={"X-API-Key": po, "Content-Type": BATCH})
                assert r.status_code == 202, r.text

            chain = [plan("L0", today)] + [plan(f"L{i}", far, deps=[f"L{i - 1}"]) for i in range(1, n)]
            await post(chain + [plan("X", far, deps=["Y"]), plan("Y", far), plan("U", far, deps=["GHOST", "L1"])])
            ids = {f"L{i}" for i in range(n)} | {"X", "Y", "U"}
            await poll(lambda: _docs(db, ids), 60, what="chain planned")

            # Closing X -> Y -> X is refused; Y keeps its plan.
            await post([plan("Y", far, deps=["X"], id="replan-Y")])
            reasons = await poll(lambda: dead_letters(kafka_bootstrap, {"replan-Y"}), 60, what="cycle dead-lettered")
            assert reasons["replan-Y"] == "dependency_cycle"
            got = (await http.get("/v1/milestones/Y", headers={"X-API-Key": po})).json()
            assert got["depends_on"] == [] and got["event_count"] == 1

            # Unknown dependency: kept, shown and counted, until it is planned.
            got = (await http.get("/v1/milestones/U", headers={"X-API-Key": po})).json()
            assert got["depends_on"] == ["GHOST", "L1"] and got["unknown_dependencies"] == ["GHOST"]

            async def summary_count(expected: int):
                s = (await http.get("/v1/summary", headers={"X-API-Key": po})).json()
                return s if s.get("milestones_with_unknown_dependencies") == expected else None
            await poll(lambda: summary_count(1), 30, what="summary counts the unknown dependency")
            await post([plan("GHOST", far)])
            await poll(lambda: _docs(db, {"U"}, lambda d: d["unknown_dependencies"] == []), 30, what="flag cleared")
            await poll(lambda: summary_count(0), 30, what="summary count cleared")

            # The root's deadline passes: every one of the 29 dependants (and U, through L1) goes at risk.
            clock.set(end_of_bangkok_day(today) + timedelta(seconds=1))
            docs = await poll(lambda: _docs(db, ids, lambda d: d["_id"] == "L0" and d["status"] == "missed"
                                            or d["_id"] in ("X", "Y") or d["status"] == "at_risk"), 60,
                              what="missed root cascades down the chain")
            assert docs[f"L{n - 1}"]["blocked_by"] == [f"L{n - 2}"] and docs["U"]["blocked_by"] == ["L1"]
    finally:
        await db.client.close()


async def _docs(db, ids: set[str], ok=lambda d: True) -> dict[str, dict] | None:
    docs = {d["_id"]: d async for d in db.milestones.find({"_id": {"$in": list(ids)}})}
    return docs if set(docs) == ids and all(d.get("owner_agency") and ok(d) for d in docs.values()) else None
