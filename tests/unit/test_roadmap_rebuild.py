"""`RoadmapService.rebuild` over in-memory fakes: every milestone recomputed from the audit trail while batches keep
arriving; a milestone that had drifted comes back as the events make it, refused events stay refused, and a batch
that arrives during the rebuild waits and is applied after it."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import bson
from bson.codec_options import CodecOptions
from fakes_roadmap import FakePublisher, FakeRepo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import poll
from test_roadmap_handlers import NOW, Clock, ev, plan, service

import services.common.ledger as ledger_module
from services.common.consumer import Batch
from services.contracts.envelope import make_event

_BOOKKEEPING = ("rev", "updated_at", "status_since", "created_at", "facts_at")


def figures(repo: FakeRepo) -> dict[str, dict[str, Any]]:
    """What a milestone says. Its facts as a set: they are kept in arrival order, which the audit trail does not
    record (a rebuild replays them by time, then key); the rules give the same result in any order."""
    return {mid: {k: sorted(v, key=lambda f: f["key"]) if k == "facts" else v for k, v in d.items() if k not in _BOOKKEEPING}
            for mid, d in sorted(repo.docs.items())}


def audited(repo: FakeRepo, events) -> list:
    """The consumer stores every event it takes in the audit trail (refused ones too) before the handler runs."""
    # As the database keeps them: BSON times to the millisecond.
    repo.audit.extend(bson.decode(bson.encode(e.to_document()), CodecOptions(tz_aware=True)) for e in events)
    return events


BATCHES = [
    [plan("M1", date(2026, 2, 1)), plan("M2", date(2026, 9, 30), deps=["M1"]), plan("M3", date(2026, 6, 30))],
    [ev("progressed", {"milestone_id": "M3", "percent_complete": 40, "as_of": NOW.isoformat()}, id="p1"),
     plan("M1", date(2026, 12, 1), agency="rd")],  # another agency's plan of M1: refused
    [plan("M4", date(2026, 8, 1), deps=["M2"]), plan("M2", date(2026, 9, 30), deps=["M4"])],  # a cycle: refused
]


async def test_rebuild_gives_what_the_events_give_and_repairs_a_drifted_milestone():
    repo, pub = FakeRepo(), FakePublisher()
    svc = service(repo, pub, Clock(NOW))
    for batch in BATCHES:
        await svc.handle(Batch(audited(repo, batch)))
    clean = figures(repo)
    assert clean["M1"]["owner_agency"] == "dga" and clean["M2"]["status"] == "at_risk"
    repo.docs["M3"]["percent_complete"] = 99  # drift: a write nobody can explain
    del repo.docs["M4"]  # and a milestone lost

    assert await svc.rebuild() == {"events": 7, "milestones": 4}
    assert figures(repo) == clean
    assert all(d["rev"] >= 1 for d in repo.docs.values())
    alerts = sorted(e.id for e in pub.sent)
    assert len(alerts) == len(set(alerts))  # the rebuilt states raised no alert a second time


async def test_a_batch_during_a_rebuild_waits_and_is_applied_after_it():
    saved, ledger_module.PAUSE_POLL_SECONDS = ledger_module.PAUSE_POLL_SECONDS, 0.001
    try:
        repo, pub = FakeRepo(), FakePublisher()
        svc, other_replica = service(repo, pub, Clock(NOW)), service(repo, pub, Clock(NOW))
        for batch in BATCHES[:2]:
            await svc.handle(Batch(audited(repo, batch)))
        late = audited(repo, [ev("progressed", {"milestone_id": "M1", "percent_complete": 20, "as_of": NOW.isoformat()},
                                 id="late")])
        pause = svc.ledger.paused(timedelta(minutes=5))
        await pause.__aenter__()  # a rebuild holds the pause
        waiting = asyncio.ensure_future(other_replica.handle(Batch(late)))
        # The batch has seen the pause and looked again: it is waiting for the rebuild, not finished.
        await poll(lambda: repo.ledger_store.pause_reads >= 2, 5, interval=0.001, what="the batch waiting")
        assert not waiting.done() and repo.docs["M1"].get("percent_complete", 0) == 0
        await pause.__aexit__(None, None, None)
        assert await asyncio.wait_for(waiting, 5) == []
        assert repo.docs["M1"]["percent_complete"] == 20
        await svc.rebuild()
        assert repo.docs["M1"]["percent_complete"] == 20  # the late event is in the audit trail: rebuilt the same
    finally:
        ledger_module.PAUSE_POLL_SECONDS = saved


_MIDS = ("A", "B", "C")
_AGENCIES = ("dga", "rd")


@st.composite
def histories(draw) -> list:
    """Events in time order, one per batch: plans and re-plans by either agency (with dependencies, cycles
    included), reports by either agency, completions, re-schedules and retractions of earlier events."""
    events: list = []
    for n in range(draw(st.integers(1, 18))):
        mid, agency = draw(st.sampled_from(_MIDS)), draw(st.sampled_from(_AGENCIES))
        # Microseconds, and reports as of the very moment of another event: ties the stored times must keep.
        t = NOW + timedelta(minutes=n, microseconds=draw(st.sampled_from([0, 123, 999_999])))
        kind = draw(st.sampled_from(["planned", "progressed", "progressed", "completed", "rescheduled", "retracted"]))
        if kind == "planned":
            deps = draw(st.lists(st.sampled_from([m for m in _MIDS if m != mid]), max_size=2, unique=True))
            data = {"title_th": "ทดสอบ", "workstream": "technology_access", "owner_agency": agency,
                    "due_date": draw(st.sampled_from(["2026-02-01", "2026-06-30"])), "depends_on": deps}
        elif kind == "progressed":
            data = {"percent_complete": draw(st.integers(0, 100)),
                    "as_of": draw(st.sampled_from([t, t - timedelta(minutes=1), t - timedelta(microseconds=1)])).isoformat()}
        elif kind == "completed":
            data = {"completed_on": "2026-02-20"}
        elif kind == "rescheduled":
            data = {"new_due_date": "2026-09-30", "reason": "งบ"}
        else:
            targets = [e for e in events if e.type != "roadmap.fact.retracted"]
            if not targets:
                continue
            target = draw(st.sampled_from(targets))
            mid, agency = target.data.milestone_id, target.agency
            events.append(ev_at("roadmap.fact.retracted", {"milestone_id": mid, "retracted_source": target.source,
                                                           "retracted_id": target.id, "reason": "ผิด"}, agency, n, t))
            continue
        events.append(ev_at(f"roadmap.milestone.{kind}", {"milestone_id": mid, **data}, agency, n, t))
    return events


def ev_at(type_: str, data: dict, agency: str, n: int, time):
    return make_event(type_, data, agency=agency, source=f"/agencies/{agency}/pm", id=f"e{n}", time=time)


@given(histories())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_replay_makes_what_the_events_made_one_by_one(events):
    """Whatever the history (refused plans of another agency, cycles, retractions of plans and reports), the rebuild
    (which derives a milestone only after plans and retractions, and once at the end) gives what the live service
    made from the same events arriving one by one in time order."""

    async def run() -> None:
        repo, pub = FakeRepo(), FakePublisher()
        svc = service(repo, pub, Clock(NOW + timedelta(hours=1)))
        for event in events:
            await svc.handle(Batch(audited(repo, [event])))
        live = figures(repo)
        await svc.rebuild(cascade=False)
        rebuilt = figures(repo)
        differing = {mid: {k: (live.get(mid, {}).get(k), rebuilt.get(mid, {}).get(k))
                           for k in set(live.get(mid, {})) | set(rebuilt.get(mid, {}))
                           if live.get(mid, {}).get(k) != rebuilt.get(mid, {}).get(k)}
                     for mid in set(live) | set(rebuilt) if live.get(mid) != rebuilt.get(mid)}
        history = [(e.type.rsplit(".", 1)[-1], e.id, e.agency, e.time.isoformat(), e.data_dict()) for e in events]
        assert not differing, (differing, history)

    asyncio.run(run())


async def test_a_retraction_that_restores_an_earlier_plan_judges_its_dependencies_by_their_state():
    """B depends on planned A, is re-planned without dependencies, and that re-plan is retracted: B depends on A again,
    and A is planned, not unknown; live and rebuilt alike (found by the property test above)."""
    t = [NOW + timedelta(minutes=n) for n in range(4)]
    plan_a = ev_at("roadmap.milestone.planned", {"milestone_id": "A", "title_th": "ทดสอบ", "workstream": "technology_access",
                                                 "owner_agency": "dga", "due_date": "2026-06-30", "depends_on": []},
                   "dga", 0, t[0])
    plan_b = ev_at("roadmap.milestone.planned", {"milestone_id": "B", "title_th": "ทดสอบ", "workstream": "technology_access",
                                                 "owner_agency": "dga", "due_date": "2026-06-30", "depends_on": ["A"]},
                   "dga", 1, t[1])
    replan_b = ev_at("roadmap.milestone.planned", {**plan_b.data_dict(), "depends_on": []}, "dga", 2, t[2])
    retract = ev_at("roadmap.fact.retracted", {"milestone_id": "B", "retracted_source": replan_b.source,
                                               "retracted_id": replan_b.id, "reason": "ผิด"}, "dga", 3, t[3])
    repo, pub = FakeRepo(), FakePublisher()
    svc = service(repo, pub, Clock(NOW + timedelta(hours=1)))
    for event in (plan_a, plan_b, replan_b, retract):
        await svc.handle(Batch(audited(repo, [event])))
    assert repo.docs["B"]["depends_on"] == ["A"] and repo.docs["B"]["unknown_dependencies"] == []
    live = figures(repo)
    await svc.rebuild(cascade=False)
    assert figures(repo) == live


async def test_a_rebuild_refuses_the_progress_reports_the_live_path_refused_past_a_milestones_share(monkeypatch):
    from services.roadmap import domain

    monkeypatch.setattr(domain, "PROGRESS_MAX_BYTES", 20_000)
    repo, pub = FakeRepo(), FakePublisher()
    svc = service(repo, pub, Clock(NOW))
    note = "ความคืบหน้า " * 150
    reports = [ev("progressed", {"milestone_id": "BIG", "percent_complete": i, "as_of": NOW.isoformat(), "note": note},
                  id=f"p-{i}") for i in range(1, 7)]
    for batch in ([plan("BIG", date(2026, 6, 30)), *reports[:4]], reports[4:]):
        await svc.handle(Batch(audited(repo, batch)))
    clean = figures(repo)
    assert clean["BIG"]["event_count"] == 4 and clean["BIG"]["fact_bytes"]["progress"] <= 20_000
    assert await svc.rebuild() == {"events": 7, "milestones": 1}
    assert figures(repo) == clean
