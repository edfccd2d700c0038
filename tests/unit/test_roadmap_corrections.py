"""Corrections as events and alerts as a function of the facts (pure): retractions, reschedules after completion,
and the property that any order and any duplication of a fact set gives the same record and the same alerts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts.envelope import PROGRAMME_OFFICE_AUTHORITY
from services.roadmap import corrections, domain
from services.roadmap.domain import Status, project

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
DUE = date(2026, 3, 31)
DEADLINE = datetime(2026, 3, 31, 17, 0, tzinfo=UTC)  # 00:00 Bangkok on 1 April
DAY = timedelta(days=1)
# Fields that record the corrections themselves: everything else must equal the record without the facts.
_BOOKKEEPING = ("event_count", "retractions", "ignored")


def fact(kind: str, eid: str, data: dict, *, t: datetime = T0, agency: str = "dga", authority: str | None = None) -> dict:
    type_ = "roadmap.fact.retracted" if kind == "retracted" else f"roadmap.milestone.{kind}"
    return domain.make_fact(type_=type_, source=f"/agencies/{agency}/pm", event_id=eid, agency=agency, time=t,
                            data={"milestone_id": "M", **data}, authority=authority)


def planned(due: date = DUE, eid: str = "plan", t: datetime = T0) -> dict:
    return fact("planned", eid, {"title_th": "ทดสอบ", "workstream": "technology_access", "owner_agency": "dga",
                                 "due_date": due.isoformat(), "depends_on": []}, t=t)


def progress(pct: float, as_of: datetime, eid: str) -> dict:
    return fact("progressed", eid, {"percent_complete": pct, "as_of": as_of.isoformat()}, t=as_of)


def completed(on: date, t: datetime, eid: str = "done") -> dict:
    return fact("completed", eid, {"completed_on": on.isoformat()}, t=t)


def rescheduled(new_due: date, t: datetime, eid: str = "resched") -> dict:
    return fact("rescheduled", eid, {"new_due_date": new_due.isoformat(), "reason": "งบ"}, t=t)


def retraction(target: dict, eid: str = "undo", *, agency: str = "dga", t: datetime = T0 + 50 * DAY,
               authority: str | None = None) -> dict:
    source, event_id = target["key"].split("|", 1)
    return fact("retracted", eid, {"retracted_source": source, "retracted_id": event_id, "reason": "พิมพ์ผิด"},
                t=t, agency=agency, authority=authority)


def derived(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in _BOOKKEEPING}


# --- retractions ---------------------------------------------------------------------------------

def test_a_wrong_progress_report_retracted_is_as_if_never_sent_in_any_order():
    good = [planned(), progress(20, T0 + 10 * DAY, "p1"), progress(40, T0 + 30 * DAY, "p2")]
    wrong = progress(5, T0 + 40 * DAY, "typo")  # stalls the rate: at risk
    undo = retraction(wrong)
    now = T0 + 60 * DAY
    assert project("M", good + [wrong], now)["status"] == Status.at_risk
    expected = project("M", good, now)
    for order in (good + [wrong, undo], [undo] + good + [wrong], [wrong, undo] + good, [undo, wrong, undo] + good):
        doc = project("M", order, now)
        assert derived(doc) == derived(expected)
        assert doc["retractions"] == [{"event": undo["key"], "retracts": wrong["key"], "reason": "พิมพ์ผิด",
                                       "effect": "applied"}]
        assert doc["event_count"] == 5 and doc["ignored"] == []


def test_a_retraction_before_its_fact_is_kept_pending_then_applies():
    wrong = completed(date(2026, 2, 1), T0 + 31 * DAY)
    undo = retraction(wrong, t=T0 + 32 * DAY)
    doc = project("M", [planned(), undo], T0 + 40 * DAY)
    assert doc["retractions"][0]["effect"] == "pending" and doc["status"] == Status.planned
    both = project("M", [planned(), undo, wrong], T0 + 40 * DAY)
    assert both["status"] == Status.planned and both["completed_on"] is None
    assert both["retractions"][0]["effect"] == "applied"


def test_retracting_a_retraction_and_another_agencys_fact_is_refused_but_the_office_may():
    wrong = progress(90, T0 + 10 * DAY, "typo")
    undo = retraction(wrong)
    undo_undo = retraction(undo, "undo-undo", t=T0 + 51 * DAY)
    doc = project("M", [planned(), wrong, undo, undo_undo], T0 + 60 * DAY)
    assert doc["percent_complete"] == 0  # the first retraction stands
    assert {"event": undo_undo["key"], "kind": "retracted", "reason": "cannot_retract_retraction"} in doc["ignored"]
    # dopa cannot retract dga's report, whether or not it is known yet (the source namespace names the agency).
    foreign = retraction(wrong, "dopa-undo", agency="dopa")
    for facts in ([planned(), wrong, foreign], [planned(), foreign]):
        doc = project("M", facts, T0 + 60 * DAY)
        assert {"event": foreign["key"], "kind": "retracted", "reason": "retraction_not_same_agency"} in doc["ignored"]
    assert project("M", [planned(), wrong, foreign], T0 + 60 * DAY)["percent_complete"] == 90
    # An ordinary OPDC key is one agency among others; a programme-office key may correct anyone's facts.
    plain_opdc = retraction(wrong, "opdc-undo", agency="opdc")
    assert project("M", [planned(), wrong, plain_opdc], T0 + 60 * DAY)["percent_complete"] == 90
    office = retraction(wrong, "office-undo", agency="opdc", authority=PROGRAMME_OFFICE_AUTHORITY)
    assert project("M", [planned(), wrong, office], T0 + 60 * DAY)["percent_complete"] == 0
    office_undo = retraction(office, "office-undo-undo", agency="opdc", authority=PROGRAMME_OFFICE_AUTHORITY)
    assert corrections.refusal(office_undo, office) == corrections.RETRACTION_OF_RETRACTION


# --- reschedule after completion; alerts from the facts -------------------------------------------

def test_completed_on_time_then_rescheduled_into_the_past_is_never_missed_nor_recovered():
    facts = [planned(), completed(DUE - 5 * DAY, DEADLINE - 5 * DAY), rescheduled(date(2026, 2, 1), DEADLINE - 4 * DAY)]
    doc = project("M", facts, DEADLINE + 30 * DAY)
    assert doc["status"] == Status.completed and doc["days_late"] == 0 and doc["due_date"] == DUE.isoformat()
    assert [h["change"] for h in doc["due_history"]] == ["baseline", "rescheduled_after_completion"]
    assert doc["reschedule_count"] == 0 and doc["latest_reason"] is None
    assert domain.alerts_due(doc) == [] and doc["alert_kind"] is None


def test_a_late_completion_stays_late_after_a_later_reschedule():
    late = completed(DUE + 10 * DAY, DEADLINE + 10 * DAY)
    facts = [planned(), late, rescheduled(DUE + 20 * DAY, DEADLINE + 11 * DAY)]
    doc = project("M", facts, DEADLINE + 30 * DAY)
    assert doc["days_late"] == 10 and doc["due_date"] == DUE.isoformat()
    assert domain.alerts_due(doc) == [("missed", DUE.isoformat()), ("recovered", DUE.isoformat())]


def test_missed_then_moved_then_done_on_time_keeps_the_miss_without_a_recovery():
    facts = [planned(), rescheduled(DUE + 30 * DAY, DEADLINE + 2 * DAY), completed(DUE + 25 * DAY, DEADLINE + 25 * DAY)]
    doc = project("M", facts, DEADLINE + 40 * DAY)
    assert doc["days_late"] == 0
    # The miss stays in history; moving the missed date ends it (its reminders stop): rebaselined, no recovery.
    assert domain.alerts_due(doc) == [("missed", DUE.isoformat()), ("rebaselined", DUE.isoformat())]
    assert doc["alerts_due"][0]["id"] == f"missed:M:{DUE.isoformat()}"


def test_a_reschedule_stamped_before_the_deadline_means_it_was_never_missed_whenever_it_arrives():
    moved = rescheduled(DUE + 30 * DAY, DEADLINE - DAY)
    for facts in ([planned(), moved], [moved, planned()]):
        assert domain.alerts_due(project("M", facts, DEADLINE + 5 * DAY)) == []


def test_at_risk_is_about_the_current_state_and_a_past_risk_loaded_later_is_not_alerted():
    slow = progress(5, T0 + 20 * DAY, "slow")  # 5 % in 20 days: far behind, at risk then
    caught_up = progress(80, T0 + 40 * DAY, "fast")
    doc = project("M", [planned(), slow], T0 + 21 * DAY)
    assert doc["status"] == Status.at_risk and domain.alerts_due(doc) == [("at_risk", DUE.isoformat())]
    now_fine = project("M", [planned(), slow, caught_up], T0 + 41 * DAY)
    assert now_fine["status"] == Status.in_progress and domain.alerts_due(now_fine) == []


# --- the property ---------------------------------------------------------------------------------

@st.composite
def fact_sets(draw) -> list[dict]:
    """A random history of one milestone: plans, progress, reschedules, completions, cancellations, retractions."""
    def when(lo: int = 0, hi: int = 150) -> datetime:
        return T0 + timedelta(days=draw(st.integers(lo, hi)), hours=draw(st.integers(0, 23)))

    def day(lo: int = 40, hi: int = 140) -> date:
        return (T0 + timedelta(days=draw(st.integers(lo, hi)))).date()

    facts = [planned(day(), t=when(0, 5))]
    if draw(st.booleans()):
        facts.append(planned(day(), eid="plan-v2", t=when(0, 30)))
    for i in range(draw(st.integers(0, 5))):
        facts.append(progress(float(draw(st.integers(0, 100))), when(), f"p{i}"))
    for i in range(draw(st.integers(0, 3))):
        facts.append(rescheduled(day(), when(), f"r{i}"))
    for i in range(draw(st.integers(0, 2))):
        facts.append(completed(day(20, 150), when(), f"c{i}"))
    if draw(st.integers(0, 4)) == 0:
        facts.append(fact("cancelled", "x", {"reason": "มติ"}, t=when()))
    for i in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(facts))
        facts.append(retraction(target, f"undo{i}", t=when()))
    if draw(st.booleans()):  # one retraction of a fact never sent, one of a retraction
        facts.append(fact("retracted", "ghost", {"retracted_source": "/agencies/dga/pm", "retracted_id": "nope"}))
    return facts


@settings(max_examples=300, deadline=None)
@given(fact_sets(), st.randoms(use_true_random=False), st.lists(st.integers(0, 30), max_size=8), st.integers(0, 200))
def test_any_order_and_duplication_gives_the_same_record_and_the_same_alerts(facts, rnd, dups, now_days):
    now = T0 + timedelta(days=now_days)
    expected = project("M", facts, now)
    shuffled = list(facts) + [dict(facts[i % len(facts)]) for i in dups]
    rnd.shuffle(shuffled)
    got = project("M", shuffled, now)
    assert got == expected
    alerts = domain.alerts_due(got)
    assert alerts == domain.alerts_due(expected)
    # The rules the alerts keep, whatever the facts: one per kind and due date; recovered only after a real miss
    # of that due date; days late as the record says.
    assert len(alerts) == len(set(alerts))
    assert all(("missed", d) in alerts for k, d in alerts if k == "recovered")
    if ("recovered", got["due_date"]) in alerts and got["completed_on"]:
        assert got["days_late"] == max(0, (date.fromisoformat(got["completed_on"]) - date.fromisoformat(got["due_date"])).days)


@settings(max_examples=100, deadline=None)
@given(fact_sets(), st.integers(0, 200))
def test_alerts_only_grow_as_time_passes(facts, now_days):
    """A missed or recovered alert the facts call for at one instant is still called for later.
    (`now` after every fact: a fact stamped in the future is refused at the edge.)"""
    now = max(domain.effective_time(f) for f in facts) + timedelta(days=now_days)
    earlier = set(domain.alerts_due(project("M", facts, now)))
    later = set(domain.alerts_due(project("M", facts, now + 30 * DAY)))
    history = {a for a in earlier if a[0] != "at_risk"}  # at risk is the current state: a deadline ends it
    assert history <= later
