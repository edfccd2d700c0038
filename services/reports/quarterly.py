"""The quarterly report to Cabinet as one content object (pure: no I/O, no clock; times are passed in).

    report = build_quarterly(inputs, slip_details, rules, data_as_of)   # -> QuarterlyReport
    sheets = tables(report)                                             # {sheet name: Table}, in order

One fetch gives one `QuarterlyReport`; the HTML, PDF and XLSX renderers all draw its figures from `tables()`
(the HTML/PDF add charts of the same overview), so the three formats cannot disagree. Sheet and column names are a
published interface (docs/reports.md): add columns at the end, never rename.

Schedule changes: every milestone whose current due date differs from its baseline, with the variance in days
and the stated reason (the latest non-empty reason in its due history). A slip of more than SLIP_FLAG_DAYS days
without a stated reason is flagged (the UK major-projects practice: every schedule deviation needs a narrative).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.contracts.thai_calendar import format_thai_datetime
from services.reports import domain

SLIP_FLAG_DAYS = 30
# Schedule changes printed in the PDF: every flagged one first, then the largest slips. The XLSX and HTML list
# every change; past a few hundred rows a printed table is unreadable and WeasyPrint needs seconds per page.
PDF_SCHEDULE_ROWS = 150
ROADMAP_COUNT_COLUMNS = ("planned", "in_progress", "at_risk", "missed", "completed", "cancelled", "unplanned")


class ReportRequestError(ValueError):
    """A quarterly report that cannot be made; `reason` is the problem+json reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def validate_request(fiscal_year: int, quarter: int, today: date) -> domain.Quarter:
    """The quarter asked for, or ReportRequestError: the fiscal year must be Buddhist era (a Gregorian year
    such as 2026 is the commonest mistake) and the quarter must have started."""
    if not 2560 <= fiscal_year <= 2700:
        raise ReportRequestError("invalid_fiscal_year",
                                 "fiscal_year is a Buddhist-era fiscal year between 2560 and 2700 (e.g. 2569 = "
                                 "1 Oct 2025 - 30 Sep 2026)")
    if not 1 <= quarter <= 4:
        raise ReportRequestError("invalid_quarter", "quarter is 1-4 of the Thai fiscal year (Q1 = October-December)")
    q = domain.Quarter(fiscal_year, quarter)
    if q.start > today:
        raise ReportRequestError("quarter_not_started",
                                 f"{q.label('en')} starts on {q.start.isoformat()}: there is nothing to report yet")
    return q


@dataclass(frozen=True)
class Slip:
    milestone_id: str
    title_th: str
    title_en: str
    workstream: str
    owner_agency: str
    status: str
    baseline_due_date: str
    due_date: str
    variance_days: int  # current minus baseline: positive = later
    reason: str | None  # as stated by the agency
    flagged: bool  # slipped more than SLIP_FLAG_DAYS days with no stated reason


@dataclass(frozen=True)
class QuarterlyReport:
    overview: domain.Overview
    quarter: domain.Quarter
    agency: str | None
    data_as_of: datetime  # when the read APIs were asked (aware)
    period_end: date  # last day the quarter's figures cover (the quarter's end, or today if it is running)
    slips: tuple[Slip, ...]
    slips_total: int  # moved milestones, before the MAX_SLIPS bound
    unavailable: tuple[str, ...]
    # The notifier's GET /v1/acknowledgements/summary for the quarter (None: not available, the report says so).
    acknowledgements: Mapping[str, Any] | None = None

    @property
    def flagged(self) -> int:
        return sum(1 for s in self.slips if s.flagged)


def moved(items: Iterable[Mapping[str, Any]], agency: str | None) -> list[Mapping[str, Any]]:
    """Milestones whose current due date is not the baseline one (of `agency`), largest slip first."""
    out = []
    for item in items:
        if agency is not None and item.get("owner_agency") != agency:
            continue
        base, due = domain._iso(item.get("baseline_due_date")), domain._iso(item.get("due_date"))
        if base is not None and due is not None and base != due:
            out.append(item)
    return sorted(out, key=lambda i: (-_variance(i), str(i.get("milestone_id"))))


