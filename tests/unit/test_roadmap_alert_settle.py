"""Roadmap service layer with in-memory fakes: the alerts published are the ones the final facts call for,
whatever the arrival order and batching (held while facts settle); retractions refused on arrival."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from fakes_roadmap import FakePublisher, FakeRepo
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from test_roadmap_corrections import T0, fact_sets
from test_roadmap_handlers import Clock

from services.common.consumer import Batch
from services.contracts.envelope import PROGRAMME_OFFICE_AUTHORITY, make_event, with_authority
from services.roadmap import domain
from services.roadmap.handlers import RoadmapService
from services.roadmap.metrics import RoadmapMetrics
from services.roadmap.settings import RoadmapSettings

NOW = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
SETTLE = 5.0
LATER = T0 + timedelta(days=200)  # after every fact of the random histories


def service(repo, publisher, clock, settle: float = SETTLE) -> RoadmapService:
    settings = RoadmapSettings(alert_claim_stale_seconds=0.0, alert_settle_seconds=settle)
    return RoadmapService(repo, publisher, RoadmapMetrics(CollectorRegistry()), settings, clock)


def ev(type_: str, data: dict, id: str, time: str, *, agency: str = "dga"):
    name = type_ if "." in type_ else f"roadmap.milestone.{type_}"
    return make_event(name, data, agency=agency, source=f"/agencies/{agency}/pm", id=id,
                      time=datetime.fromisoformat(time).replace(tzinfo=UTC))


def plan(mid: str, due: str, time: str = "2026-01-01T03:00:00"):
    return ev("planned", {"milestone_id": mid, "title_th": "ทดสอบ", "workstream": "technology_access",
                          "owner_agency": "dga", "due_date": due}, f"plan-{mid}", time)


def retract(mid: str, target_id: str, id: str, time: str, *, agency: str = "dga", source_agency: str = "dga"):
    return ev("roadmap.fact.retracted", {"milestone_id": mid, "retracted_source": f"/agencies/{source_agency}/pm",
                                         "retracted_id": target_id, "reason": "รายงานผิด"}, id, time, agency=agency)


# Each milestone has a partial state that calls for an alert its full facts do not.
_EVENTS = [
    # A: planned for 10 Feb (past), moved to June on 5 Feb, before the deadline: never missed.
    plan("A", "2026-02-10"),
    ev("rescheduled", {"milestone_id": "A", "new_due_date": "2026-06-30", "reason": "งบ"}, "rA", "2026-02-05T03:00:00"),
    # B: missed on 20 Feb, completed on the 25th: missed and recovered.
    plan("B", "2026-02-20"),
    ev("completed", {"milestone_id": "B", "completed_on": "2026-02-25"}, "cB", "2026-02-26T03:00:00"),
    # C: a mistyped report stalls its progress (at risk) and is retracted: never at risk.
    plan("C", "2026-12-31"),
    ev("progressed", {"milestone_id": "C", "percent_complete": 40, "as_of": "2026-02-01T03:00:00+00:00"}, "pC1",
       "2026-02-01T03:00:00"),
    ev("progressed", {"milestone_id": "C", "percent_complete": 41, "as_of": "2026-02-25T03:00:00+00:00"}, "pC2",
       "2026-02-25T03:00:00"),
    retract("C", "pC2", "xC", "2026-02-26T03:00:00"),
]
EXPECTED = {"missed:B:2026-02-20", "recovered:B:2026-02-20"}


def run(events, sizes, settle: float = SETTLE) -> tuple[FakeRepo, list[str], list[str]]:
    """Apply `events` in batches of `sizes` (cycled) at one instant; then let the facts settle."""
    repo, pub, clock = FakeRepo(), FakePublisher(), Clock(NOW)
    svc = service(repo, pub, clock, settle)

    async def go():
        i, k = 0, 0
        while i < len(events):
            await svc.handle(Batch(events[i:i + sizes[k % len(sizes)]]))
            i, k = i + sizes[k % len(sizes)], k + 1
        before = [e.id for e in pub.sent]
        clock.now += timedelta(seconds=settle + 1)
        await svc.watch_once()
        return before
    before = asyncio.run(go())
    return repo, before, [e.id for e in pub.sent]


@hyp_settings(max_examples=40, deadline=None)
@given(st.permutations(list(range(len(_EVENTS)))), st.lists(st.integers(0, len(_EVENTS) - 1), max_size=4),
       st.lists(st.integers(1, 3), min_size=1, max_size=6))
def test_published_alerts_are_the_final_facts_alerts_in_any_order_and_batching(order, dups, sizes):
    repo, before, after = run([_EVENTS[i] for i in order] + [_EVENTS[i] for i in dups], sizes)
    assert before == []  # nothing goes out while the facts are still arriving
    assert sorted(after) == sorted(EXPECTED)  # once each
    final = {a["id"] for d in repo.docs.values() for a in d["alerts_due"]}
    assert final == EXPECTED


def test_without_settling_a_transient_state_is_alerted_which_is_why_alerts_wait():
    # The plan of A alone (its reschedule not yet in) looks missed: with no settle time that goes out at once.
    _repo, before, _after = run([_EVENTS[0], _EVENTS[1]], [1], settle=0.0)
    assert before == ["missed:A:2026-02-10"]
    _repo, before, after = run([_EVENTS[0], _EVENTS[1]], [1])
    assert before == after == []


def test_alerts_held_for_settling_are_also_raised_by_the_rescan():
    repo, pub, clock = FakeRepo(), FakePublisher(), Clock(NOW)

    async def go():
        await service(repo, pub, clock).handle(Batch(_EVENTS[2:4]))
        assert pub.sent == []
        clock.now += timedelta(seconds=SETTLE + 1)
        await service(repo, pub, clock).rescan()  # another replica, which never held them
    asyncio.run(go())
    assert sorted(e.id for e in pub.sent) == sorted(EXPECTED)
    recovered = next(e for e in pub.sent if e.id.startswith("recovered"))
    assert recovered.data.days_late == 5 and str(recovered.data.due_date) == "2026-02-20"


def test_retractions_refused_on_arrival_when_decidable():
    repo, pub, clock = FakeRepo(), FakePublisher(), Clock(NOW)
    svc = service(repo, pub, clock)

    async def go():
        assert await svc.handle(Batch(_EVENTS[4:8])) == []
        # Retracting a retraction, and retracting another agency's fact, are dead-lettered with the reason.
        undo_undo = retract("C", "xC", "xxC", "2026-02-27T03:00:00")
        foreign = retract("C", "pC1", "dopa-x", "2026-02-27T03:00:00", agency="dopa")
        refused = await svc.handle(Batch([undo_undo, foreign]))
        assert [(r.event.id, r.error.reason) for r in refused] == [
            ("xxC", "cannot_retract_retraction"), ("dopa-x", "agency_not_owner")]
        # dopa naming its own namespace for dga's milestone is still not the owner; a stray namespace is refused.
        stray = retract("C", "pC1", "dga-x", "2026-02-27T03:00:00", source_agency="dopa")
        [refused] = await svc.handle(Batch([stray]))
        assert refused.error.reason == "retraction_not_same_agency"
        # The programme office (by role) may correct an agency's report.
        office = with_authority(retract("C", "pC1", "office-x", "2026-02-27T03:00:00", agency="opdc"),
                                PROGRAMME_OFFICE_AUTHORITY)
        assert await svc.handle(Batch([office])) == []
    asyncio.run(go())
    doc = repo.docs["C"]
    assert doc["percent_complete"] == 0 and doc["progress_history"] == []
    assert [r["effect"] for r in doc["retractions"]] == ["applied", "applied"]
    assert domain.alerts_due(doc) == []


def _as_event(fact: dict):
    """A stored fact back as the event that made it (the fold's fact sets, replayed through the service)."""
    source, event_id = fact["key"].split("|", 1)
    type_ = "roadmap.fact.retracted" if fact["kind"] == "retracted" else f"roadmap.milestone.{fact['kind']}"
    return make_event(type_, {"milestone_id": "M", **fact["data"]}, agency=fact["agency"], source=source, id=event_id,
                      time=fact["time"])


@hyp_settings(max_examples=30, deadline=None)
@given(fact_sets(), st.randoms(use_true_random=False), st.lists(st.integers(1, 4), min_size=1, max_size=6))
def test_random_histories_through_the_service_publish_what_the_fold_calls_for(facts, rnd, sizes):
    events = [_as_event(f) for f in facts]
    rnd.shuffle(events)
    repo, pub, clock = FakeRepo(), FakePublisher(), Clock(LATER)
    svc = service(repo, pub, clock)

    async def go():
        i, k = 0, 0
        while i < len(events):
            await svc.handle(Batch(events[i:i + sizes[k % len(sizes)]]))
            i, k = i + sizes[k % len(sizes)], k + 1
        assert pub.sent == []
        clock.now += timedelta(seconds=SETTLE + 1)
        await svc.watch_once()
    asyncio.run(go())
    doc = repo.docs["M"]
    # The fold of the facts the service kept: a retraction refused on arrival (of a retraction already stored) is
    # dead-lettered, so it is in neither the record nor the fold it must equal.
    kept = {f["key"] for f in doc["facts"]}
    kinds = {f["key"]: f["kind"] for f in facts}
    dropped = [f for f in facts if f["key"] not in kept]
    assert all(f["kind"] == "retracted" and kinds.get(f"{f['data']['retracted_source']}|{f['data']['retracted_id']}")
               == "retracted" for f in dropped), dropped
    expected = domain.project("M", [f for f in facts if f["key"] in kept], clock.now)
    # A retraction refused on arrival (a retraction of a retraction already stored) is dead-lettered instead of
    # kept and set aside: the same record but for the `ignored` list and the count of facts kept.
    local = ("ignored", "event_count")
    assert {k: v for k, v in doc.items() if k in expected and k not in local} == \
        {k: v for k, v in expected.items() if k not in local}
    assert sorted(e.id for e in pub.sent) == sorted(a["id"] for a in expected["alerts_due"])
