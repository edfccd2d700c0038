"""Prometheus families of the feedback service, read from the channel x age-group rollups.

A scrape reads at most 36 small documents (6 channels x 6 age groups), whatever the history.
Labels come from the fixed enums only.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from services.common.metrics import SnapshotCollector
from services.contracts.common_types import TechDifficulty
from services.feedback.adapters import FeedbackRepository
from services.feedback.domain import ITEMS

ITEM_HELP = {"ease": "Ease of use", "trust": "Trust in the service"}


class FeedbackCollector(SnapshotCollector):
    def __init__(self, repo: FeedbackRepository, max_age_seconds: float = 5.0):
        super().__init__(max_age_seconds)
        self.repo = repo

    async def load(self) -> Iterable[Metric]:
        return build_families(await self.repo.totals_documents())


def build_families(docs: Iterable[dict]) -> list[Metric]:
    responses = CounterMetricFamily("newnormal_feedback_responses", "Citizen feedback responses stored, by channel and age group.",
                                    labels=["channel", "age_group"])
    satisfaction = HistogramMetricFamily(
        "newnormal_feedback_satisfaction",
        "Satisfaction score (1-5) of the responses, by channel and age group (buckets at each level).",
        labels=["channel", "age_group"])
    # Optional items (ease, trust): counted over the responses that answered them (_count), so a mean is
    # _sum / _count of the item, never over all responses.
    items = {item: HistogramMetricFamily(
        f"newnormal_feedback_{item}",
        f"{ITEM_HELP[item]} score (1-5) of the responses that answered it, by channel and age group (buckets at each level).",
        labels=["channel", "age_group"]) for item in ITEMS}
    tech = CounterMetricFamily("newnormal_feedback_tech_difficulty", "Responses by reported difficulty with technology.",
                               labels=["channel", "age_group", "level"])
    aware_by_age: dict[str, int] = {}
    for doc in sorted(docs, key=lambda d: (d["channel"], d["age_group"])):
        labels = [doc["channel"], doc["age_group"]]
        count = int(doc.get("responses", 0))
        responses.add_metric(labels, count)
        cumulative, buckets = 0, []
        for level in range(1, 6):
            cumulative += int(doc.get(f"sat_{level}", 0))
            buckets.append((str(float(level)), cumulative))
        buckets.append(("+Inf", count))
        satisfaction.add_metric(labels, buckets, float(doc.get("satisfaction_sum", 0)))
        for item, family in items.items():
            cumulative, buckets = 0, []
            for level in range(1, 6):
                cumulative += int(doc.get(f"{item}_{level}", 0))
                buckets.append((str(float(level)), cumulative))
            buckets.append(("+Inf", cumulative))
            family.add_metric(labels, buckets, float(doc.get(f"{item}_sum", 0)))
        for level in TechDifficulty:
            tech.add_metric([*labels, level.value], int(doc.get(f"tech_{level.value}", 0)))
        aware_by_age[doc["age_group"]] = aware_by_age.get(doc["age_group"], 0) + int(doc.get("aware", 0))
    aware = CounterMetricFamily("newnormal_feedback_aware", "Respondents aware of the digital service channels, by age group.",
                                labels=["age_group"])
    for age_group in sorted(aware_by_age):
        aware.add_metric([age_group], aware_by_age[age_group])
    return [responses, satisfaction, *items.values(), tech, aware]