def _variance(item: Mapping[str, Any]) -> int:
    base, due = domain._iso(item.get("baseline_due_date")), domain._iso(item.get("due_date"))
    return (due - base).days if base and due else 0


def stated_reason(detail: Mapping[str, Any] | None) -> str | None:
    """The latest non-empty reason in the due history (reschedules carry one; a re-sent plan does not)."""
    for entry in reversed(list((detail or {}).get("due_history") or [])):
        reason = entry.get("reason") if isinstance(entry, Mapping) else None
        if isinstance(reason, str) and reason.strip():
            return " ".join(reason.split())  # one line: tables and cells stay readable
    return None


def reason_known(item: Mapping[str, Any]) -> bool:
    """The list item says its stated reason (`latest_reason`, None when none was stated); an item projected
    before the roadmap API gave it needs its detail (due history) instead."""
    return "latest_reason" in item


def slip_of(item: Mapping[str, Any], detail: Mapping[str, Any] | None) -> Slip:
    variance = _variance(item)
    if detail is not None:
        reason = stated_reason(detail)
    elif reason_known(item):
        reason = stated_reason({"due_history": [{"reason": item.get("latest_reason")}]})
    else:
        reason = None
    return Slip(str(item.get("milestone_id")), str(item.get("title_th") or ""),
                str(item.get("title_en") or item.get("title_th") or ""), str(item.get("workstream") or ""),
                str(item.get("owner_agency") or ""), str(item.get("status") or ""),
                str(item.get("baseline_due_date"))[:10], str(item.get("due_date"))[:10], variance, reason,
                # Unknown history (its fetch failed) is not "no reason": only a known silence is flagged.
                (detail is not None or reason_known(item)) and variance > SLIP_FLAG_DAYS and reason is None)


def build_quarterly(inputs: domain.Inputs, slip_details: Mapping[str, Mapping[str, Any]], rules: domain.Rules,
                    data_as_of: datetime, *, max_slips: int = 5000) -> QuarterlyReport:
    overview = domain.build_overview(inputs, rules)
    changed = moved(inputs.moved if inputs.moved is not None else inputs.milestones or [], inputs.agency)
    slips = tuple(slip_of(i, slip_details.get(str(i.get("milestone_id")))) for i in changed[:max_slips])
    return QuarterlyReport(overview, inputs.quarter, inputs.agency, data_as_of, min(inputs.today, inputs.quarter.end),
                           slips, len(changed), tuple(inputs.unavailable), inputs.acknowledgements)


# --- the figures as tables (the one source of every number in every format) ----------------------

@dataclass(frozen=True)
class Table:
    section: str  # roadmap | regulation | readiness | access | awareness | schedule | about
    title: tuple[str, str]
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def _about(r: QuarterlyReport) -> Table:
    q = r.quarter
    rows = (("report", "quarterly_progress"), ("fiscal_year", q.fiscal_year), ("quarter", q.quarter),
            ("period_start", q.start.isoformat()), ("period_end", r.period_end.isoformat()),
            ("agency", r.agency or "all"), ("agency_name_th", domain.agency_name(r.agency, "th") or "ทุกหน่วยงาน"),
            ("data_as_of_utc", r.data_as_of.isoformat(timespec="seconds")),
            ("data_as_of_th", format_thai_datetime(r.data_as_of)),
            ("unavailable_sources", ",".join(r.unavailable)))
    return Table("about", ("ข้อมูลรายงาน", "About this report"), ("field", "value"), rows)


def _summary(r: QuarterlyReport) -> Table:
    rows = []
    for s in r.overview.sections():
        t = s.trend
        rows.append((s.key, s.status, t.current, t.previous, t.direction))
    return Table("about", ("สรุปสถานะ", "Status summary"),
                 ("section", "status", "trend_current", "trend_previous", "trend_direction"), tuple(rows))


