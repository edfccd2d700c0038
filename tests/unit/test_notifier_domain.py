"""Pure notifier rules: routing file, matching, keys, backoff, Retry-After, quiet hours, reminders."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml

from services.contracts.agencies import get_registry
from services.contracts.thai_calendar import BANGKOK
from services.notifier.domain import (
    Channel,
    Outcome,
    RoutingError,
    backoff_delay,
    classify_status,
    deliver_at,
    idempotency_key,
    in_quiet_hours,
    notification_id,
    parse_duration,
    parse_retry_after,
    parse_routing,
    plan_reminder,
    retry_key_uuid,
)
from services.notifier.holidays import load_holidays
from services.notifier.main import load_routing
from services.notifier.settings import DEFAULT_ROUTES_FILE

ROUTES = yaml.safe_load("""
defaults: {reminder_interval: 12h}
recipients:
  pmo: {email: pmo@opdc.go.th, line: Cpmo}
  owner: {email: [a@dga.or.th, b@dga.or.th], webhook: hook}
  boss: {email: boss@opdc.go.th}
routes:
  - {name: all, recipients: [pmo], channels: [email, line], escalate_after_days: 3, escalation_recipients: [boss]}
  - {name: dga-missed, match: {agency: dga, type: missed}, recipients: [owner], channels: [email, webhook, line],
     reminder_interval: 2h}
  - {name: ops, match: {type: operational, labels: {severity: [critical, page]}}, recipients: [pmo], channels: [line]}
