"""Feedback rules, pure: age groups and cohorts, intake preparation, rollup deltas, experience
figures, the gap test and the per-key token bucket. No I/O here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from services.common.counters import Delta
from services.common.redact import BIRTH_KEYS, redacted_fields, scrub_payload, text_limits
from services.contracts import problems
from services.contracts.common_types import AgeGroup, Channel
from services.contracts.envelope import Event, EventError
from services.contracts.feedback import FeedbackResponseSubmitted
from services.contracts.thai_calendar import BANGKOK, bangkok_day, year_as_gregorian
from services.feedback.redact import count_placeholders

SATISFIED_MIN = 4  # "satisfied" = 4 or 5 on the 5-point scale (OMB A-11 / Thai agency reports)
# Optional 1-5 items reported beside satisfaction (the same scale; "agree" = 4 or 5). Each is counted
# over the responses that answered it, with its own answer count: a mean over all responses would be wrong.
ITEMS = ("ease", "trust")

# Generation cohorts as Thai government reports use them. Birth years are never stored, so the cohort
# follows the age group (an approximation at the group edges, stated in README, Feedback service).
COHORTS = {
    AgeGroup.under_18: "gen_z",
    AgeGroup.age_18_24: "gen_z",
    AgeGroup.age_25_34: "gen_y",
    AgeGroup.age_35_44: "gen_y",
    AgeGroup.age_45_59: "gen_x",
    AgeGroup.age_60_plus: "baby_boomer",
}


# --- age --------------------------------------------------------------------------------------
def gregorian_birth_year(birth_year: int) -> int:
    """Birth years above 2400 are Buddhist era (the Thai calendar's rule, stated once there)."""
    return year_as_gregorian(birth_year)


def age_group_for_age(age: int) -> AgeGroup:
    if age < 18:
        return AgeGroup.under_18
    if age <= 24:
        return AgeGroup.age_18_24
    if age <= 34:
        return AgeGroup.age_25_34
    if age <= 44:
        return AgeGroup.age_35_44
    if age <= 59:
        return AgeGroup.age_45_59
    return AgeGroup.age_60_plus


def age_group_for_birth_year(birth_year: int, submitted_at: datetime) -> AgeGroup:
    """Age = Bangkok calendar year of the response minus the birth year (the birthday is not asked)."""
    year = submitted_at.astimezone(BANGKOK).year
    age = year - gregorian_birth_year(birth_year)
    if age < 0 or age > 120:
        raise ValueError("birth year gives an age outside 0-120")  # no value: errors reach the DLQ and logs
    return age_group_for_age(age)


def cohort_of(age_group: AgeGroup | str) -> str:
    return COHORTS[AgeGroup(age_group)]


# --- intake -----------------------------------------------------------------------------------
# Every field a citizen types freely, with its stored limit (the contract's max_length).
FREE_TEXT_LIMITS = text_limits(FeedbackResponseSubmitted, ("comment", "service_name"))


def redaction_counts(data: Any) -> dict[str, int]:
    """Redactions by kind over every free-text field of a prepared response (counted from its placeholders)."""
    total: dict[str, int] = {}
    for name in FREE_TEXT_LIMITS:
        for kind, n in count_placeholders(getattr(data, name, None)).items():
            total[kind] = total.get(kind, 0) + n
    return total


def scrub_dead_letter(value: bytes) -> bytes:
    """A feedback record's value as it may be dead-lettered (structured or binary mode, or not JSON at all):
    every free-text string redacted, birth_year dropped. Never raises (see `scrub_payload`)."""
    return scrub_payload(value, drop=BIRTH_KEYS)


def prepare(event: Event) -> Event:
    """Make a feedback event safe to publish and store: birth_year -> age_group (then dropped), every free-text
    field redacted, then cut to its limit with a marker if redaction made it longer. Pure and idempotent (a
    prepared event comes back equal). Any value out of range (birth year, a submitted_at that overflows in
    Bangkok time) is an EventError with reason `invalid_data` whose detail names the field, never its value."""
    data = event.data
    if not isinstance(data, FeedbackResponseSubmitted):
        return event

    def invalid(detail: str) -> EventError:
        return EventError("invalid_data", detail, event_id=event.id, source=event.source)

    update: dict[str, Any] = {}
    try:
        bangkok_day(data.submitted_at)  # the rollups' day: a far offset can overflow past year 9999
    except (OverflowError, ValueError):
        raise invalid("submitted_at is out of range once converted to Bangkok time") from None
    if data.birth_year is not None:
        try:
            update["age_group"] = age_group_for_birth_year(data.birth_year, data.submitted_at)
        except (ValueError, OverflowError):
            raise invalid("birth_year gives an age outside 0-120") from None
        update["birth_year"] = None
    update |= redacted_fields(data, FREE_TEXT_LIMITS)
    if not update:
        return event
    if update.keys() <= {"age_group", "birth_year"}:
        # Only what this function derived (an AgeGroup, and no birth year): the values are the model's own types
        # and satisfy its rules, so a copy needs no second validation of every field.
        return dataclasses.replace(event, data=data.model_copy(update=update))
    try:
        payload = data.model_copy(update=update).model_dump(mode="json", exclude_none=True)
        model = FeedbackResponseSubmitted.model_validate(payload)
    except (ValidationError, ValueError, OverflowError, TypeError) as exc:
        # Never echo the input: the message names the fields only.
        errors = problems.describe(exc.errors()[:5]) if isinstance(exc, ValidationError) else []
        fields = ", ".join(e["field"] for e in errors) or type(exc).__name__
        raise invalid(f"invalid after redaction: {fields}") from None
    return dataclasses.replace(event, data=model)


# --- rollups ----------------------------------------------------------------------------------
def response_document(event: Event) -> dict[str, Any]:
    """The stored response *is* the event's audit record (`Event.to_document()`: `_id` {source, id}, the
    CloudEvents attributes, `data` redacted and without birth year) plus what the reports derive from it.
    One document, one write: the audit trail and the responses can never disagree."""
    data: FeedbackResponseSubmitted = event.data  # type: ignore[assignment]
    if data.age_group is None:
        raise ValueError("prepare() must run before storing (age_group missing)")
    doc = event.to_document()
    doc["cohort"] = cohort_of(data.age_group)
    doc["bangkok_day"] = bangkok_day(data.submitted_at).isoformat()
    doc["redactions"] = redaction_counts(data)
    return doc


# What the rollups read of a stored response (also the projection of a recount).
ROLLUP_PROJECTION = {"_id": 0, "source": 1, "id": 1, "agency": 1, "bangkok_day": 1, "data.channel": 1,
                     "data.age_group": 1, "data.satisfaction": 1, "data.tech_difficulty": 1,
                     "data.aware_of_digital_channels": 1, "data.ease": 1, "data.trust": 1}


def increments(doc: Mapping[str, Any]) -> dict[str, int]:
    data = doc["data"]
    satisfaction = int(data["satisfaction"])
    inc = {"responses": 1, "satisfaction_sum": satisfaction, f"sat_{satisfaction}": 1, f"tech_{data['tech_difficulty']}": 1}
    if data.get("aware_of_digital_channels"):
        inc["aware"] = 1
    for item in ITEMS:  # `<item>_<level>` counts the answers, `<item>_sum` their total (unanswered: nothing)
        answer = data.get(item)
        if answer is not None:
            inc[f"{item}_{int(answer)}"] = 1
            inc[f"{item}_sum"] = int(answer)
    return inc


def total_rollup_id(channel: str, age_group: str) -> str:
    return f"{channel}|{age_group}"


ALL_AGENCIES = "*"  # the daily rollup of every agency together; never an agency code


def daily_rollup_id(day: str, agency: str) -> str:
    return f"{day}|{agency}"


def monthly_rollup_id(month: str, agency: str) -> str:
    """A month's rollup (`2026-03|dga`): the sum of that month's daily rollups, kept by the same writes."""
    return f"{month}|{agency}"


def split_range(start: date, end: date) -> tuple[list[str], list[tuple[date, date]]]:
    """Bangkok days start..end as the whole months inside it (`YYYY-MM`) and the runs of days left at its
    edges: a quarter reads three month documents instead of ninety day documents. Pure."""
    months: list[str] = []
    runs: list[tuple[date, date]] = []
    cursor = start
    while cursor <= end:
        month_end = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        if cursor.day == 1 and month_end <= end:
            months.append(cursor.strftime("%Y-%m"))
        else:
            runs.append((cursor, min(month_end, end)))
        cursor = month_end + timedelta(days=1)
    return months, runs


def cell_key(channel: str, age_group: str) -> str:
    return f"{channel}|{age_group}"


# What one response adds to a rollup document: the write path's counter delta (`services.common.counters`).
RollupDelta = Delta


def rollup_deltas(docs: Iterable[Mapping[str, Any]]) -> tuple[dict[str, RollupDelta], dict[str, RollupDelta]]:
    """Per rollup document, the counts that the given responses add (dotted paths).

    Totals: one document per channel x age group (what /metrics reads, 36 at most).
    Daily: one document per Bangkok day x agency holding the 36 cells as `cells.<channel>|<age_group>.<field>`,
    plus one per day for all agencies together (agency `*`), so a batch touches few documents, a query for
    one agency reads one document a day and a query for all agencies too. The same dictionary holds one
    document per month x agency (keys `month`, `agency`; no `day`): the month's days summed, so that a
    quarter is read as three documents.
    """
    totals: dict[str, RollupDelta] = {}
    daily: dict[str, RollupDelta] = {}
    for doc in docs:
        inc = increments(doc)
        channel, age_group = doc["data"]["channel"], doc["data"]["age_group"]
        tid = total_rollup_id(channel, age_group)
        total = totals.get(tid)
        if total is None:
            total = totals[tid] = RollupDelta({"channel": channel, "age_group": age_group}, {})
        for name, value in inc.items():
            total.inc[name] = total.inc.get(name, 0) + value
        prefix = f"cells.{cell_key(channel, age_group)}."
        cells = {prefix + name: value for name, value in inc.items()}  # the same paths in the four documents below
        day = doc["bangkok_day"]
        month = day[:7]
        for agency in (doc["agency"], ALL_AGENCIES):
            for rid, field, period_key in ((daily_rollup_id(day, agency), "day", day),
                                           (monthly_rollup_id(month, agency), "month", month)):
                period = daily.get(rid)
                if period is None:
                    period = daily[rid] = RollupDelta({field: period_key, "agency": agency}, {})
                counters = period.inc
                for path, value in cells.items():
                    counters[path] = counters.get(path, 0) + value
    return totals, daily


def sum_daily_cells(docs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, int]]:
    """Add up the `cells` of daily rollup documents: (channel, age_group) -> counters."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for doc in docs:
        for key, counts in (doc.get("cells") or {}).items():
            channel, age_group = key.split("|", 1)
            acc = out.setdefault((channel, age_group), {})
            for name, value in counts.items():
                acc[name] = acc.get(name, 0) + int(value)
    return out


# --- experience figures -----------------------------------------------------------------------
@dataclass(frozen=True)
class ItemCounts:
    """Answers to one optional 1-5 item (ease, trust) in a cell: per level, and their sum."""

    levels: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    total: int = 0

    @classmethod
    def from_counts(cls, item: str, counts: Mapping[str, int]) -> ItemCounts:
        return cls(tuple(int(counts.get(f"{item}_{i}", 0)) for i in range(1, 6)),  # type: ignore[arg-type]
                   int(counts.get(f"{item}_sum", 0)))

    @property
    def answers(self) -> int:
        return sum(self.levels)

    @property
    def agree(self) -> int:
        return sum(self.levels[SATISFIED_MIN - 1:])

    def __add__(self, other: ItemCounts) -> ItemCounts:
        return ItemCounts(tuple(a + b for a, b in zip(self.levels, other.levels, strict=True)),  # type: ignore[arg-type]
                          self.total + other.total)


# Figures of an item in the API (e.g. ease_responses, mean_ease, share_ease_agree, ease_levels).
def item_figures(item: str) -> tuple[str, ...]:
    return (f"{item}_responses", f"mean_{item}", f"share_{item}_agree", f"{item}_levels")


@dataclass(frozen=True)
class Cell:
    age_group: str
    channel: str
    responses: int
    satisfied: int
    satisfaction_sum: int
    tech_difficulty: int
    aware: int
    levels: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    ease: ItemCounts = ItemCounts()
    trust: ItemCounts = ItemCounts()

    @classmethod
    def from_counts(cls, age_group: str, channel: str, counts: Mapping[str, int]) -> Cell:
        levels = tuple(int(counts.get(f"sat_{i}", 0)) for i in range(1, 6))
        return cls(age_group=age_group, channel=channel, responses=int(counts.get("responses", 0)),
                   satisfied=sum(levels[SATISFIED_MIN - 1:]), satisfaction_sum=int(counts.get("satisfaction_sum", 0)),
                   tech_difficulty=int(counts.get("tech_some", 0)) + int(counts.get("tech_severe", 0)),
                   aware=int(counts.get("aware", 0)), levels=levels,  # type: ignore[arg-type]
                   ease=ItemCounts.from_counts("ease", counts), trust=ItemCounts.from_counts("trust", counts))

    def item(self, name: str) -> ItemCounts:
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        n = self.responses
        out = {
            "age_group": self.age_group,
            "cohort": cohort_of(self.age_group) if self.age_group in COHORTS else None,
            "channel": self.channel,
            "responses": n,
            "mean_satisfaction": round(self.satisfaction_sum / n, 3) if n else None,
            "share_satisfied": round(self.satisfied / n, 4) if n else None,
            "share_tech_difficulty": round(self.tech_difficulty / n, 4) if n else None,
            "awareness_rate": round(self.aware / n, 4) if n else None,
            "satisfaction_levels": {str(i + 1): c for i, c in enumerate(self.levels)},
        }
        for name in ITEMS:
            counts, answers = self.item(name), self.item(name).answers
            responses, mean, share, levels = item_figures(name)
            out[responses] = answers
            out[mean] = round(counts.total / answers, 3) if answers else None
            out[share] = round(counts.agree / answers, 4) if answers else None
            out[levels] = {str(i + 1): c for i, c in enumerate(counts.levels)}
        return out


def cells_in_order(cells: Iterable[Cell]) -> list[Cell]:
    order_a = {a.value: i for i, a in enumerate(AgeGroup)}
    order_c = {c.value: i for i, c in enumerate(Channel)}
    return sorted(cells, key=lambda c: (order_a.get(c.age_group, 99), order_c.get(c.channel, 99)))


def overall(cells: Iterable[Cell]) -> Cell:
    cells = list(cells)
    levels = tuple(sum(c.levels[i] for c in cells) for i in range(5))
    return Cell("all", "all", sum(c.responses for c in cells), sum(c.satisfied for c in cells),
                sum(c.satisfaction_sum for c in cells), sum(c.tech_difficulty for c in cells),
                sum(c.aware for c in cells), levels,  # type: ignore[arg-type]
                ease=sum((c.ease for c in cells), ItemCounts()), trust=sum((c.trust for c in cells), ItemCounts()))


# --- gap test ---------------------------------------------------------------------------------
def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@dataclass(frozen=True)
class GapResult:
    cell: Cell
    z: float
    p_value: float
    cell_share: float
    rest_share: float
    overall_share: float
    significant: bool


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> float:
    """z of p1 - p2 with the pooled standard error; 0 when the pooled share is 0 or 1 (no variance)."""
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 0.0
    return (x1 / n1 - x2 / n2) / math.sqrt(variance)


def satisfaction_gaps(cells: Iterable[Cell], *, alpha: float = 0.05, min_cell: int = 30,
                      bonferroni: bool = True) -> list[GapResult]:
    """One-sided two-proportion z-test of each cell's share satisfied against all other responses.

    H0: p_cell >= p_rest; H1: p_cell < p_rest. Cells (and their complements) with fewer than
    `min_cell` responses are not tested, so small cells are never flagged on noise. With
    `bonferroni`, alpha is divided by the number of cells tested (about 36 comparisons at once).
    Returns every tested cell, most significant first; `significant` marks the gaps.
    """
    cells = [c for c in cells if c.responses > 0]
    total = overall(cells)
    tested = [c for c in cells if c.responses >= min_cell and total.responses - c.responses >= min_cell]
    threshold = alpha / len(tested) if bonferroni and tested else alpha
    results = []
    for cell in tested:
        rest_n = total.responses - cell.responses
        rest_x = total.satisfied - cell.satisfied
        z = two_proportion_z(cell.satisfied, cell.responses, rest_x, rest_n)
        p = normal_cdf(z)
        results.append(GapResult(cell, z, p, cell.satisfied / cell.responses, rest_x / rest_n,
                                 total.satisfied / total.responses, p < threshold))
    results.sort(key=lambda r: r.p_value)
    return results


# --- date range -------------------------------------------------------------------------------
def default_range(today: date, days: int = 30) -> tuple[date, date]:
    from datetime import timedelta

    return today - timedelta(days=days - 1), today