def _workstreams(section: domain.RoadmapSection) -> Table:
    rows = []
    for w in section.workstreams:
        counts = [int(w.counts.get(c, 0)) for c in ROADMAP_COUNT_COLUMNS]
        rows.append((w.workstream, domain.label(domain.WORKSTREAM_LABELS, w.workstream, "th"), w.rating or "",
                     "; ".join(t[0] for t in w.reasons_text), w.total, *counts, w.progress_ratio))
    return Table(section.key, ("ความเชื่อมั่นในการส่งมอบรายแผนงาน", "Delivery confidence by workstream"),
                 ("workstream", "workstream_th", "confidence", "confidence_reasons_th", "milestones",
                  *ROADMAP_COUNT_COLUMNS, "progress_ratio"), tuple(rows))


def _late(section: domain.RoadmapSection) -> Table:
    rows = tuple((m.milestone_id, m.title_th, m.title_en, m.workstream, m.owner_agency, m.status, m.due_date[:10],
                  (m.baseline_due_date or "")[:10], m.days_late, m.latest_reason[0] if m.latest_reason else "")
                 for m in section.late)
    return Table(section.key, ("หมุดหมายที่พลาดกำหนดหรือเสี่ยง", "Milestones missed or at risk"),
                 ("milestone_id", "title_th", "title_en", "workstream", "owner_agency", "status", "due_date",
                  "baseline_due_date", "days_late", "latest_reason"), rows)


def _readiness(s: domain.ReadinessSection) -> tuple[Table, Table]:
    comp = Table("readiness", ("ผู้พร้อมเทียบเป้าหมายรายสมรรถนะ", "Ready learners against target by competency"),
                 ("fiscal_year", "competency", "competency_th", "target", "ready_learners", "ready_ratio"),
                 tuple((s.fiscal_year, c.competency, domain.label(domain.COMPETENCY_LABELS, c.competency, "th"),
                        c.target, c.ready, c.ratio) for c in s.rows)
                 + ((s.fiscal_year, "all", "รวม", s.target, s.ready, s.ready / s.target if s.target else None),))
    lag = Table("readiness", ("หน่วยงานที่ตามหลังเส้นทางเชิงเส้นมากที่สุด", "Agencies furthest behind their linear path"),
                ("rank", "agency", "agency_th", "target", "ready_learners", "expected", "gap", "ready_ratio"),
                tuple((a.rank, a.agency, domain.agency_name(a.agency, "th"), a.target, a.ready, a.expected, a.gap,
                       a.ratio) for a in s.laggards))
    return comp, lag


def _access(s: domain.AccessSection) -> Table:
    rows = []
    for hm in s.heatmaps:
        if not hm.reported:
            continue
        for age in hm.ages:
            for ch in hm.channels:
                cell = hm.cells.get((age, ch))
                if cell is None:
                    continue
                rows.append((hm.measure, age, ch, cell.value, cell.responses, cell.suppressed, cell.gap))
    return Table("access", ("ความพึงพอใจ ความไว้วางใจ ความง่าย และปัญหาด้านเทคโนโลยี ตามช่วงอายุและช่องทาง",
                            "Satisfaction, trust, ease and technology difficulty by age group and channel"),
                 ("measure", "age_group", "channel", "value", "responses", "suppressed", "significant_gap"), tuple(rows))


def _awareness(s: domain.AwarenessSection) -> Table:
    return Table("awareness", ("การรับรู้ช่องทางดิจิทัลตามช่วงอายุ", "Awareness of digital channels by age group"),
                 ("age_group", "age_group_th", "awareness_rate", "responses"),
                 tuple((a.age_group, domain.label(domain.AGE_LABELS, a.age_group, "th"), a.rate, a.responses)
                       for a in s.by_age))


ACK_AGENCY_ROWS = 20  # the least responsive agencies printed; the XLSX sheet holds every agency


