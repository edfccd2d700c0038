"""Prometheus helpers: one registry per app, platform metrics, and DB-derived collectors.

Gauges computed from MongoDB are the same on every replica (aggregate them with `max`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class PlatformMetrics:
    """Metrics every service shares: consumption, dead letters, ingestion, lag."""

    def __init__(self, registry: CollectorRegistry, service: str):
        self.registry = registry
        self.info = Gauge("newnormal_service_info", "Service identity (value is always 1).", ["service"], registry=registry)
        self.info.labels(service=service).set(1)
        self.consumed = Counter(
            "newnormal_consumer_records_total",
            "Kafka records handled by the consumer, by outcome (stored, duplicate, dead_lettered).",
            ["topic", "outcome"], registry=registry,
        )
        self.dead_letters = Counter(
            "newnormal_dead_letter_records_total",
            "Records dead-lettered (to the dead-letter topic, or the dead_letters collection when that refused them), "
            "by reason.", ["topic", "reason"], registry=registry,
        )
        self.dead_letters_stored = Counter(
            "newnormal_dead_letter_fallback_records_total",
            "Dead letters written to the MongoDB dead_letters collection because the dead-letter topic refused them "
            "(cause=refused) or stayed unreachable (cause=unavailable).", ["topic", "cause"], registry=registry,
        )
        self.id_conflicts = Counter(
            "newnormal_events_id_conflicts_total",
            "Events dead-lettered as id_conflict: their (source, id) was already stored, or earlier in the batch, "
            "with other content (the first one stands).", ["topic"], registry=registry,
        )
        self.dead_letter_retries = Counter(
            "newnormal_dead_letter_publish_retries_total",
            "Dead-letter publishes retried after a transient Kafka error.", ["topic"], registry=registry,
        )
        self.batch_failures = Counter(
            "newnormal_consumer_batch_failures_total",
            "Batches that failed as a whole (not one record's fault): offsets rewound, batch redelivered.",
            ["topic"], registry=registry,
        )
        self.batch_seconds = Histogram(
            "newnormal_consumer_batch_duration_seconds", "Time to validate, store and commit one batch.",
            ["topic"], registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.event_age = Histogram(
            "newnormal_consumer_event_age_seconds",
            "Time from the Kafka record timestamp to its commit after storing (processing latency).",
            ["topic"], registry=registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )
        self.lag = Gauge("newnormal_consumer_lag_records", "Records behind the partition end, summed per topic.",
                         ["topic"], registry=registry)
        self.store_retries = Counter("newnormal_consumer_store_retries_total",
                                     "Writes retried because the database was unavailable.", ["topic"], registry=registry)
        self.ingested = Counter(
            "newnormal_ingest_events_total", "Events received over HTTP, by outcome (accepted, duplicate, rejected, unavailable, rate_limited).",
            ["outcome"], registry=registry,
        )
        self.published = Counter("newnormal_published_events_total", "Events published to Kafka, by topic.",
                                 ["topic"], registry=registry)


class SnapshotCollector(Collector, ABC):
    """A collector whose families come from the database, refreshed asynchronously with a short cache.

    prometheus_client calls collect() synchronously, so /metrics awaits `refresh()` first and
    collect() serves the snapshot. A failed refresh keeps the last good snapshot.
    """

    def __init__(self, max_age_seconds: float = 5.0):
        self.max_age = max_age_seconds
        self._families: list[Metric] = []
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    @abstractmethod
    async def load(self) -> Iterable[Metric]:
        """Read the figures (from pre-aggregated documents, never scans) and build the families."""

    async def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < self.max_age:
            return
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at < self.max_age:
                return
            try:
                self._families = list(await self.load())
                self._loaded_at = time.monotonic()
            except Exception:
                log.warning("metrics snapshot refresh failed; serving the last one", exc_info=True)

    def collect(self) -> Iterable[Metric]:
        return list(self._families)

    def describe(self) -> Iterable[Metric]:
        # No description: registering must not trigger a (synchronous) load.
        return []
