"""Acknowledgements in the milestone record (roadmap.milestone.acknowledged from the notifier): pure domain."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from services.roadmap import domain
from services.roadmap.domain import project

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
DUE = date(2026, 3, 31)


def plan(due: date = DUE) -> dict:
    return domain.make_fact(type_="roadmap.milestone.planned", source="/agencies/dga/pm", event_id="plan",
                            agency="dga", time=T0, data={"milestone_id": "M", "title_th": "ทดสอบ",
                                                         "workstream": "technology_access", "owner_agency": "dga",
                                                         "due_date": due.isoformat()})


def progress(pct: float, as_of: datetime, eid: str) -> dict:
    return domain.make_fact(type_="roadmap.milestone.progressed", source="/agencies/dga/pm", event_id=eid,
                            agency="dga", time=as_of, data={"milestone_id": "M", "percent_complete": pct,
                                                            "as_of": as_of.isoformat()})


def acked(at: datetime, *, due: date = DUE, forecast: date | None = None, by: str = "dga-owner", note: str | None = None,
          eid: str | None = None) -> dict:
    data = {"milestone_id": "M", "owner_agency": "dga", "due_date": due.isoformat(), "alert_type": "missed",
            "notification_id": "n1", "acknowledged_by": by, "acknowledged_by_name": "ผู้รับผิดชอบ",
            "acknowledged_at": at.isoformat(), "note": note,
            "forecast_completion": forecast.isoformat() if forecast else None}
    return domain.make_fact(type_="roadmap.milestone.acknowledged", source="/services/notifier",
                            event_id=eid or f"ack-{by}-{at.isoformat()}", agency="dga", time=at, data=data)


def test_a_missed_milestone_shows_who_acknowledged_and_the_owners_forecast():
    now = datetime(2026, 4, 5, 3, 0, tzinfo=UTC)
    at = datetime(2026, 4, 2, 3, 0, tzinfo=UTC)
    doc = project("M", [plan(), acked(at, forecast=date(2026, 4, 30), note="เร่งติดตั้ง")], now)
    assert doc["status"] == "missed"  # an acknowledgement changes no status: it says someone is on it
    assert (doc["acknowledged_by"], doc["acknowledged_at"], doc["acknowledgement_note"]) == ("dga-owner", at, "เร่งติดตั้ง")
    assert doc["projected_finish"] == "2026-04-30" and doc["projected_finish_source"] == "owner_forecast"
    assert doc["forecast_completion"] == "2026-04-30" and len(doc["acknowledgements"]) == 1
    assert [t["status"] for t in doc["timeline"]] == ["planned", "missed"]  # no timeline entry of its own


def test_a_forecast_later_than_the_rate_makes_an_open_milestone_at_risk_and_an_earlier_one_changes_nothing():
    now = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)
    # 50 % after one month: the rate finishes in time (about 1 March).
    facts = [plan(), progress(50, datetime(2026, 1, 31, 3, 0, tzinfo=UTC), "p1")]
    assert project("M", facts, now)["status"] == "in_progress"
    later = project("M", [*facts, acked(now, forecast=date(2026, 4, 15))], now)
    assert later["status"] == "at_risk" and later["status_reasons"] == ["owner_forecast_after_due"]
    assert later["projected_finish"] == "2026-04-15"
    sooner = project("M", [*facts, acked(now, forecast=date(2026, 2, 10))], now)
    assert sooner["status"] == "in_progress" and sooner["projected_finish_source"] == "progress_rate"


def test_an_acknowledgement_of_an_earlier_due_date_stays_in_history_only():
    resched = domain.make_fact(type_="roadmap.milestone.rescheduled", source="/agencies/dga/pm", event_id="r1",
                               agency="dga", time=datetime(2026, 4, 3, 3, 0, tzinfo=UTC),
                               data={"milestone_id": "M", "new_due_date": "2026-06-30", "reason": "งบประมาณ"})
    now = datetime(2026, 4, 5, 3, 0, tzinfo=UTC)
    doc = project("M", [plan(), acked(datetime(2026, 4, 2, 3, 0, tzinfo=UTC), forecast=date(2026, 8, 1)), resched], now)
    assert doc["acknowledged_by"] is None and doc["forecast_completion"] is None
    assert doc["projected_finish_source"] != "owner_forecast"
    assert [a["due_date"] for a in doc["acknowledgements"]] == ["2026-03-31"]


def test_the_record_is_the_same_in_any_order_and_the_first_acknowledgement_names_who():
    now = datetime(2026, 4, 9, 3, 0, tzinfo=UTC)
    facts = [plan(), acked(datetime(2026, 4, 2, 3, 0, tzinfo=UTC), by="dga-owner"),
             acked(datetime(2026, 4, 3, 3, 0, tzinfo=UTC), by="opdc-director", forecast=date(2026, 5, 1)),
             acked(datetime(2026, 4, 2, 3, 0, tzinfo=UTC), by="dga-owner")]  # the same event again
    records = [project("M", list(order), now) for order in itertools.permutations(facts)]
    assert all(r == records[0] for r in records)
    assert records[0]["acknowledged_by"] == "dga-owner" and records[0]["forecast_completion"] == "2026-05-01"
    assert len(records[0]["acknowledgements"]) == 2 and records[0]["event_count"] == 3
    assert now - timedelta(days=7) < records[0]["acknowledgements"][-1]["at"]
