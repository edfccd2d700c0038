"""Status rules, projection, order independence and delivery confidence of the roadmap (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts.agencies import PROGRAMME_OFFICE
from services.contracts.envelope import PROGRAMME_OFFICE_AUTHORITY
from services.roadmap import domain
from services.roadmap.confidence import Rating, WeightTally, confidence, tally_of
from services.roadmap.domain import Status, project, project_finish

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
DUE = date(2026, 3, 31)
DEADLINE = datetime(2026, 3, 31, 17, 0, tzinfo=UTC)  # 00:00 Bangkok on 1 April


def fact(type_: str, eid: str, data: dict, *, t: datetime = T0, agency: str = "dga") -> dict:
    return domain.make_fact(type_=f"roadmap.milestone.{type_}", source=f"/agencies/{agency}/pm", event_id=eid,
                            agency=agency, time=t, data=data)


def planned(due: date = DUE, eid: str = "plan", t: datetime = T0, deps=()) -> dict:
    return fact("planned", eid, {"milestone_id": "M", "title_th": "ทดสอบ", "workstream": "technology_access",
                                 "owner_agency": "dga", "due_date": due.isoformat(), "weight": 2,
                                 "depends_on": list(deps)}, t=t)


def progress(pct: float, as_of: datetime, eid: str | None = None, t: datetime | None = None, agency: str = "dga") -> dict:
    return fact("progressed", eid or f"p{pct}-{as_of.isoformat()}",
                {"milestone_id": "M", "percent_complete": pct, "as_of": as_of.isoformat()}, t=t or as_of, agency=agency)


def completed(on: date, t: datetime, eid: str = "done") -> dict:
    return fact("completed", eid, {"milestone_id": "M", "completed_on": on.isoformat()}, t=t)


def rescheduled(new_due: date, t: datetime, eid: str = "resched") -> dict:
    return fact("rescheduled", eid, {"milestone_id": "M", "new_due_date": new_due.isoformat(), "reason": "งบ"}, t=t)


def status(facts, now, deps=None) -> str:
    return project("M", facts, now, deps)["status"]


def test_status_lifecycle_planned_in_progress_completed():
    now = T0 + timedelta(days=10)
    assert status([planned()], now) == Status.planned
    on_track = [planned(), progress(50, T0 + timedelta(days=9))]
    assert status(on_track, now) == Status.in_progress
    doc = project("M", on_track + [completed(date(2026, 3, 1), T0 + timedelta(days=60))], now)
    assert doc["status"] == Status.completed and doc["percent_complete"] == 100 and doc["days_late"] == 0


def test_at_risk_when_projected_finish_after_due():
    # 10 points in 50 days: 100 % would take ~450 more days, long after 31 March.
    facts = [planned(), progress(5, T0 + timedelta(days=10)), progress(10, T0 + timedelta(days=60))]
    doc = project("M", facts, T0 + timedelta(days=61))
    assert doc["status"] == Status.at_risk
    assert doc["status_reasons"] == ["projected_finish_after_due"]
    assert date.fromisoformat(doc["projected_finish"]) > DUE
    # Fast progress: finishes in time.
    fast = [planned(), progress(40, T0 + timedelta(days=10)), progress(80, T0 + timedelta(days=30))]
    assert status(fast, T0 + timedelta(days=31)) == Status.in_progress


def test_stalled_progress_is_at_risk_and_single_report_uses_plan_start():
    stalled = [planned(), progress(30, T0 + timedelta(days=10)), progress(30, T0 + timedelta(days=20))]
    doc = project("M", stalled, T0 + timedelta(days=21))
    assert doc["status"] == Status.at_risk and doc["status_reasons"] == ["progress_stalled"]
    # One report: rate measured from the plan's start (0 % at T0): 50 % in 20 days -> done by early February.
    one = project("M", [planned(), progress(50, T0 + timedelta(days=20))], T0 + timedelta(days=21))
    assert one["status"] == Status.in_progress and one["projected_finish"] == "2026-02-10"


def test_missed_exactly_when_bangkok_due_day_ends():
    facts = [planned(), progress(10, T0 + timedelta(days=80))]
    assert status(facts, DEADLINE - timedelta(microseconds=1)) != Status.missed
    doc = project("M", facts, DEADLINE)
    assert doc["status"] == Status.missed
    assert doc["timeline"][-1] == {"status": "missed", "at": DEADLINE, "cause": "deadline_passed"}


def test_completion_after_missed_records_lateness_and_timeline():
    facts = [planned(), completed(date(2026, 4, 3), DEADLINE + timedelta(days=3))]
    doc = project("M", facts, DEADLINE + timedelta(days=4))
    assert doc["status"] == Status.completed and doc["days_late"] == 3
    assert [t["status"] for t in doc["timeline"]] == ["planned", "missed", "completed"]
    assert domain.alerts_due(doc) == [("missed", "2026-03-31"), ("recovered", "2026-03-31")]


def test_reschedule_keeps_baseline_and_clears_missed():
    facts = [planned(), rescheduled(date(2026, 6, 30), T0 + timedelta(days=30))]
    doc = project("M", facts, DEADLINE + timedelta(days=1))
    assert doc["status"] == Status.planned
    assert doc["baseline_due_date"] == "2026-03-31" and doc["due_date"] == "2026-06-30"
    assert [h["change"] for h in doc["due_history"]] == ["baseline", "rescheduled"]
    # A reschedule after the deadline: missed first, then open again for the new due date.
    late = [planned(), rescheduled(date(2026, 6, 30), DEADLINE + timedelta(days=2))]
    late_doc = project("M", late, DEADLINE + timedelta(days=3))
    assert late_doc["status"] == Status.planned
    assert [t["status"] for t in late_doc["timeline"]] == ["planned", "missed", "planned"]


def test_stale_progress_never_overwrites_newer_and_progress_after_completion_is_ignored():
    newer = progress(60, T0 + timedelta(days=20), eid="new", t=T0 + timedelta(days=20))
    stale = progress(30, T0 + timedelta(days=10), eid="old", t=T0 + timedelta(days=40))  # arrives later
    doc = project("M", [planned(), newer, stale], T0 + timedelta(days=41))
    assert doc["percent_complete"] == 60
    assert [p["percent_complete"] for p in doc["progress_history"]] == [30, 60]
    after = progress(20, datetime(2026, 3, 5, 3, tzinfo=UTC), eid="after")
    done = project("M", [planned(), newer, completed(date(2026, 3, 1), datetime(2026, 3, 1, 5, tzinfo=UTC)), after],
                   T0 + timedelta(days=70))
    assert done["status"] == Status.completed and done["percent_complete"] == 100
    assert done["ignored"] == [{"event": after["key"], "kind": "progressed", "reason": "progress_after_completion"}]


def test_dependency_missed_or_at_risk_puts_milestone_at_risk():
    facts = [planned(deps=["A", "B"])]
    now = T0 + timedelta(days=1)
    assert status(facts, now, {"A": "completed", "B": "in_progress"}) == Status.planned
    doc = project("M", facts, now, {"A": "missed", "B": "in_progress"})
    assert doc["status"] == Status.at_risk and doc["blocked_by"] == ["A"]
    assert doc["status_reasons"] == ["dependency_at_risk_or_missed"]
    assert domain.alerts_due(doc) == [("at_risk", DUE.isoformat())]


def test_cancelled_and_unplanned_and_foreign_agency():
    cancel = fact("cancelled", "c", {"milestone_id": "M", "reason": "มติ"}, t=T0 + timedelta(days=1))
    assert status([planned(), cancel], DEADLINE + timedelta(days=1)) == Status.cancelled
    early = progress(20, T0 + timedelta(days=1))
    assert status([early], T0 + timedelta(days=2)) == Status.unplanned
    foreign = progress(90, T0 + timedelta(days=2), agency="dopa")
    opdc = {**progress(25, T0 + timedelta(days=3), agency="opdc"), "authority": PROGRAMME_OFFICE_AUTHORITY}
    doc = project("M", [planned(), foreign, opdc], T0 + timedelta(days=4))
    assert doc["percent_complete"] == 25
    assert doc["ignored"] == [{"event": foreign["key"], "kind": "progressed", "reason": "agency_not_owner"}]
    # OPDC's agency code alone is one agency among others (issue 17.6): without the authority it is ignored.
    plain = progress(50, T0 + timedelta(days=3), eid="plain", agency="opdc")
    assert project("M", [planned(), plain], T0 + timedelta(days=4))["ignored"][0]["reason"] == "agency_not_owner"


def test_projection_window_uses_recent_rate():
    points = [(T0, 0.0), (T0 + timedelta(days=100), 10.0), (T0 + timedelta(days=110), 30.0)]
    proj = project_finish(points, origin=None)
    assert proj.rate_per_day == 2.0  # only the last 30 days count
    assert proj.finish == date(2026, 5, 26)
    assert project_finish([], None) is None


def test_alert_ids_are_deterministic():
    assert domain.alert_id("missed", "M-1", "2026-09-30") == "missed:M-1:2026-09-30"


def _tally(total, missed=0.0, at_risk=0.0, completed=0.0, on_time=0.0) -> WeightTally:
    return WeightTally(total=total, missed=missed, at_risk=at_risk, completed=completed, completed_on_time=on_time)


def test_confidence_rule_thresholds():
    # Boundaries of every level: tests/unit/test_roadmap_confidence.py.
    assert confidence(WeightTally()).rating is Rating.green
    assert confidence(_tally(10)).rating is Rating.green
    assert confidence(_tally(10, completed=5, on_time=5)).rating is Rating.green
    assert confidence(_tally(10, at_risk=0.9)).rating is Rating.amber_green
    assert confidence(_tally(100, missed=5)).rating is Rating.amber
    assert confidence(_tally(100, at_risk=10)).rating is Rating.amber
    assert confidence(_tally(100, completed=10, on_time=8)).rating is Rating.amber
    amber_red = confidence(_tally(100, missed=10))
    assert amber_red.rating is Rating.amber_red and amber_red.reasons == ["missed_share>=10%"]
    assert confidence(_tally(100, missed=5, at_risk=25)).rating is Rating.amber_red
    assert confidence(_tally(100, completed=10, on_time=6)).rating is Rating.amber_red
    assert confidence(_tally(100, missed=20)).rating is Rating.red
    assert confidence(_tally(100, completed=10, on_time=4)).rating is Rating.red


def test_tally_of_documents():
    assert tally_of({"status": "completed", "weight": 2, "days_late": 0}).completed_on_time == 2
    assert tally_of({"status": "completed", "weight": 2, "days_late": 3}).completed_on_time == 0
    assert tally_of({"status": "cancelled", "weight": 2}).total == 0


# --- order independence ------------------------------------------------------------------------

def _all_facts() -> list[dict]:
    day = timedelta(days=1)
    return [
        planned(t=T0),
        planned(due=date(2026, 4, 30), eid="plan-v2", t=T0 + day),
        progress(10, T0 + 5 * day, eid="p1", t=T0 + 30 * day),
        progress(40, T0 + 20 * day, eid="p2"),
        progress(35, T0 + 20 * day, eid="p2b", t=T0 + 21 * day),  # same as_of, later event: wins
        progress(55, T0 + 40 * day, eid="p3"),
        rescheduled(date(2026, 5, 15), T0 + 45 * day, eid="r1"),
        rescheduled(date(2026, 5, 31), T0 + 46 * day, eid="r2"),
        progress(70, T0 + 50 * day, eid="p4"),
        completed(date(2026, 5, 20), T0 + 140 * day),
        progress(99, T0 + 150 * day, eid="late"),
        progress(99, T0 + 10 * day, eid="foreign", agency="dopa"),
    ]


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(12))), st.lists(st.integers(0, 11), max_size=12), st.integers(0, 200))
def test_any_permutation_with_duplicates_gives_the_same_document(order, dups, now_days):
    facts = _all_facts()
    now = T0 + timedelta(days=now_days)
    expected = project("M", facts, now, {})
    shuffled = [facts[i] for i in order] + [dict(facts[i]) for i in dups]
    assert project("M", shuffled, now, {}) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(range(12)), min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_subsets_in_any_order_project_the_same(indices, rnd):
    facts = _all_facts()
    chosen = [facts[i] for i in indices]
    shuffled = list(chosen)
    rnd.shuffle(shuffled)
    now = T0 + timedelta(days=100)
    assert project("M", shuffled, now) == project("M", chosen, now)


def test_completion_reported_after_deadline_is_a_recovery_even_if_dated_on_time():
    facts = [planned(), completed(DUE, DEADLINE + timedelta(hours=5))]
    doc = project("M", facts, DEADLINE + timedelta(days=1))
    assert doc["status"] == Status.completed and doc["days_late"] == 0
    assert doc["completion_reported_after_deadline"] and doc["alert_kind"] == "recovered"
    on_time = project("M", [planned(), completed(DUE, DEADLINE - timedelta(hours=1))], DEADLINE + timedelta(days=1))
    assert on_time["alert_kind"] is None and domain.alerts_due(on_time) == []


# --- the named steps of project() ------------------------------------------------------------------

def test_ownership_rule_owner_and_programme_office_only_once_planned():
    assert domain.may_report(None, "dopa")  # no plan yet: kept until the plan says whose it is
    assert domain.may_report("dga", "dga") and domain.may_report("dga", "dopa", PROGRAMME_OFFICE_AUTHORITY)
    assert not domain.may_report("dga", "dopa")
    assert not domain.may_report("dga", PROGRAMME_OFFICE)  # the agency code grants nothing; the key's role does


def test_accept_facts_deduplicates_sorts_and_sets_aside_other_agencies():
    late, early = progress(10, T0 + timedelta(days=3), eid="a"), progress(20, T0 + timedelta(days=2), eid="b")
    foreign = progress(99, T0 + timedelta(days=1), eid="f", agency="dopa")
    accepted = domain.accept_facts([late, planned(), early, late, foreign, planned()])
    assert accepted.owner == "dga" and accepted.event_count == 4
    assert [f["key"] for f in accepted.facts] == [planned()["key"], early["key"], late["key"]]
    assert accepted.ignored == [{"event": foreign["key"], "kind": "progressed", "reason": domain.NOT_OWNER}]
    assert domain.accept_facts([foreign]).facts == [foreign]  # before the plan: nobody owns it yet


def test_progress_points_one_per_as_of_and_none_after_completion():
    as_of = T0 + timedelta(days=5)
    first, second = progress(30, as_of, eid="x", t=as_of), progress(25, as_of, eid="y", t=as_of + timedelta(hours=1))
    after = progress(90, T0 + timedelta(days=40), eid="z")
    kept, ignored = domain.progress_points([second, after, first], completed_on=date(2026, 1, 20))
    assert kept == [second]  # same as_of: the later event wins, even if it reports less
    assert ignored == [{"event": after["key"], "kind": "progressed", "reason": "progress_after_completion"}]
    assert domain.progress_points([after, first], None)[0] == [first, after]


def test_replay_records_baseline_replan_reschedule_and_the_deadline_moment():
    facts = [planned(), planned(due=date(2026, 3, 20), eid="v2", t=T0 + timedelta(days=1)),
             rescheduled(date(2026, 3, 25), T0 + timedelta(days=2))]
    replay = domain.replay_facts(facts, T0 + timedelta(days=100))
    assert [(h["change"], h["due_date"]) for h in replay.due_history] == [
        ("baseline", "2026-03-31"), ("replanned", "2026-03-20"), ("rescheduled", "2026-03-25")]
    assert replay.state.due == date(2026, 3, 25)
    assert replay.timeline[-1] == {"status": "missed", "at": datetime(2026, 3, 25, 17, 0, tzinfo=UTC),
                                   "cause": "deadline_passed"}


def test_status_and_reasons_raise_only_open_milestones_for_dependencies():
    state = domain.replay_facts([planned(deps=["A", "B"])], T0).state
    verdict = domain.status_and_reasons(state, T0, {"A": "missed", "B": "completed"})
    assert verdict.status is Status.at_risk and verdict.blocked_by == ["A"]
    assert verdict.reasons == ["dependency_at_risk_or_missed"]
    late = domain.status_and_reasons(state, DEADLINE, {"A": "missed"})
    assert late.status is Status.missed and late.reasons == ["deadline_passed"]  # missed outranks at risk


def test_document_is_the_steps_composed():
    facts = [planned(), progress(40, T0 + timedelta(days=20)), completed(date(2026, 4, 2), T0 + timedelta(days=95))]
    doc = project("M", facts, T0 + timedelta(days=96))
    assert doc["status"] == "completed" and doc["percent_complete"] == 100.0 and doc["days_late"] == 2
    assert doc["alert_kind"] == "recovered" and doc["open_deadline"] is None and doc["event_count"] == 3
    assert [p["percent_complete"] for p in doc["progress_history"]] == [40.0]
