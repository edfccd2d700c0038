"""Delivery confidence of a workstream and of the programme on the five-point scale (pure).

The scale is the one the UK IPA's Delivery Confidence Assessment uses and Thai programme offices read as
traffic lights: Green (on-time delivery highly likely), Amber/Green (probable; constant attention keeps
risks from becoming issues), Amber (feasible, but significant issues need management attention), Amber/Red
(in doubt: major issues, urgent action), Red (unachievable without action such as re-planning). Shares are
weighted by milestone weight over the milestones that count (planned, not cancelled); the first level,
from Red down, with any condition met is the rating, and the conditions met at that level are its reasons:
  Red          missed share >= 20%, or missed + at-risk share >= 50%, or on-time share < 50%
  Amber/Red    missed share >= 10%, or missed + at-risk share >= 30%, or on-time share < 70%
  Amber        missed share > 0,    or at-risk share >= 10%,          or on-time share < 90%
  Amber/Green  at-risk share > 0,                                     or on-time share < 95%
  Green        otherwise (including a workstream with no milestones yet)
"Missed" = not completed and its due date's Bangkok day has ended; "on time" = completed on or before
its (current) due date; the on-time share is of the completed milestones (no condition while none is).
Missed work counts through the missed share, late deliveries through the on-time share, so one slip is
not counted twice.

`RULE` below is the only statement of the thresholds: the reasons `confidence()` gives, their Thai and
English texts and the text the API shows (`confidence_rule()`) are all generated from it.
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


class Rating(StrEnum):
    green = "green"
    amber_green = "amber_green"
    amber = "amber"
    amber_red = "amber_red"
    red = "red"


# The metric's value (0 best .. 4 worst): order of the scale, so `max` over workstreams is the worst.
RATING_VALUE = {r: i for i, r in enumerate(Rating)}
RATING_LABEL_TH = {Rating.green: "เขียว", Rating.amber_green: "เหลือง/เขียว", Rating.amber: "เหลือง",
                   Rating.amber_red: "เหลือง/แดง", Rating.red: "แดง"}
RATING_LABEL_EN = {Rating.green: "Green", Rating.amber_green: "Amber/Green", Rating.amber: "Amber",
                   Rating.amber_red: "Amber/Red", Rating.red: "Red"}

# The measures a condition reads (code, Thai words, English words).
MEASURES = {
    "missed_share": ("น้ำหนักหมุดหมายที่พลาดกำหนด", "missed weight share"),
    "missed_plus_at_risk_share": ("น้ำหนักที่พลาดกำหนดรวมที่เสี่ยง", "missed + at-risk weight share"),
    "at_risk_share": ("น้ำหนักหมุดหมายที่เสี่ยง", "at-risk weight share"),
    "on_time_share": ("สัดส่วนหมุดหมายที่เสร็จแล้วซึ่งเสร็จตรงเวลา", "on-time share of completed milestones"),
}
OPERATORS = {">=": "≥", ">": ">", "<": "<"}


@dataclass(frozen=True)
class Condition:
    measure: str  # a key of MEASURES
    op: str  # ">=", ">" or "<"
    threshold: float

    @property
    def code(self) -> str:  # e.g. "missed_share>=10%": stable, machine-readable, carries the threshold
        return f"{self.measure}{self.op}{_pct(self.threshold)}"

    def text(self, lang: str) -> str:
        words = MEASURES[self.measure][0 if lang == "th" else 1]
        return f"{words} {OPERATORS[self.op] if lang == 'th' else self.op} {_pct(self.threshold)}"

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.op == ">=":
            return value >= self.threshold
        if self.op == ">":
            return value > self.threshold
        return value < self.threshold


# Thresholds of the confidence rule, worst level first (tests pin them). Green: no condition met.
RULE: tuple[tuple[Rating, tuple[Condition, ...]], ...] = (
    (Rating.red, (Condition("missed_share", ">=", 0.20), Condition("missed_plus_at_risk_share", ">=", 0.50),
                  Condition("on_time_share", "<", 0.50))),
    (Rating.amber_red, (Condition("missed_share", ">=", 0.10), Condition("missed_plus_at_risk_share", ">=", 0.30),
                        Condition("on_time_share", "<", 0.70))),
    (Rating.amber, (Condition("missed_share", ">", 0.0), Condition("at_risk_share", ">=", 0.10),
                    Condition("on_time_share", "<", 0.90))),
    (Rating.amber_green, (Condition("at_risk_share", ">", 0.0), Condition("on_time_share", "<", 0.95))),
)
# Reasons of a rating no condition decided (codes with their texts).
PLAIN_REASONS = {"no_milestones": ("ยังไม่มีหมุดหมายที่นับ", "no milestones to rate yet"),
                 "on_track": ("ไม่เข้าเงื่อนไขระดับใด: เป็นไปตามแผน", "no condition met: on track")}


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
    reasons_th: tuple[str, ...] = ()
    reasons_en: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"rating": self.rating.value, "label_th": RATING_LABEL_TH[self.rating],
                "label_en": RATING_LABEL_EN[self.rating],
                "rating_th": RATING_LABEL_TH[self.rating],  # the earlier name of label_th, kept for readers of it
                "value": RATING_VALUE[self.rating], "reasons": self.reasons,
                "reasons_th": list(self.reasons_th), "reasons_en": list(self.reasons_en),
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
    """Apply the five-point rule of the module docstring, with the reasons that decided it."""
    if tally.total <= 0:
        return _rated(Rating.green, ["no_milestones"], (), 0.0, 0.0, 0.0, 0.0, None)
    missed = tally.missed / tally.total
    at_risk = tally.at_risk / tally.total
    completed = tally.completed / tally.total
    on_time = tally.completed_on_time / tally.completed if tally.completed > 0 else None
    # Sums before dividing, so a share exactly at a threshold compares as written (0.1 + 0.2 != 0.3).
    measures = {"missed_share": missed, "missed_plus_at_risk_share": (tally.missed + tally.at_risk) / tally.total,
                "at_risk_share": at_risk, "on_time_share": on_time}
    for rating, conditions in RULE:
        met = tuple(c for c in conditions if c.met(measures[c.measure]))
        if met:
            return _rated(rating, [c.code for c in met], met, tally.total, missed, at_risk, completed, on_time)
    return _rated(Rating.green, ["on_track"], (), tally.total, missed, at_risk, completed, on_time)


def _rated(rating: Rating, codes: list[str], met: tuple[Condition, ...], *figures: Any) -> Confidence:
    if met:
        th, en = tuple(c.text("th") for c in met), tuple(c.text("en") for c in met)
    else:
        th, en = tuple(PLAIN_REASONS[c][0] for c in codes), tuple(PLAIN_REASONS[c][1] for c in codes)
    return Confidence(rating, codes, *figures, reasons_th=th, reasons_en=en)


def confidence_rule() -> dict[str, Any]:
    """The rule as the API states it (Thai, English, labels, levels), written from `RULE`."""
    th_levels, en_levels, levels = [], [], []
    for rating, conditions in RULE:
        th_levels.append(f"{RATING_LABEL_TH[rating]}: " + " หรือ ".join(c.text("th") for c in conditions))
        en_levels.append(f"{RATING_LABEL_EN[rating]}: " + ", or ".join(c.text("en") for c in conditions))
        levels.append({"rating": rating.value, "value": RATING_VALUE[rating], "any_of": [
            {"code": c.code, "measure": c.measure, "op": c.op, "threshold": c.threshold} for c in conditions]})
    levels.append({"rating": Rating.green.value, "value": RATING_VALUE[Rating.green], "any_of": []})
    th = ("ระดับแรกจากแดงลงมาที่เข้าเงื่อนไขใดเงื่อนไขหนึ่ง; " + "; ".join(th_levels)
          + f"; {RATING_LABEL_TH[Rating.green]}: นอกเหนือจากนี้")
    en = ("The first level, from Red down, with any condition met; " + "; ".join(en_levels)
          + f"; {RATING_LABEL_EN[Rating.green]}: otherwise")
    return {"th": th, "en": en, "scale": [r.value for r in Rating],
            "labels": {r.value: RATING_LABEL_TH[r] for r in Rating},
            "labels_en": {r.value: RATING_LABEL_EN[r] for r in Rating}, "levels": levels}


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
