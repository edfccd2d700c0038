"""How much the notifier's queue holds claimed (services/notifier/pace.py), and a burst of alerts born claimed in
parts while deliveries run (`NotifierService.store(wait_for_room=True)`), over the in-memory repository."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from fakes_notifier import FakeRepo
from prometheus_client import CollectorRegistry
from support import poll

from services.common.consumer import Batch
from services.contracts.envelope import make_event
from services.notifier import handlers
from services.notifier.channels import DeliveryResult
from services.notifier.contact_book import ContactBook
from services.notifier.domain import Channel, Outcome, parse_routing
from services.notifier.handlers import NotifierService
from services.notifier.holidays import load_holidays
from services.notifier.metrics import NotifierMetrics
from services.notifier.pace import DeliveryPace, queue_bound, start_margin
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Renderer


class Ticks:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_pace_counts_the_starts_of_the_last_window_only():
    ticks = Ticks()
    pace = DeliveryPace(window=30.0, clock=ticks)
    assert pace.per_second() == 0.0
    pace.started()
    assert pace.per_second() == 0.0  # one start says nothing of a pace
    for _ in range(19):
        ticks.now += 0.5
        pace.started()
    assert pace.per_second() == pytest.approx(20 / 9.5)
    ticks.now += 25.0  # the first starts leave the window
    assert pace.per_second() == pytest.approx(11 / 30)  # those of 1004.5 s to 1009.5 s, at 1034.5 s
    ticks.now += 60.0
    assert pace.per_second() == 0.0


@pytest.mark.parametrize(("per_second", "expected"), [
    (0.0, 500),  # no pace known: what 32 deliveries of 30 s each surely start in 300 s, at least a claim batch
    (2.0, 500),  # slower than that rule: the rule
    (10.0, 1350),  # half a lease (less the margin of 30 s) at this pace
    (100.0, 5000),  # never more than queue_max
])
def test_the_queue_holds_half_a_lease_of_deliveries_at_the_recent_pace(per_second, expected):
    assert queue_bound(concurrency=32, claim_batch=500, lease_seconds=300, delivery_timeout_seconds=30,
                       per_second=per_second, queue_max=5000) == expected


def test_a_claim_is_started_only_with_time_left_for_its_delivery_to_end():
    assert start_margin(300, 30) == timedelta(seconds=30)  # the longest channel timeout
    assert start_margin(20, 30) == timedelta(seconds=5)  # never more than a quarter of the lease
    assert start_margin(2, 30) == timedelta(seconds=1)  # nor less than a second


ROUTING = parse_routing({
    "recipients": {"pmo": {"email": "pmo@opdc.go.th", "line": "Cpmo"}},
    "routes": [{"name": "all", "recipients": ["pmo"], "channels": ["email", "line"]}]})


class Gate:
    """A channel whose deliveries end when the test opens the gate."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.open = asyncio.Event()

    async def send(self, delivery) -> DeliveryResult:
        await self.open.wait()
        self.sent.append(delivery.notification_id)
        return DeliveryResult(Outcome.sent, 250)


def world(**settings):
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)  # 10:00 in Bangkok, a Wednesday: alerts go at once
    repo, gate = FakeRepo(), Gate()
    svc = NotifierService(
        settings=NotifierSettings(**{"notifier_concurrency": 2, "notifier_claim_batch": 1, "notifier_lease_seconds": 60,
                                     "notifier_http_timeout_seconds": 60, "notifier_smtp_timeout_seconds": 60,
                                     "notifier_queue_max": 4, **settings}),
        repo=repo, routing=ROUTING, renderer=Renderer("https://dash"),
        channels={Channel.email: gate, Channel.line: gate}, metrics=NotifierMetrics(CollectorRegistry()),
        holidays=load_holidays(), contacts=ContactBook(repo, ROUTING, lambda: now), clock=lambda: now)
    ticks = Ticks()
    svc.pace = DeliveryPace(clock=ticks)
    for _ in range(10):  # deliveries ran here lately, 10 a second: the queue may hold queue_max (4)
        svc.pace.started()
        ticks.now += 0.1
    return svc, repo, gate, now


