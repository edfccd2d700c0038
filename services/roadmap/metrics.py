"""Roadmap metrics: per-process counters, and DB-derived gauges read from the pre-aggregated
`roadmap_stats` document (the same on every replica; aggregate with `max` in PromQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from services.common.metrics import SnapshotCollector
from services.contracts.common_types import Workstream
from services.roadmap.domain import Status


class RoadmapMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.applied = Counter("newnormal_roadmap_events_applied_total",
                               "Roadmap events applied to a milestone (new facts), by event type.", ["type"],
                               registry=registry)
        self.rejected = Counter("newnormal_roadmap_events_rejected_total",
                                "Roadmap events refused by a domain rule, by reason.", ["reason"], registry=registry)
        self.alerts = Counter("newnormal_roadmap_alerts_published_total",
                              "Alerts this replica published to roadmap.alerts, by alert type.", ["type"],
                              registry=registry)
        self.alert_delay = Histogram(
            "newnormal_roadmap_missed_alert_delay_seconds",
            "Time from a milestone's deadline (end of its Bangkok due day) to the publication of its missed alert.",
            registry=registry, buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300))
        self.scan_seconds = Histogram("newnormal_roadmap_watcher_scan_duration_seconds",
                                      "Duration of one deadline-watcher pass, by kind (sweep, rescan).", ["kind"],
                                      registry=registry, buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.figures_refresh_seconds = Histogram(
            "newnormal_roadmap_figures_refresh_duration_seconds",
            "Duration of one recomputation of the summary figures and the overview snapshots.",
            registry=registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


class RoadmapCollector(SnapshotCollector):
    """Gauges from the `roadmap_stats` document, which the service keeps current."""

    def __init__(self, read_stats: Callable[[], Awaitable[dict[str, Any] | None]], max_age_seconds: float):
        super().__init__(max_age_seconds)
        self._read_stats = read_stats

    async def load(self) -> Iterable[Metric]:
        stats = await self._read_stats() or {}
        workstreams = stats.get("workstreams", {})
        count = GaugeMetricFamily("newnormal_roadmap_milestones", "Milestones by workstream and derived status.",
                                  labels=["workstream", "status"])
        progress = GaugeMetricFamily("newnormal_roadmap_milestone_progress_ratio",
                                     "Weighted mean completion (0-1) of the workstream's milestones (cancelled excluded).",
                                     labels=["workstream"])
        conf = GaugeMetricFamily("newnormal_roadmap_delivery_confidence",
                                 "Delivery confidence on the five-point scale: 0 green, 1 amber_green, 2 amber, 3 amber_red, "
                                 "4 red (rule in docs/roadmap.md, Delivery confidence).",
                                 labels=["workstream"])
        overdue = GaugeMetricFamily("newnormal_roadmap_milestone_overdue_days",
                                    "Days past due summed over missed (not completed) milestones.", labels=["workstream"])
        # Every enum value is reported (zeros included) so dashboards and alerts see stable series.
        for ws in Workstream:
            figures = workstreams.get(ws.value, {})
            counts = figures.get("counts", {})
            for status in Status:
                count.add_metric([ws.value, status.value], counts.get(status.value, 0))
            progress.add_metric([ws.value], figures.get("progress_ratio", 0.0))
            conf.add_metric([ws.value], figures.get("confidence", {}).get("value", 0))
            overdue.add_metric([ws.value], figures.get("overdue_days", 0))
        programme = stats.get("programme", {})
        progress.add_metric(["all"], programme.get("progress_ratio", 0.0))
        conf.add_metric(["all"], programme.get("confidence", {}).get("value", 0))
        overdue.add_metric(["all"], programme.get("overdue_days", 0))
        return [count, progress, conf, overdue]
