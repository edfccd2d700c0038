"""The notifier over a store that fails on demand: an alert batch whose writes fail raises (the consumer redelivers
it) and its redelivery stores each notification and schedule once; a delivery whose outcome cannot be recorded stays
leased and is delivered again when the lease expires (at least once: never lost)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta

import pytest
from fakes_notifier import FakeRepo
from prometheus_client import CollectorRegistry

from services.common.consumer import Batch
from services.contracts.thai_calendar import BANGKOK
from services.notifier.adapters import NotificationRepository, NotificationStore
from services.notifier.channels import DeliveryResult
from services.notifier.contact_book import ContactBook
from services.notifier.domain import Channel, Outcome
from services.notifier.handlers import NotifierService
from services.notifier.holidays import load_holidays
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Renderer
from tests.unit.test_notifier_handlers import ROUTING, Clock, missed

LEASE = 60.0


class Recording:
    """A channel that accepts every delivery and remembers it."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, delivery) -> DeliveryResult:
        self.sent.append(delivery.notification_id)
        return DeliveryResult(Outcome.sent, 250)


def world(clock: Clock) -> tuple[NotifierService, FakeRepo, dict[Channel, Recording]]:
    repo, channels = FakeRepo(), {Channel.email: Recording(), Channel.line: Recording()}
    # Concurrency 1: each confirmed delivery is recorded at once, not in a timed group.
    settings = NotifierSettings(notifier_max_attempts=3, notifier_concurrency=1, notifier_lease_seconds=LEASE)
    svc = NotifierService(settings=settings, repo=repo, routing=ROUTING, renderer=Renderer("https://dash"),
                          channels=channels, metrics=NotifierMetrics(CollectorRegistry()), holidays=load_holidays(),
                          contacts=ContactBook(repo, ROUTING, clock), clock=clock)
    return svc, repo, channels


def wednesday_morning() -> Clock:
    return Clock(datetime(2026, 11, 25, 10, 0, tzinfo=BANGKOK).astimezone(UTC))


def stored(repo: FakeRepo) -> list[tuple[str, str, str]]:
    return sorted((d["_id"], d["recipient"], d["channel"]) for d in repo.docs.values())


@pytest.mark.parametrize("method", ["insert_new", "reminders_by_id", "insert_reminders"])
async def test_a_failing_alert_batch_raises_and_its_redelivery_stores_each_notification_once(method):
    clock = wednesday_morning()
    clean_svc, clean, _ = world(clock)
    await clean_svc.on_alerts(Batch([missed(clock.now)]))
    assert len(clean.docs) == 2 and list(clean.schedules) == ["M-1|all", "M-1|dup"]

    svc, repo, _ = world(clock)
    repo.fail_next, repo.fail_on = ConnectionError("mongo unreachable"), method
    with pytest.raises(ConnectionError):
        await svc.on_alerts(Batch([missed(clock.now)]))
    assert await svc.on_alerts(Batch([missed(clock.now)])) == []  # the redelivered batch
    assert stored(repo) == stored(clean)
    assert repo.schedules == clean.schedules


async def test_a_delivery_whose_outcome_cannot_be_recorded_is_delivered_again_after_its_lease():
    clock = wednesday_morning()
    svc, repo, channels = world(clock)
    await svc.on_alerts(Batch([missed(clock.now)]))
    claimed = await repo.claim(clock.now, timedelta(seconds=LEASE), 10)
    assert len(claimed) == 2
    email = next(d for d in claimed if d["channel"] == "email")
    repo.fail_next, repo.fail_on = ConnectionError("mongo unreachable"), "mark_sent_many"
    await svc.deliver(email)  # sent, but `sent` could not be stored: the failure is logged, not raised
    assert channels[Channel.email].sent == [email["_id"]]
    assert repo.docs[email["_id"]]["state"] == "sending"
    # Still leased: nobody takes it (the line notification is leased too) ...
    assert await repo.claim(clock.now + timedelta(seconds=LEASE - 1), timedelta(seconds=LEASE), 10) == []
    # ... once the lease has expired it is claimed and delivered again, and this time recorded.
    clock.now += timedelta(seconds=LEASE)
    again = await repo.claim(clock.now, timedelta(seconds=LEASE), 10)
    assert sorted(d["_id"] for d in again) == sorted(d["_id"] for d in claimed)
    for doc in again:
        await svc.deliver(doc)
    assert channels[Channel.email].sent == [email["_id"], email["_id"]]  # at least once: never lost
    assert {d["state"] for d in repo.docs.values()} == {"sent"}
    assert repo.docs[email["_id"]]["attempts"] == 2


def test_the_repository_and_the_fake_both_conform_to_the_protocol():
    wanted = {n: inspect.signature(f) for n, f in vars(NotificationStore).items()
              if inspect.iscoroutinefunction(f) and not n.startswith("_")}
    assert len(wanted) == 17
    for impl in (NotificationRepository, FakeRepo):
        assert {n: list(inspect.signature(getattr(impl, n)).parameters) for n in wanted} == \
            {n: list(s.parameters) for n, s in wanted.items()}, impl