def alerts(now, count):
    return [make_event("roadmap.milestone.missed", {
        "milestone_id": f"M-{i}", "title_th": "ภารกิจ", "workstream": "technology_access", "owner_agency": "dga",
        "due_date": "2026-11-20", "days_late": 5, "detected_at": now.isoformat()},
        agency="dga", source="/services/roadmap/watcher", id=f"missed:M-{i}:2026-11-20", time=now)
        for i in range(count)]


async def test_a_burst_of_alerts_is_stored_claimed_in_parts_as_the_queue_makes_room():
    svc, repo, gate, now = world()
    assert svc.queue_bound == 4
    most_queued = 0

    async def dispatcher() -> None:  # as `Runtime.every` runs it: a pass, then wait for the wake-up (or a tick)
        nonlocal most_queued
        while True:
            await svc.dispatch_once()
            most_queued = max(most_queued, len(svc.queue))
            svc.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(svc.wake.wait(), 0.05)

    claimed: list[str] = []  # what claim queries took (each a second write of a notification)
    claim = repo.claim

    async def counted_claim(*args):
        got = await claim(*args)
        claimed.extend(d["_id"] for d in got)
        return got

    repo.claim = counted_claim
    running = asyncio.create_task(dispatcher())
    try:
        await poll(lambda: svc.dispatching, what="the dispatcher running")
        storing = asyncio.create_task(svc.on_alerts(Batch(alerts(now, 6))))  # 12 notifications, the queue holds 4
        # Two deliveries in flight (held at the gate) and four queued: the queue is full.
        await poll(lambda: len(svc.queue) == 4, what="the queue filled")
        assert len(repo.docs) == 6 and not storing.done()  # the rest waits for room, not stored unclaimed
        gate.open.set()
        await asyncio.wait_for(storing, 10)
        await poll(lambda: len(gate.sent) == 12, what="every notification delivered")
    finally:
        running.cancel()
    assert sorted(gate.sent) == sorted(repo.docs)  # each once
    assert claimed == []  # every one was born claimed: no claim write
    assert all(d["state"] == "sent" and d["attempts"] == 1 for d in repo.docs.values())
    assert most_queued <= 4


async def test_when_nothing_is_taken_from_the_queue_for_a_while_the_rest_of_a_burst_is_stored_unclaimed(monkeypatch):
    monkeypatch.setattr(handlers, "ROOM_IDLE_SECONDS", 0.3)
    svc, repo, _, now = world()
    svc.dispatching = True  # a dispatcher said to run, but it never takes from the queue
    await asyncio.wait_for(svc.on_alerts(Batch(alerts(now, 6))), 5)
    states = sorted(d["state"] for d in repo.docs.values())
    assert len(states) == 12 and states.count("sending") == 4 and states.count("pending") == 8
    assert len(svc.queue) == 4  # nothing lost: the unclaimed wait for a claim as before


async def test_a_queued_claim_too_close_to_its_lease_end_is_left_to_expire_not_sent():
    svc, repo, gate, now = world(notifier_lease_seconds=20)  # a start margin of 5 s
    gate.open.set()
    svc.dispatching = True
    await svc.store([d for e in alerts(now, 1) for d in svc.alert_notifications(e, now)])
    assert len(svc.queue) == 2
    svc.queue[0]["lease_until"] = now + timedelta(seconds=4)  # as if it had waited 16 s in the queue
    await svc.dispatch_once()
    await poll(lambda: len(gate.sent) == 1, what="the other delivered")
    late = next(d for d in repo.docs.values() if d["_id"] not in gate.sent)
    assert late["state"] == "sending" and late["attempts"] == 1  # its lease runs out; a claim takes it again
