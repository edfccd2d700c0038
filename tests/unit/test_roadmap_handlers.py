"""Roadmap service layer with in-memory fakes: idempotent apply, refusals, exactly-once alerts,
crash between claim and publish, deadline sweep, figures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fakes_roadmap import FakePublisher, FakeRepo
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.common.consumer import Batch
from services.contracts.agencies import PROGRAMME_OFFICE
from services.contracts.envelope import PROGRAMME_OFFICE_AUTHORITY, make_event, with_authority
from services.roadmap import domain
from services.roadmap.handlers import RoadmapService
from services.roadmap.metrics import RoadmapMetrics
from services.roadmap.settings import RoadmapSettings

NOW = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def service(repo, publisher, clock):
    settings = RoadmapSettings(alert_claim_stale_seconds=0.0, alert_settle_seconds=0.0)
    return RoadmapService(repo, publisher, RoadmapMetrics(CollectorRegistry()), settings, clock)


def ev(type_, data, *, agency="dga", id=None, time=NOW):
    return make_event(f"roadmap.milestone.{type_}", data, agency=agency, source=f"/agencies/{agency}/pm",
                      id=id or f"{type_}-{data['milestone_id']}-{len(str(data))}", time=time)


def plan(mid, due, deps=(), agency="dga"):
    return ev("planned", {"milestone_id": mid, "title_th": "ทดสอบ", "workstream": "technology_access",
                          "owner_agency": agency, "due_date": due.isoformat(), "depends_on": list(deps)},
              agency=agency, id=f"plan-{mid}")


@pytest.fixture
def world():
    repo, pub, clock = FakeRepo(), FakePublisher(), Clock(NOW)
    return repo, pub, clock, service(repo, pub, clock), service(repo, pub, clock)


async def test_duplicates_change_nothing_and_foreign_agency_is_refused(world):
    repo, _pub, _clock, svc, _ = world
    events = [plan("M1", date(2026, 6, 30)),
              ev("progressed", {"milestone_id": "M1", "percent_complete": 50, "as_of": NOW.isoformat()})]
    assert await svc.handle(Batch(events)) == []
    rev = repo.docs["M1"]["rev"]
    assert await svc.handle(Batch(events)) == []
    assert repo.docs["M1"]["rev"] == rev and repo.docs["M1"]["event_count"] == 2
    foreign = ev("progressed", {"milestone_id": "M1", "percent_complete": 99, "as_of": NOW.isoformat()}, agency="dopa")
    [refused] = await svc.handle(Batch([foreign]))
    assert refused.error.reason == "agency_not_owner" and repo.docs["M1"]["percent_complete"] == 50
    # Facts before the plan are kept (status unplanned), then folded in when the plan arrives.
    early = ev("progressed", {"milestone_id": "M2", "percent_complete": 20, "as_of": NOW.isoformat()})
    await svc.handle(Batch([early]))
    assert repo.docs["M2"]["status"] == "unplanned"
    await svc.handle(Batch([plan("M2", date(2026, 12, 31))]))
    assert repo.docs["M2"]["status"] == "in_progress" and repo.docs["M2"]["percent_complete"] == 20


async def test_two_replicas_publish_each_alert_once_and_reschedule_clears(world):
    repo, pub, clock, a, b = world
    due = date(2026, 3, 10)
    await a.handle(Batch([plan("M1", due), plan("M2", due), plan("M3", date(2026, 9, 30), deps=["M1"])]))
    await a.handle(Batch([ev("rescheduled", {"milestone_id": "M2", "new_due_date": "2026-04-30", "reason": "งบ"})]))
    clock.now = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # end of 10 March in Bangkok
    await a.sweep()
    await b.sweep()
    await b.rescan()
    ids = sorted(e.id for e in pub.sent)
    assert ids == ["at_risk:M3:2026-09-30", "missed:M1:2026-03-10"]
    missed = next(e for e in pub.sent if e.type == "roadmap.milestone.missed")
    assert missed.source == "/services/roadmap/watcher" and missed.agency == "dga"
    assert missed.data.days_late == 1  # detected on 11 March, Bangkok: the first day late
    assert repo.docs["M2"]["status"] == "planned"
    # Completion two days late: recovered once; the dependant is no longer at risk.
    clock.now += timedelta(days=2)
    await b.handle(Batch([ev("completed", {"milestone_id": "M1", "completed_on": "2026-03-12"}, time=clock.now)]))
    await a.rescan()
    recovered = [e for e in pub.sent if e.type == "roadmap.milestone.recovered"]
    assert [e.id for e in recovered] == ["recovered:M1:2026-03-10"] and recovered[0].data.days_late == 2
    assert repo.docs["M3"]["status"] == "planned"


async def test_crash_between_claim_and_publish_is_republished_with_same_id(world):
    repo, pub, _clock, a, b = world
    pub.fail = True
    await a.handle(Batch([plan("M1", date(2026, 2, 1))]))  # already past: missed at once, publish fails
    await a.sweep()
    assert pub.sent == [] and repo.claims["missed:M1:2026-02-01"]["state"] == "claimed"
    pub.fail = False
    await b.rescan()  # b sees another replica's old claim and republishes it
    assert [e.id for e in pub.sent] == ["missed:M1:2026-02-01"]
    assert repo.claims["missed:M1:2026-02-01"]["state"] == "published"
    await a.rescan()
    assert len(pub.sent) == 1


async def test_figures_per_workstream_and_programme(world):
    *_, svc, _ = world
    await svc.handle(Batch([plan("M1", date(2026, 2, 1)), plan("M2", date(2026, 9, 30))]))
    stats = await svc.refresh_stats()
    ws = stats["workstreams"]["technology_access"]
    assert ws["counts"] == {"missed": 1, "planned": 1} and ws["overdue_days"] == 28
    assert ws["confidence"]["rating"] == "red" and stats["programme"]["confidence"]["value"] == 4  # 0 green .. 4 red
    assert stats["workstreams"]["public_awareness"]["confidence"]["rating"] == "green"


_EVENTS = [
    plan("P", date(2026, 6, 30)),
    ev("progressed", {"milestone_id": "P", "percent_complete": 10, "as_of": "2026-01-10T00:00:00+07:00"}, id="p1"),
    ev("progressed", {"milestone_id": "P", "percent_complete": 30, "as_of": "2026-02-10T00:00:00+07:00"}, id="p2"),
    ev("progressed", {"milestone_id": "P", "percent_complete": 25, "as_of": "2026-02-01T00:00:00+07:00"}, id="p3"),
    ev("rescheduled", {"milestone_id": "P", "new_due_date": "2026-08-31", "reason": "งบ"}, id="r1",
       time=NOW - timedelta(days=3)),
    ev("rescheduled", {"milestone_id": "P", "new_due_date": "2026-07-31", "reason": "เร่ง"}, id="r2",
       time=NOW - timedelta(days=1)),
    ev("progressed", {"milestone_id": "P", "percent_complete": 80, "as_of": "2026-02-20T00:00:00+07:00"},
       agency="dopa", id="foreign"),
]
_VOLATILE = ("rev", "updated_at", "status_since", "created_at", "facts", "fact_bytes")  # the facts kept, and their size


@hyp_settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(len(_EVENTS)))), st.lists(st.integers(0, len(_EVENTS) - 1), max_size=6),
       st.lists(st.integers(1, 4), min_size=1, max_size=8))
def test_service_applies_any_order_and_batching_to_the_same_document(order, dups, sizes):
    """The incremental path (batches, duplicates, refusals) ends where the pure fold of all events does."""
    import asyncio

    def final(events, cuts):
        repo, pub, clock = FakeRepo(), FakePublisher(), Clock(NOW)
        svc = service(repo, pub, clock)

        async def go():
            i, k = 0, 0
            while i < len(events):
                n = cuts[k % len(cuts)]
                await svc.handle(Batch(events[i:i + n]))
                i, k = i + n, k + 1
        asyncio.run(go())
        return {k: v for k, v in repo.docs["P"].items() if k not in _VOLATILE}

    expected = final(_EVENTS, [len(_EVENTS)])
    got = final([_EVENTS[i] for i in order] + [_EVENTS[i] for i in dups], sizes)
    # A foreign report is refused when the plan is known, or kept-but-ignored when it came first: same projection
    # apart from the `ignored` record and the count of facts kept.
    for doc in (expected, got):
        doc.pop("ignored"), doc.pop("event_count")
    assert got == expected
    assert expected["percent_complete"] == 30 and expected["due_date"] == "2026-07-31"


async def test_ownership_is_one_rule_refused_live_and_ignored_when_the_plan_comes_late(world):
    repo, _pub, _clock, svc, _ = world
    # Sent with a programme-office key: the intake marked it with that authority (an OPDC agency key would not).
    pmo = with_authority(ev("progressed", {"milestone_id": "M3", "percent_complete": 10, "as_of": NOW.isoformat()},
                            agency=PROGRAMME_OFFICE, id="pmo"), PROGRAMME_OFFICE_AUTHORITY)
    # Before the plan nobody owns M3: the service keeps the report, the projection decides later.
    early = ev("progressed", {"milestone_id": "M3", "percent_complete": 80, "as_of": NOW.isoformat()},
               agency="dopa", id="early")
    assert await svc.handle(Batch([early, pmo])) == []
    assert await svc.handle(Batch([plan("M3", date(2026, 12, 31))])) == []
    doc = repo.docs["M3"]
    assert doc["ignored"] == [{"event": "/agencies/dopa/pm|early", "kind": "progressed", "reason": domain.NOT_OWNER}]
    assert doc["percent_complete"] == 10  # the programme office may report; dopa's 80 % does not count
    late = ev("progressed", {"milestone_id": "M3", "percent_complete": 90, "as_of": NOW.isoformat()},
              agency="dopa", id="late")
    [refused] = await svc.handle(Batch([late]))
    assert refused.error.reason == domain.NOT_OWNER == "agency_not_owner"


async def test_a_milestone_keeps_a_bounded_share_of_progress_reports_and_can_still_be_completed(world, monkeypatch):
    """One milestone's reports are bounded: progress reports past their share are refused `milestone_full` alone
    (the others of the batch and other milestones go on), and the milestone can still be completed; the size it
    holds is kept with it and equals a fresh measure of its facts, and a rebuild refuses the same reports."""
    repo, _pub, _clock, svc, _ = world
    monkeypatch.setattr(domain, "PROGRESS_MAX_BYTES", 20_000)
    note = "ความคืบหน้า " * 150  # about 5 KB of BSON per report
    reports = [ev("progressed", {"milestone_id": "BIG", "percent_complete": i, "as_of": NOW.isoformat(), "note": note},
                  id=f"p-{i}") for i in range(1, 9)]
    refused = await svc.handle(Batch([plan("BIG", date(2026, 6, 30)), *reports[:5], plan("OTHER", date(2026, 7, 1))]))
    assert [r.event.id for r in refused] == ["p-4", "p-5"] and {r.error.reason for r in refused} == {"milestone_full"}
    assert "OTHER" in repo.docs and repo.docs["BIG"]["percent_complete"] == 3
    refused = await svc.handle(Batch(reports[5:]))
    assert [r.event.id for r in refused] == ["p-6", "p-7", "p-8"]
    done = ev("completed", {"milestone_id": "BIG", "completed_on": "2026-03-01"})
    assert await svc.handle(Batch([done])) == []
    big = repo.docs["BIG"]
    assert big["status"] == "completed" and big["event_count"] == 5
    assert big["fact_bytes"] == domain.FactBytes.of(big["facts"]).as_field()
    assert big["fact_bytes"]["progress"] <= 20_000
