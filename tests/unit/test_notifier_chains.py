"""Escalation chains (services/notifier/domain.py) and office-hours arithmetic (holidays.py): pure."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts.thai_calendar import BANGKOK
from services.notifier.domain import RoutingError, Wait, parse_routing, parse_wait, plan_reminder
from services.notifier.holidays import add_working_hours, is_working_day, load_holidays

HOLIDAYS = load_holidays()


def bkk(*args) -> datetime:
    return datetime(*args, tzinfo=BANGKOK)


def test_working_hours_skip_nights_weekends_and_holidays():
    # Friday 4 Dec 2026 15:00; Monday 7 Dec is a public holiday (substitution for 5 Dec).
    assert date(2026, 12, 7) in HOLIDAYS
    assert add_working_hours(bkk(2026, 12, 4, 15, 0), 8, HOLIDAYS) == bkk(2026, 12, 8, 15, 0)
    assert add_working_hours(bkk(2026, 12, 4, 15, 0), 1.5, HOLIDAYS) == bkk(2026, 12, 4, 16, 30)
    assert add_working_hours(bkk(2026, 12, 4, 15, 0), 1.75, HOLIDAYS) == bkk(2026, 12, 8, 8, 45)
    assert add_working_hours(bkk(2026, 12, 5, 23, 0), 1, HOLIDAYS) == bkk(2026, 12, 8, 9, 30)  # Saturday night
    assert add_working_hours(bkk(2026, 12, 2, 6, 0), 0, HOLIDAYS) == bkk(2026, 12, 2, 8, 30)  # before opening
    # 3 working days from Wednesday 10:00: 6.5 + 8 + 8 hours to Friday evening, the holiday Monday skipped, 1.5 more.
    assert add_working_hours(bkk(2026, 12, 2, 10, 0), 24, HOLIDAYS) == bkk(2026, 12, 8, 10, 0)


@settings(max_examples=200, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1)),
       hours=st.floats(min_value=0, max_value=80))
def test_the_deadline_lies_in_office_hours_and_counts_exactly_the_office_time(start, hours):
    start = start.replace(tzinfo=BANGKOK)
    due = add_working_hours(start, hours, HOLIDAYS).astimezone(BANGKOK)
    assert is_working_day(due.date(), HOLIDAYS)
    assert (8, 30) <= (due.hour, due.minute) and (due.hour, due.minute, due.second) <= (16, 30, 0)
    # Office time between start and due, counted minute by minute per day, equals what was asked.
    counted, day = timedelta(0), start.date()
    while day <= due.date():
        if is_working_day(day, HOLIDAYS):
            opens, closes = bkk(day.year, day.month, day.day, 8, 30), bkk(day.year, day.month, day.day, 16, 30)
            lo, hi = max(opens, start), min(closes, due)
            counted += max(timedelta(0), hi - lo)
        day += timedelta(days=1)
    assert abs(counted.total_seconds() - hours * 3600) < 1e-3


def test_parse_wait_and_levels_in_the_routes_file():
    assert parse_wait("1 working day") == Wait(working_hours=8)
    assert parse_wait("4 working hours") == Wait(working_hours=4)
    assert parse_wait("3wd") == Wait(working_hours=24)
    assert parse_wait("2d") == Wait(calendar=timedelta(days=2))
    doc = yaml.safe_load("""
recipients: {owner: {email: o@x.go.th}, director: {email: d@x.go.th}, ps: {email: p@x.go.th}}
routes:
  - name: chain
    recipients: [owner]
    channels: [email]
    escalation:
      - {after: 1 working day, recipients: [director]}
      - {after: 3 working days, recipients: [ps, owner_escalation_contacts], channels: [email]}
""")
    route = parse_routing(doc).routes[0]
    assert [lvl.wait.working_hours for lvl in route.chain] == [8, 24]
    assert route.chain[1].recipients == ("ps", "owner_escalation_contacts")
    for bad, message in [
        ({"after": "1 working day", "recipients": ["nobody"]}, "unknown recipient"),
        ({"after": "soon", "recipients": ["director"]}, "working day"),
        ({"recipients": ["director"]}, "after"),
        ({"after": "1wd", "recipients": []}, "at least one recipient"),
    ]:
        broken = yaml.safe_load(yaml.safe_dump(doc))
        broken["routes"][0]["escalation"][0] = bad
        with pytest.raises(RoutingError, match=message):
            parse_routing(broken)
    shrinking = yaml.safe_load(yaml.safe_dump(doc))
    shrinking["routes"][0]["escalation"][1]["after"] = "4 working hours"
    with pytest.raises(RoutingError, match="longer than level 1"):
        parse_routing(shrinking)
    both = yaml.safe_load(yaml.safe_dump(doc))
    both["routes"][0].update(escalate_after_days=2, escalation_recipients=["director"])
    with pytest.raises(RoutingError, match="either"):
        parse_routing(both)


def test_every_level_due_is_told_once_in_order_and_none_is_skipped():
    since = bkk(2026, 12, 4, 15, 0)
    dues = (add_working_hours(since, 8, HOLIDAYS), add_working_hours(since, 24, HOLIDAYS))
    day = timedelta(days=1)
    plan = plan_reminder(now=bkk(2026, 12, 7, 16, 0), missed_since=since, last_sequence=0, interval=day * 30,
                         level_due=dues, levels_done=0)
    assert plan.levels == () and plan.next_due == dues[0]  # the holiday Monday does not count
    plan = plan_reminder(now=dues[0], missed_since=since, last_sequence=0, interval=day * 30, level_due=dues,
                         levels_done=0)
    assert plan.levels == (0,) and plan.levels_done == 1 and plan.next_due == dues[1]
    # A notifier that was down past both: both levels now, in order, once.
    plan = plan_reminder(now=dues[1] + day, missed_since=since, last_sequence=0, interval=day * 30, level_due=dues,
                         levels_done=0)
    assert plan.levels == (0, 1) and plan.levels_done == 2
    again = plan_reminder(now=dues[1] + day, missed_since=since, last_sequence=0, interval=day * 30, level_due=dues,
                          levels_done=2)
    assert again.levels == () and not again.escalate
