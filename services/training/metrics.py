"""Prometheus metrics of the training service: per-process counters and readiness gauges from rollups."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from services.common.metrics import SnapshotCollector
from services.contracts.events import TRAINING_COMPLETION_VOIDED, TRAINING_COURSE_COMPLETED, TRAINING_TARGET_SET
from services.contracts.thai_calendar import fiscal_year_of


class TrainingMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.applied = Counter("newnormal_training_events_applied_total",
                               "Training events newly applied to the readiness store, by event type.", ["type"],
                               registry=registry)
        self.duplicates = Counter("newnormal_training_duplicate_completions_total",
                                  "Completions received again (same source and id) and therefore not counted again.",
                                  registry=registry)
        self.xapi = Counter("newnormal_training_xapi_statements_total",
                            "xAPI statements received, by outcome (accepted, duplicate, ignored, rejected, conflict, "
                            "forbidden, unavailable).", ["outcome"], registry=registry)
        for outcome in ("accepted", "duplicate", "ignored", "rejected", "conflict", "forbidden", "unavailable"):
            self.xapi.labels(outcome)
        for type_ in (TRAINING_TARGET_SET, TRAINING_COURSE_COMPLETED, TRAINING_COMPLETION_VOIDED):
            self.applied.labels(type_)


class ReadinessCollector(SnapshotCollector):
    """Readiness per agency × competency for the current and previous fiscal year, read from the rollups.

    A scrape reads only the rollup documents (one per fiscal year × agency × competency), never the
    completions, so its cost does not grow with the number of completions stored.
    """

    def __init__(self, repo, clock: Callable[[], datetime], max_age_seconds: float = 5.0):
        super().__init__(max_age_seconds)
        self.repo = repo
        self.clock = clock

    async def load(self) -> Iterable[Metric]:
        fy = fiscal_year_of(self.clock())
        labels = ["agency", "competency", "fiscal_year"]
        target = GaugeMetricFamily("newnormal_training_target_headcount",
                                   "Headcount target of civil servants ready per agency and competency.", labels=labels)
        ready = GaugeMetricFamily("newnormal_training_ready_learners",
                                  "Distinct learners who passed at least one course of the competency in the fiscal year.",
                                  labels=labels)
        ratio = GaugeMetricFamily("newnormal_training_readiness_ratio",
                                  "Ready learners divided by the headcount target (only where a target is set).",
                                  labels=labels)
        for doc in await self.repo.rollup_docs([fy - 1, fy]):
            values = [doc["agency"], doc["competency"], str(doc["fiscal_year"])]
            ready_n = int(doc.get("ready_learners", 0))
            ready.add_metric(values, ready_n)
            if doc.get("target") is not None:
                target.add_metric(values, doc["target"])
                if doc["target"] > 0:
                    ratio.add_metric(values, ready_n / doc["target"])
        hours = CounterMetricFamily("newnormal_training_hours",
                                    "Training hours of passed course completions, all fiscal years, by competency.",
                                    labels=["competency"])
        for competency, value in sorted((await self.repo.hours_by_competency()).items()):
            hours.add_metric([competency], value)
        return [target, ready, ratio, hours]
