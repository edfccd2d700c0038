"""Service layer with a small fake repository: notifications built from alerts, retry budget, Retry-After,
quiet-hours deferral of reminders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fakes_notifier import FakeRepo
from prometheus_client import CollectorRegistry
from support import poll

from services.common.consumer import Batch
from services.contracts.envelope import make_event
from services.contracts.thai_calendar import BANGKOK
from services.notifier.channels import DeliveryResult
from services.notifier.contact_book import ContactBook
from services.notifier.domain import Channel, Outcome, parse_routing
from services.notifier.handlers import NotifierService
from services.notifier.holidays import load_holidays
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Renderer

ROUTING = parse_routing({
    "recipients": {"pmo": {"email": "pmo@opdc.go.th", "line": "Cpmo"}, "boss": {"email": "boss@opdc.go.th"}},
    "routes": [{"name": "all", "recipients": ["pmo"], "channels": ["email", "line"], "reminder_interval": "24h",
                "escalate_after_days": 2, "escalation_recipients": ["boss"]},
               {"name": "dup", "match": {"agency": "dga"}, "recipients": ["pmo"], "channels": ["email"]}]})


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def service(clock, **settings) -> tuple[NotifierService, FakeRepo]:
    repo = FakeRepo()
    svc = NotifierService(settings=NotifierSettings(**{"notifier_max_attempts": 3, **settings}), repo=repo,
                          routing=ROUTING, renderer=Renderer("https://dash"), channels={},
                          metrics=NotifierMetrics(CollectorRegistry()), holidays=load_holidays(),
                          contacts=ContactBook(repo, ROUTING, clock), clock=clock)
    return svc, repo


def missed(now, kind="missed"):
    return make_event(f"roadmap.milestone.{kind}", {
        "milestone_id": "M-1", "title_th": "ภารกิจ", "workstream": "technology_access", "owner_agency": "dga",
        "due_date": "2026-11-20", "days_late": 5, "detected_at": now.isoformat()},
        agency="dga", source="/services/roadmap/watcher", id=f"{kind}:M-1:2026-11-20", time=now)


async def test_one_notification_per_recipient_and_channel_even_when_routes_overlap_or_kafka_redelivers():
    # Wednesday 21:30 Bangkok: quiet hours, but a first `missed` alert is urgent and goes now.
    clock = Clock(datetime(2026, 11, 25, 21, 30, tzinfo=BANGKOK).astimezone(UTC))
    svc, repo = service(clock)
    event = missed(clock.now)
    await svc.on_alerts(Batch([event]))
    await svc.on_alerts(Batch([event]))
    assert sorted((d["recipient"], d["channel"]) for d in repo.docs.values()) == [("pmo", "email"), ("pmo", "line")]
    assert all(d["next_attempt_at"] == clock.now and d["state"] == "pending" for d in repo.docs.values())
    assert list(repo.schedules) == ["M-1|all", "M-1|dup"]

    # A day later (Thursday 21:30): the reminder waits for Friday 08:00 (quiet hours). Both routes remind
    # the same pmo e-mail: one notification, not two.
    clock.now += timedelta(days=1)
    assert await svc.schedule_once() == 2
    reminders = [d for d in repo.docs.values() if d["kind"] == "reminder"]
    assert {d["next_attempt_at"] for d in reminders} == {datetime(2026, 11, 27, 8, 0, tzinfo=BANGKOK)}
    assert {d["sequence"] for d in reminders} == {1}
    assert await svc.schedule_once() == 0  # same tick again: nothing new

    # Day 2: escalation to the boss, once.
    clock.now += timedelta(days=1)
    await svc.schedule_once()
    escalations = [d for d in repo.docs.values() if d["kind"] == "escalation"]
    assert [(d["recipient"], d["channel"]) for d in escalations] == [("boss", "email")]
    # Recovered: the schedules stop.
    await svc.on_alerts(Batch([missed(clock.now, "recovered")]))
    clock.now += timedelta(days=3)
    assert await svc.schedule_once() == 0


async def test_retry_budget_retry_after_and_permanent_failure():
    clock = Clock(datetime(2026, 11, 25, 3, 0, tzinfo=UTC))
    svc, repo = service(clock, notifier_retry_base_seconds=1, notifier_retry_max_seconds=8)
    doc = {"_id": "n1", "channel": "email", "attempts": 1, "due_at": clock.now}
    await svc._record(doc, Channel.email, DeliveryResult(Outcome.retry, 503, "busy"))
    assert repo.calls[-1][0] == "retry" and 0 <= repo.calls[-1][2] <= 1
    await svc._record({**doc, "attempts": 2}, Channel.email, DeliveryResult(Outcome.retry, 429, "", retry_after=42))
    assert repo.calls[-1] == ("retry", "n1", 42.0)
    await svc._record({**doc, "attempts": 3}, Channel.email, DeliveryResult(Outcome.retry, 500, ""))
    assert repo.calls[-1] == ("failed", "n1")  # budget of 3 attempts spent
    await svc._record({**doc, "attempts": 1}, Channel.email, DeliveryResult(Outcome.failed, 404, "gone"))
    assert repo.calls[-1] == ("failed", "n1")  # no retry on a 4xx
    await svc._record({**doc, "attempts": 1}, Channel.email, DeliveryResult(Outcome.sent, 250))
    assert repo.calls[-1] == ("sent", "n1")


async def test_group_commit_never_leaves_a_delivery_waiting():
    """Marks added while a group is being written are written by a following group."""
    import asyncio

    clock = Clock(datetime(2026, 11, 25, 3, 0, tzinfo=UTC))
    svc, repo = service(clock, notifier_concurrency=5)
    groups: list[int] = []

    writing, first_group_written = asyncio.Event(), asyncio.Event()  # the first group's write is held open

    async def held_many(docs, now, attempts=None):
        groups.append(len(docs))
        writing.set()
        await first_group_written.wait()
        return len(docs)

    repo.mark_sent_many = held_many
    first = asyncio.create_task(svc._mark_sent({"_id": "0", "claim": "c"}))
    await asyncio.wait_for(writing.wait(), 5)  # the first group is being written now
    rest = [asyncio.create_task(svc._mark_sent({"_id": str(i), "claim": "c"})) for i in range(1, 23)]
    # Every later mark has joined a group behind the open write (queued, or held in a group of its own).
    await poll(lambda: sum(groups) + len(svc._sent) == 23, 5, interval=0.001, what="every mark queued")
    first_group_written.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert sum(groups) == 23 and groups[0] == 1 and len(groups) < 23


async def test_moving_a_missed_due_date_ends_that_misses_reminders():
    clock = Clock(datetime(2026, 11, 25, 10, 0, tzinfo=BANGKOK).astimezone(UTC))
    svc, repo = service(clock)
    await svc.on_alerts(Batch([missed(clock.now)]))
    clock.now += timedelta(days=1, minutes=1)
    assert await svc.schedule_once() > 0  # reminders while missed
    rebaselined = make_event("roadmap.milestone.rebaselined", {
        "milestone_id": "M-1", "title_th": "ภารกิจ", "workstream": "technology_access", "owner_agency": "dga",
        "due_date": "2026-11-20", "new_due_date": "2027-01-31", "detected_at": clock.now.isoformat()},
        agency="dga", source="/services/roadmap/watcher", id="rebaselined:M-1:2026-11-20", time=clock.now)
    await svc.on_alerts(Batch([rebaselined]))
    assert not any(s["active"] for s in repo.schedules.values())
    clock.now += timedelta(days=5)
    assert await svc.schedule_once() == 0


async def test_while_the_dispatcher_runs_new_notifications_due_now_are_stored_claimed_and_queued_up_to_its_room():
    # Wednesday 21:30 Bangkok: the first `missed` alert goes now. One delivery at a time, each within 60 s, and a
    # lease of 60 s: the queue may hold one notification.
    clock = Clock(datetime(2026, 11, 25, 21, 30, tzinfo=BANGKOK).astimezone(UTC))
    svc, repo = service(clock, notifier_claim_batch=1, notifier_concurrency=1, notifier_lease_seconds=60,
                        notifier_http_timeout_seconds=60)
    svc.dispatching = True
    await svc.on_alerts(Batch([missed(clock.now)]))
    stored = sorted(repo.docs.values(), key=lambda d: d["channel"])
    claimed = [d for d in stored if d["state"] == "sending"]
    assert len(claimed) == 1 and len(svc.queue) == 1  # the queue had room for one: the other waits for a claim
    assert claimed[0]["claim"] == svc.queue[0]["claim"] and claimed[0]["attempts"] == 1
    assert claimed[0]["lease_until"] == clock.now + timedelta(seconds=60)
    waiting = [d for d in stored if d["state"] == "pending"]
    assert len(waiting) == 1 and waiting[0].get("claim") is None and waiting[0]["attempts"] == 0

    # Redelivered: nothing new, nothing queued twice; the waiting one is claimed by the dispatcher's own query.
    await svc.on_alerts(Batch([missed(clock.now)]))
    assert len(repo.docs) == 2 and len(svc.queue) == 1
    assert [d["_id"] for d in await repo.claim(clock.now, timedelta(seconds=60), 10)] == [waiting[0]["_id"]]

    # Handed back at shutdown like any claim: pending again, the attempt undone; nothing is born claimed after.
    svc.stop_claiming()
    await svc.release_queue()
    assert repo.docs[claimed[0]["_id"]]["state"] == "pending" and repo.docs[claimed[0]["_id"]]["attempts"] == 0
    clock.now += timedelta(minutes=1)
    await svc.on_alerts(Batch([missed(clock.now, "at_risk")]))
    later = [d for d in repo.docs.values() if d["alert_type"] == "at_risk"]
    assert later and not svc.queue and all(d.get("claim") is None for d in later)


async def test_without_a_dispatcher_nothing_is_stored_claimed():
    clock = Clock(datetime(2026, 11, 25, 3, 0, tzinfo=UTC))
    svc, repo = service(clock)
    await svc.on_alerts(Batch([missed(clock.now)]))
    assert repo.docs and all(d["state"] == "pending" for d in repo.docs.values()) and not svc.queue
