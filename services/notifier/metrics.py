"""Notifier metrics: counters and the latency histogram in-process, open/failed gauges from MongoDB."""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from services.common.clock import utc_now
from services.common.metrics import SnapshotCollector
from services.notifier.adapters import NotificationRepository
from services.notifier.domain import OPEN_STATES, Channel, State


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.notifications = Counter(
            "newnormal_notifier_notifications_total",
            "Notifications that reached a final state, by channel and outcome (sent, failed).",
            ["channel", "outcome"], registry=registry)
        self.retries = Counter("newnormal_notifier_retries_total",
                               "Delivery attempts that will be retried (timeout, 5xx, 408, 429).", ["channel"],
                               registry=registry)
        self.delivery_seconds = Histogram(
            "newnormal_notifier_delivery_seconds",
            "Time from the alert event (or the scheduled time of a reminder) to confirmed delivery.",
            registry=registry, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600))
        self.created = Counter("newnormal_notifier_created_total",
                               "Notifications created, by kind (alert, reminder, escalation, operational, test).",
                               ["kind"], registry=registry)
        self.acknowledgements = Counter(
            "newnormal_notifier_acknowledgements_total",
            "Episodes acknowledged from a notification's link, by alert type (missed, at_risk) and by the kind of "
            "notification acknowledged (alert, reminder, escalation).", ["alert_type", "kind"], registry=registry)
        self.ack_seconds = Histogram(
            "newnormal_notifier_acknowledgement_seconds",
            "Time from a notification's delivery to its recipient's acknowledgement.",
            registry=registry, buckets=(60, 300, 900, 3600, 4 * 3600, 8 * 3600, 86400, 2 * 86400, 3 * 86400,
                                        7 * 86400, 14 * 86400, 30 * 86400))
        self.escalations = Counter("newnormal_notifier_escalations_total",
                                   "Escalation levels reached (each level of a chain once per milestone and due date), "
                                   "by level (1-4, 5 = fifth and beyond).", ["level"], registry=registry)
        for level in range(1, 6):
            self.escalations.labels(str(level))
        self.cancelled = Counter("newnormal_notifier_cancelled_total",
                                 "Reminders and escalations not sent because the episode was acknowledged.",
                                 registry=registry)
        for alert_type in ("missed", "at_risk"):
            for kind in ("alert", "reminder", "escalation"):
                self.acknowledgements.labels(alert_type, kind)
        for channel in Channel:
            self.retries.labels(channel.value)
            for outcome in ("sent", "failed"):
                self.notifications.labels(channel.value, outcome)


class NotificationGauges(SnapshotCollector):
    """`newnormal_notifier_pending{channel}` (pending + sending + retrying) and `..._failed{channel}`.

    One aggregation over the open and failed documents only (never the bulk of `sent`), cached between scrapes.
    """

    def __init__(self, repo: NotificationRepository, max_age_seconds: float, clock: Callable[[], datetime] = utc_now):
        super().__init__(max_age_seconds)
        self.repo = repo
        self.clock = clock

    async def load(self) -> Iterable[Metric]:
        counts = await self.repo.count_by_state_channel()
        pending = GaugeMetricFamily("newnormal_notifier_pending",
                                    "Notifications not yet delivered (pending, sending or retrying), by channel.",
                                    labels=["channel"])
        failed = GaugeMetricFamily("newnormal_notifier_failed",
                                   "Notifications kept in state failed after their retry budget, by channel.",
                                   labels=["channel"])
        for channel in Channel:
            pending.add_metric([channel.value], sum(counts.get((s, channel.value), 0) for s in OPEN_STATES))
            failed.add_metric([channel.value], counts.get((State.failed.value, channel.value), 0))
        now = self.clock()
        ages = Counter_(age_bucket(now - (t if t.tzinfo else t.replace(tzinfo=UTC)))
                        for t in await self.repo.unacknowledged_sent_since(now - UNACKNOWLEDGED_WINDOW))
        unacknowledged = GaugeMetricFamily(
            "newnormal_notifier_unacknowledged",
            "Missed or at-risk alert episodes (milestone and due date) delivered in the last 30 days that nobody has "
            "acknowledged yet, by time since the first delivery.", labels=["age"])
        for bucket in AGE_BUCKETS:
            unacknowledged.add_metric([bucket], ages.get(bucket, 0))
        return [pending, failed, unacknowledged]


UNACKNOWLEDGED_WINDOW = timedelta(days=30)
AGE_BUCKETS = ("under_1d", "1d_to_3d", "3d_to_7d", "7d_to_30d")


def age_bucket(age: timedelta) -> str:
    days = age.total_seconds() / 86400
    return "under_1d" if days < 1 else "1d_to_3d" if days < 3 else "3d_to_7d" if days < 7 else "7d_to_30d"
