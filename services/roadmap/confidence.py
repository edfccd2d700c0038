"""Delivery confidence (Red / Amber / Green) of a workstream and of the programme (pure).

After the common public-sector delivery-confidence practice: Green = on-time delivery highly likely,
Amber = feasible but needs management attention, Red = unachievable without action such as
re-planning. Shares are weighted by milestone weight over the milestones that count (planned, not
cancelled):
  Red    missed share >= RED_MISSED_SHARE, or missed + at-risk share >= RED_MISSED_OR_AT_RISK_SHARE,
         or on-time share of the completed milestones < RED_ON_TIME_BELOW
  Amber  any missed milestone, or at-risk share >= AMBER_AT_RISK_SHARE,
         or on-time share of the completed milestones < AMBER_ON_TIME_BELOW
  Green  otherwise (including a workstream with no milestones yet)
"Missed" = not completed and its due date's Bangkok day has ended; "on time" = completed on or
before its (current) due date. Missed work counts through the missed share, late deliveries
through the on-time share, so one slip is not counted twice.

The thresholds below are the only statement of the rule: the reasons `confidence()` gives and the
text the API shows (`confidence_rule()`) are both generated from them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from services.contracts.common_types import Workstream
from services.contracts.thai_calendar import bangkok_day
from services.roadmap.domain import Status

# Thresholds of the confidence rule (tests pin them).
RED_MISSED_SHARE = 0.10
RED_MISSED_OR_AT_RISK_SHARE = 0.30
RED_ON_TIME_BELOW = 0.70
AMBER_AT_RISK_SHARE = 0.10
AMBER_ON_TIME_BELOW = 0.90


class Rating(StrEnum):
    green = "green"
    amber = "amber"
    red = "red"


RATING_VALUE = {Rating.green: 0, Rating.amber: 1, Rating.red: 2}
RATING_LABEL_TH = {Rating.green: "เขียว", Rating.amber: "เหลือง", Rating.red: "แดง"}


def _pct(share: float) -> str:
    # 0.1 -> "10%", 0.125 -> "12.5%": exact for any threshold, not only whole percents.
    return f"{round(share * 100, 4):g}%"


@dataclass(frozen=True)
class Confidence:
    rating: Rating
    reasons: list[str]
    total_weight: float
    missed_share: float
    at_risk_share: float
    completed_share: float
    on_time_share: float | None  # of the completed milestones; None if none is completed yet

    def as_dict(self) -> dict[str, Any]:
        return {"rating": self.rating.value, "rating_th": RATING_LABEL_TH[self.rating],
                "value": RATING_VALUE[self.rating], "reasons": self.reasons,
                "total_weight": round(self.total_weight, 6), "missed_share": round(self.missed_share, 4),
                "at_risk_share": round(self.at_risk_share, 4), "completed_share": round(self.completed_share, 4),
                "on_time_share": None if self.on_time_share is None else round(self.on_time_share, 4)}


@dataclass
class WeightTally:
    """Weights per outcome, summed over the milestones that count (pre-aggregated in MongoDB)."""

    total: float = 0.0
    missed: float = 0.0
    at_risk: float = 0.0
    completed: float = 0.0
    completed_on_time: float = 0.0

    def add(self, other: WeightTally) -> None:
        for name in ("total", "missed", "at_risk", "completed", "completed_on_time"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def count(self, status: str, weight: float, on_time_weight: float) -> None:
        """Add `weight` of milestones in `status` (of which `on_time_weight` completed on time)."""
        if not counts(status):
            return
        self.total += weight
        if status == Status.missed:
            self.missed += weight
        elif status == Status.at_risk:
            self.at_risk += weight
        elif status == Status.completed:
            self.completed += weight
            self.completed_on_time += on_time_weight


def counts(status: str | None) -> bool:
    """Whether a milestone in `status` counts towards the rule: not before its plan, not once cancelled."""
    return status not in (Status.unplanned, Status.cancelled, None)


def tally_of(doc: Mapping[str, Any]) -> WeightTally:
    """One milestone's contribution (used by tests; the service aggregates the same in MongoDB)."""
    tally = WeightTally()
    w = float(doc.get("weight") or 0)
    tally.count(doc.get("status"), w, 0.0 if doc.get("days_late") else w)
    return tally