""")


def test_routing_matches_on_agency_workstream_type_and_labels():
    table = parse_routing(ROUTES, known_agencies=get_registry())
    assert [r.name for r in table.match("missed", "dga", "technology_access")] == ["all", "dga-missed"]
    assert [r.name for r in table.match("at_risk", "dga", "technology_access")] == ["all"]
    assert [r.name for r in table.match("operational", None, None, {"severity": "critical"})] == ["all", "ops"]
    assert [r.name for r in table.match("operational", None, None, {"severity": "warning"})] == ["all"]
    route = table.route("dga-missed")
    assert route.reminder_interval == timedelta(hours=2) and table.route("all").reminder_interval == timedelta(hours=12)
    targets = table.targets(route.recipients, route.channels)
    # the owner has no LINE address: skipped; two e-mail addresses: two targets
    assert [(t.channel.value, t.address) for t in targets] == [("email", "a@dga.or.th"), ("email", "b@dga.or.th"),
                                                                ("webhook", "hook")]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["routes"][0].update(recipients=["nobody"]), "unknown recipient"),
    (lambda d: d["routes"][1]["match"].update(agency="atlantis"), "unknown agency"),
    (lambda d: d["routes"][1]["match"].update(type="exploded"), "unknown alert type"),
    (lambda d: d["routes"][1].update(reminder_interval="soon"), "invalid duration"),
    (lambda d: d["recipients"]["pmo"].update(fax="123"), "unknown channel"),
    (lambda d: d["routes"].append(dict(d["routes"][0])), "duplicate name"),
    (lambda d: d["routes"][0].update(escalate_after_days=-1), "non-negative"),
])
def test_routing_errors_say_what_is_wrong(mutate, message):
    doc = yaml.safe_load(yaml.safe_dump(ROUTES))
    mutate(doc)
    with pytest.raises(RoutingError, match=message):
        parse_routing(doc, known_agencies=get_registry())


def test_shipped_example_routes_file_is_valid():
    table = load_routing(DEFAULT_ROUTES_FILE)
    assert table.route("programme-office") is not None
    # labels as deploy/prometheus/rules set them
    critical = table.match("operational", None, None, {"category": "operational", "severity": "critical"})
    assert [r.name for r in critical] == ["operations", "operations-critical"]
    programme = table.match("operational", None, "technology_access", {"category": "programme", "severity": "warning"})
    assert [r.name for r in programme] == ["programme-metrics"]


def test_durations():
    assert parse_duration("24h") == timedelta(days=1)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration(3600) == timedelta(hours=1)
    with pytest.raises(RoutingError):
        parse_duration("0h")


def test_keys_are_deterministic_and_distinct():
    k = idempotency_key("missed:M-1:2026-09-30", "pmo", Channel.email)
    assert k == "missed:M-1:2026-09-30|pmo|email"
    assert idempotency_key("missed:M-1:2026-09-30", "pmo", "email", prefix="reminder:2") == "reminder:2|" + k
    assert notification_id(k) == notification_id(k) != notification_id(k + "x")
    assert retry_key_uuid(k) == retry_key_uuid(k) and len(retry_key_uuid(k)) == 36


def test_backoff_is_exponential_with_full_jitter_and_capped():
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        values = [backoff_delay(attempt, 2.0, 60.0, rng) for _ in range(200)]
        assert all(0 <= v <= ceiling for v in values)
        assert max(values) > ceiling * 0.8  # the whole range is used (full jitter)


def test_retry_after_seconds_and_http_date():
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Wed, 25 Nov 2026 03:00:30 GMT", now) == 30
    assert parse_retry_after("Wed, 25 Nov 2026 02:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


@pytest.mark.parametrize("status, outcome", [(200, Outcome.sent), (202, Outcome.sent), (204, Outcome.sent),
                                             (500, Outcome.retry), (503, Outcome.retry), (429, Outcome.retry),
                                             (408, Outcome.retry), (400, Outcome.failed), (401, Outcome.failed),
                                             (404, Outcome.failed), (410, Outcome.failed)])
def test_status_classification(status, outcome):
    assert classify_status(status) is outcome


HOLIDAYS = load_holidays()


def bkk(*args) -> datetime:
    return datetime(*args, tzinfo=BANGKOK)


@pytest.mark.parametrize("now, expected", [
    (bkk(2026, 11, 25, 10, 0), bkk(2026, 11, 25, 10, 0)),    # Wednesday, working hours: now
    (bkk(2026, 11, 25, 21, 0), bkk(2026, 11, 26, 8, 0)),     # evening: next morning
    (bkk(2026, 11, 26, 6, 30), bkk(2026, 11, 26, 8, 0)),     # early morning: same morning
    (bkk(2026, 11, 28, 11, 0), bkk(2026, 11, 30, 8, 0)),     # Saturday: Monday
    (bkk(2026, 4, 10, 20, 30), bkk(2026, 4, 16, 8, 0)),      # Friday evening before Songkran (13-15 Apr)
    (bkk(2026, 12, 4, 22, 0), bkk(2026, 12, 8, 8, 0)),       # 5 Dec is a Saturday: Monday 7 Dec is its substitute
])
def test_non_urgent_waits_for_the_next_working_morning(now, expected):
    got = deliver_at(now.astimezone(UTC), urgent=False, holidays=HOLIDAYS, quiet_start=20, quiet_end=8)
    assert got == expected
    assert deliver_at(now, urgent=True, holidays=HOLIDAYS, quiet_start=20, quiet_end=8) == now


def test_quiet_hours_wrap_midnight():
    assert in_quiet_hours(bkk(2026, 1, 5, 23, 0), 20, 8) and in_quiet_hours(bkk(2026, 1, 5, 7, 59), 20, 8)
    assert not in_quiet_hours(bkk(2026, 1, 5, 8, 0), 20, 8) and not in_quiet_hours(bkk(2026, 1, 5, 12, 0), 12, 12)
    assert in_quiet_hours(bkk(2026, 1, 5, 13, 0), 12, 14)


def test_reminders_every_interval_without_bursts_and_escalation_once():
    since = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    day = timedelta(days=1)
    plan = plan_reminder(now=since + timedelta(hours=5), missed_since=since, last_sequence=0, interval=day,
                         escalate_after_days=3, escalated=False)
    assert plan.sequence == 0 and plan.next_due == since + day and not plan.escalate
    plan = plan_reminder(now=since + day, missed_since=since, last_sequence=0, interval=day, escalate_after_days=3,
                         escalated=False)
    assert plan.sequence == 1 and plan.next_due == since + 2 * day
    # a notifier down for a week sends one reminder numbered 7, then resumes the rhythm
    plan = plan_reminder(now=since + 7 * day + timedelta(hours=1), missed_since=since, last_sequence=1, interval=day,
                         escalate_after_days=3, escalated=False)
    assert plan.sequence == 7 and plan.next_due == since + 8 * day and plan.escalate
    plan = plan_reminder(now=since + 8 * day, missed_since=since, last_sequence=7, interval=day, escalate_after_days=3,
                         escalated=True)
    assert plan.sequence == 8 and not plan.escalate
    # the same tick evaluated twice does not send twice
    again = plan_reminder(now=since + 8 * day, missed_since=since, last_sequence=8, interval=day, escalate_after_days=3,
                          escalated=True)
    assert again.sequence == 0


def test_shipped_holiday_list_covers_this_and_next_year():
    assert date(2026, 4, 13) in HOLIDAYS and date(2027, 1, 1) in HOLIDAYS