def _acknowledgements(r: QuarterlyReport) -> tuple[Table, Table]:
    """Owners' answers to missed/at-risk notifications in the quarter (notifier): one figure per row, and per agency."""
    a = r.acknowledgements or {}
    ages = {"under_1d": "น้อยกว่า 1 วัน", "1d_to_3d": "1-3 วัน", "3d_to_7d": "3-7 วัน", "7d_or_more": "7 วันขึ้นไป"}
    rows = (("episodes_notified", "ภารกิจที่แจ้งว่าเลยกำหนดหรือเสี่ยง", a.get("episodes")),
            ("acknowledged", "มีผู้รับทราบ", a.get("acknowledged")),
            ("acknowledged_share", "สัดส่วนที่มีผู้รับทราบ", a.get("acknowledged_share")),
            ("median_hours_to_acknowledge", "เวลาจนรับทราบ (มัธยฐาน ชั่วโมง)", a.get("median_hours_to_acknowledge")),
            ("p90_hours_to_acknowledge", "เวลาจนรับทราบ (เปอร์เซ็นไทล์ 90 ชั่วโมง)", a.get("p90_hours_to_acknowledge")),
            *((f"unacknowledged_{age}", f"ยังไม่มีผู้รับทราบ แจ้งมาแล้ว {ages.get(age, age)}", n)
              for age, n in (a.get("unacknowledged") or {}).items()),
            *((f"escalations_level_{level}", f"ยกระดับขั้นที่ {level}", n)
              for level, n in (a.get("escalations_by_level") or {}).items()))
    summary = Table("acknowledgements", ("การรับทราบการแจ้งเตือน", "Acknowledgement of notifications"),
                    ("figure", "figure_th", "value"), rows if r.acknowledgements is not None else ())
    agencies = Table("acknowledgements", ("หน่วยงานที่รับทราบช้าหรือน้อยที่สุด", "Least responsive agencies"),
                     ("agency", "agency_th", "episodes", "acknowledged", "acknowledged_share",
                      "median_hours_to_acknowledge"),
                     tuple((g["agency"], domain.agency_name(g["agency"], "th"), g["episodes"], g["acknowledged"],
                            g["acknowledged_share"], g["median_hours_to_acknowledge"]) for g in a.get("agencies") or ()))
    return summary, agencies


def printed_slips(slips: Sequence[Slip], limit: int | None = None) -> tuple[Slip, ...]:
    """The schedule changes the PDF prints: flagged ones first (largest slip first), then the largest others."""
    limit = PDF_SCHEDULE_ROWS if limit is None else limit
    return tuple(sorted(slips, key=lambda s: (not s.flagged, -s.variance_days, s.milestone_id))[:limit])


def schedule_table(r: QuarterlyReport, slips: Sequence[Slip] | None = None) -> Table:
    return Table("schedule", ("การเปลี่ยนแปลงกำหนดส่งมอบ", "Schedule changes"),
                 ("milestone_id", "title_th", "title_en", "workstream", "owner_agency", "status", "baseline_due_date",
                  "current_due_date", "variance_days", "stated_reason", "flag_over_30_days_no_reason"),
                 tuple((s.milestone_id, s.title_th, s.title_en, s.workstream, s.owner_agency, s.status,
                        s.baseline_due_date, s.due_date, s.variance_days, s.reason or "", s.flagged)
                       for s in (r.slips if slips is None else slips)))


def tables(report: QuarterlyReport) -> dict[str, Table]:
    """Every figure of the report by sheet name (XLSX sheet names, also the HTML tables' ids)."""
    ov = report.overview
    readiness, laggards = _readiness(ov.readiness)
    return {
        "about": _about(report), "summary": _summary(report),
        "roadmap": _workstreams(ov.roadmap), "roadmap_late": _late(ov.roadmap),
        "regulation": _workstreams(ov.regulation), "regulation_late": _late(ov.regulation),
        "readiness": readiness, "readiness_laggards": laggards,
        "access": _access(ov.access), "awareness": _awareness(ov.awareness),
        "schedule_changes": schedule_table(report),
        **dict(zip(("acknowledgements", "acknowledgements_agencies"), _acknowledgements(report), strict=True)),
    }


def sheet_columns() -> dict[str, Sequence[str]]:
    """The published column names per sheet (docs and tests compare against this)."""
    empty = domain.build_overview(domain.Inputs(today=date(2026, 1, 1), quarter=domain.Quarter(2569, 2), agency=None))
    report = QuarterlyReport(empty, empty.quarter, None, datetime(2026, 1, 1).astimezone(), date(2026, 1, 1), (), 0, ())
    return {name: t.columns for name, t in tables(report).items()}