def confidence(tally: WeightTally) -> Confidence:
    """Apply the Red/Amber/Green rule of the module docstring, with the reasons that decided it."""
    if tally.total <= 0:
        return Confidence(Rating.green, ["no_milestones"], 0.0, 0.0, 0.0, 0.0, None)
    missed = tally.missed / tally.total
    at_risk = tally.at_risk / tally.total
    completed = tally.completed / tally.total
    on_time = tally.completed_on_time / tally.completed if tally.completed > 0 else None
    red, amber = [], []
    if missed >= RED_MISSED_SHARE:
        red.append(f"missed_share>={_pct(RED_MISSED_SHARE)}")
    if missed + at_risk >= RED_MISSED_OR_AT_RISK_SHARE:
        red.append(f"missed_plus_at_risk_share>={_pct(RED_MISSED_OR_AT_RISK_SHARE)}")
    if on_time is not None and on_time < RED_ON_TIME_BELOW:
        red.append(f"on_time_share<{_pct(RED_ON_TIME_BELOW)}")
    if missed > 0:
        amber.append("missed_milestone")
    if at_risk >= AMBER_AT_RISK_SHARE:
        amber.append(f"at_risk_share>={_pct(AMBER_AT_RISK_SHARE)}")
    if on_time is not None and on_time < AMBER_ON_TIME_BELOW:
        amber.append(f"on_time_share<{_pct(AMBER_ON_TIME_BELOW)}")
    if red:
        rating, reasons = Rating.red, red
    elif amber:
        rating, reasons = Rating.amber, amber
    else:
        rating, reasons = Rating.green, ["on_track"]
    return Confidence(rating, reasons, tally.total, missed, at_risk, completed, on_time)


def confidence_rule() -> dict[str, Any]:
    """The rule as the API states it (Thai, English, labels), written from the thresholds above."""
    th = (f"แดง: น้ำหนักหมุดหมายที่พลาดกำหนด ≥ {_pct(RED_MISSED_SHARE)} "
          f"หรือพลาด+เสี่ยง ≥ {_pct(RED_MISSED_OR_AT_RISK_SHARE)} "
          f"หรือหมุดหมายที่เสร็จแล้วเสร็จตรงเวลาน้อยกว่า {_pct(RED_ON_TIME_BELOW)}; "
          f"เหลือง: มีหมุดหมายพลาดกำหนด หรือเสี่ยง ≥ {_pct(AMBER_AT_RISK_SHARE)} "
          f"หรือส่งตรงเวลาน้อยกว่า {_pct(AMBER_ON_TIME_BELOW)}; เขียว: นอกเหนือจากนี้")
    en = (f"Red: missed weight share >= {_pct(RED_MISSED_SHARE)}, "
          f"or missed + at-risk >= {_pct(RED_MISSED_OR_AT_RISK_SHARE)}, "
          f"or on-time share of completed milestones < {_pct(RED_ON_TIME_BELOW)}; "
          f"Amber: any missed, or at-risk >= {_pct(AMBER_AT_RISK_SHARE)}, "
          f"or on-time share < {_pct(AMBER_ON_TIME_BELOW)}; Green: otherwise")
    return {"th": th, "en": en, "labels": {r.value: RATING_LABEL_TH[r] for r in Rating}}


# --- summary figures -------------------------------------------------------------------------

def compute_stats(groups: Sequence[Mapping[str, Any]], missed: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """Counts, weighted progress, overdue days and confidence per workstream and for the programme.

    `groups`: one row per (workstream, status) with count and summed weights, as the repository
    aggregates them; `missed`: the workstream and due date of each missed milestone.
    """
    per_ws = _workstream_entries(groups)
    overdue = _overdue_days(missed, bangkok_day(now))
    programme_tally, programme_counts, programme_progress = WeightTally(), {}, 0.0
    workstreams = {}
    for ws, entry in per_ws.items():
        t = entry["tally"]
        programme_tally.add(t)
        programme_progress += entry["progress"]
        for s, n in entry["counts"].items():
            programme_counts[s] = programme_counts.get(s, 0) + n
        workstreams[ws] = _figures(entry["counts"], entry["progress"], t, overdue.get(ws, 0))
    return {"computed_at": now, "workstreams": workstreams,
            "programme": _figures(programme_counts, programme_progress, programme_tally, sum(overdue.values()))}


def _workstream_entries(groups: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    # Every workstream appears, even one with no milestones yet (Green, "no_milestones").
    per_ws: dict[str, dict[str, Any]] = {ws.value: _empty_entry() for ws in Workstream}
    for g in groups:
        ws, status = g["_id"]["workstream"], g["_id"]["status"]
        entry = per_ws.setdefault(ws, _empty_entry())
        entry["counts"][status] = entry["counts"].get(status, 0) + g["count"]
        if counts(status):
            entry["tally"].count(status, float(g["weight"]), float(g["on_time_weight"]))
            entry["progress"] += float(g["progress_weight"])
    return per_ws


def _empty_entry() -> dict[str, Any]:
    return {"counts": {}, "tally": WeightTally(), "progress": 0.0}


def _overdue_days(missed: Sequence[Mapping[str, Any]], today: date) -> dict[str, int]:
    overdue: dict[str, int] = defaultdict(int)
    for m in missed:
        overdue[m["workstream"]] += max(0, (today - date.fromisoformat(m["due_date"])).days)
    return overdue


def _figures(counts: dict[str, int], progress: float, tally: WeightTally, overdue_days: int) -> dict[str, Any]:
    return {"counts": counts, "total": sum(counts.values()),
            "progress_ratio": round(progress / tally.total / 100, 6) if tally.total else 0.0,
            "overdue_days": overdue_days, "confidence": confidence(tally).as_dict()}
