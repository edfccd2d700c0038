"""The programme overview as figures (pure: no I/O, no clock; `today`/`now` are passed in).

Interface for pages and documents (RB's quarterly report builds on the same model):

    quarter = quarter_of(today)                  # Thai fiscal quarter (Q1 = Oct-Dec), .previous(), .start/.end
    inputs  = Inputs(...)                        # the read APIs' JSON, None where a source failed
    view    = build_overview(inputs, rules)      # -> Overview with five sections, in Cabinet order:
    view.sections() == [roadmap, regulation, readiness, access, awareness]

Every section has `status` (green | amber | red | not_reported, see STATUS_RULES) and `trend` (a Trend: current
and previous-quarter figure, direction, whether that is better). Figures are the APIs' own numbers (no
re-rounding here); the public suppression of small experience cells is applied here with the feedback API's
rule (services.common.disclosure), because our programme-office key reads them unsuppressed.

Fields read when present (added to the other services' APIs later), "not yet reported" when absent:
roadmap summary workstreams[ws].confidence.rating on the five-point scale (green, amber_green, amber, amber_red,
red; the three-point green/amber/red is read too) with .reasons (codes) or .reasons_th/.reasons_en (texts);
experience cells' `mean_trust` and `mean_ease` (1-5). A milestone's latest reason: the last non-empty
`reason` in its due_history (milestone detail), else `latest_reason`, else its status_reasons codes.

Trend sources: experience by the API's from/to per quarter; readiness by fiscal year only (the API has no
as-of date: a trend exists when the previous quarter ended the previous fiscal year); roadmap from the
milestones' current due dates and completion dates (open and overdue at the end of each quarter, counted by the
roadmap's GET /v1/overview; the roadmap keeps no status history, so a milestone re-planned since then counts with
its new due date).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.common.disclosure import CellKey, Suppression, plan_counts, plan_item
from services.contracts.agencies import get_registry
from services.contracts.common_types import AgeGroup, Channel, Competency, Workstream
from services.contracts.roadmap import REASON_LABELS, codes_in_words

FIVE_POINT = ("green", "amber_green", "amber", "amber_red", "red")
CONFIDENCE_LABELS = {
    "green": ("เขียว", "Green"), "amber_green": ("เหลือง/เขียว", "Amber/Green"), "amber": ("เหลือง", "Amber"),
    "amber_red": ("เหลือง/แดง", "Amber/Red"), "red": ("แดง", "Red"),
}
STATUS_LABELS = {
    "green": ("เป็นไปตามแผน", "On track"), "amber": ("ต้องติดตาม", "Needs attention"),
    "red": ("ต้องเร่งแก้ไข", "Off track"), "not_reported": ("ยังไม่มีรายงาน", "Not yet reported"),
}
NOT_REPORTED = ("ยังไม่มีรายงาน", "not yet reported")
STATUS_RULES = {
    "roadmap": ("ตามระดับความเชื่อมั่นของแผนงานรวมที่บริการแผนงานคำนวณ (แดง/เหลือง/เขียว); หน้าหน่วยงาน: แดงเมื่อมีหมุดหมายพลาดกำหนด "
                "เหลืองเมื่อมีหมุดหมายเสี่ยง",
                "The programme's delivery confidence computed by the roadmap service; on an agency page: red if any of its "
                "milestones is missed, amber if any is at risk"),
    "readiness": ("เทียบผู้พร้อมกับเส้นทางเชิงเส้นของปีงบประมาณ: ≥ 90% เขียว, ≥ 70% เหลือง, ต่ำกว่านั้นแดง",
                  "Ready learners against the fiscal year's linear path: >= 90% green, >= 70% amber, else red"),
    "access": ("สัดส่วนผู้พึงพอใจ (ระดับ 4–5): ≥ 80% เขียว, ≥ 60% เหลือง, ต่ำกว่านั้นแดง",
               "Share satisfied (4-5 of 5): >= 80% green, >= 60% amber, else red"),
    "awareness": ("สัดส่วนผู้รู้จักช่องทางดิจิทัล: ≥ 60% เขียว, ≥ 40% เหลือง, ต่ำกว่านั้นแดง",
                  "Share aware of the digital channels: >= 60% green, >= 40% amber, else red"),
}
WORKSTREAM_LABELS = {
    Workstream.roadmap_governance: ("แผนงานและกลไกขับเคลื่อน", "Roadmap and driving mechanism"),
    Workstream.regulation_reform: ("การปรับปรุงกฎระเบียบ", "Regulation revision"),
    Workstream.personnel_readiness: ("ความพร้อมของบุคลากร", "Civil-servant readiness"),
    Workstream.technology_access: ("การเข้าถึงเทคโนโลยีของประชาชน", "Citizens' access to technology"),
    Workstream.public_awareness: ("การสร้างการรับรู้", "Public awareness"),
}
COMPETENCY_LABELS = {
    Competency.digital_technology: ("เทคโนโลยีดิจิทัล", "Digital technology"),
    Competency.academic_knowledge: ("ความรู้ทางวิชาการ", "Academic knowledge"),
    Competency.mindset: ("กรอบความคิด", "Mindset"),
    Competency.public_service: ("การบริการประชาชน", "Public service"),
}
AGE_LABELS = {
    AgeGroup.under_18: ("ต่ำกว่า 18 ปี", "Under 18"), AgeGroup.age_18_24: ("18–24 ปี", "18–24"),
    AgeGroup.age_25_34: ("25–34 ปี", "25–34"), AgeGroup.age_35_44: ("35–44 ปี", "35–44"),
    AgeGroup.age_45_59: ("45–59 ปี", "45–59"), AgeGroup.age_60_plus: ("60 ปีขึ้นไป", "60 and over"),
}
CHANNEL_LABELS = {
    Channel.online_web: ("เว็บไซต์", "Website"), Channel.mobile_app: ("แอปมือถือ", "Mobile app"),
    Channel.line_official_account: ("LINE OA", "LINE OA"), Channel.call_center: ("ศูนย์บริการโทรศัพท์", "Call centre"),
    Channel.walk_in: ("ติดต่อที่สำนักงาน", "Walk-in office"), Channel.mobile_unit: ("หน่วยเคลื่อนที่", "Mobile unit"),
}
OPEN_STATUSES = ("planned", "in_progress", "at_risk", "missed")
# Heat maps of the access section: (measure key in the API's cells, Thai, English, kind, higher is better)
HEAT_MEASURES = (
    ("mean_satisfaction", "ความพึงพอใจ (เฉลี่ย 1–5)", "Satisfaction (mean of 1–5)", "mean", True),
    ("mean_trust", "ความเชื่อมั่น (เฉลี่ย 1–5)", "Trust (mean of 1–5)", "mean", True),
    ("mean_ease", "ความง่ายในการใช้บริการ (เฉลี่ย 1–5)", "Ease (mean of 1–5)", "mean", True),
    ("share_tech_difficulty", "สัดส่วนผู้มีปัญหาด้านเทคโนโลยี", "Share with technology difficulty", "share", False),
)


# --- Thai fiscal quarters -----------------------------------------------------------------------

@dataclass(frozen=True)
class Quarter:
    fiscal_year: int  # Buddhist era
    quarter: int  # 1..4, Q1 = October-December

    @property
    def start(self) -> date:
        year = self.fiscal_year - 543 - (1 if self.quarter == 1 else 0)
        month = 10 if self.quarter == 1 else (self.quarter - 2) * 3 + 1
        return date(year, month, 1)

    @property
    def end(self) -> date:
        nxt = self.next()
        return date.fromordinal(nxt.start.toordinal() - 1)

    def previous(self) -> Quarter:
        return Quarter(self.fiscal_year - 1, 4) if self.quarter == 1 else Quarter(self.fiscal_year, self.quarter - 1)

    def next(self) -> Quarter:
        return Quarter(self.fiscal_year + 1, 1) if self.quarter == 4 else Quarter(self.fiscal_year, self.quarter + 1)

    def label(self, lang: str = "th") -> str:
        return (f"ไตรมาส {self.quarter}/{self.fiscal_year}" if lang == "th"
                else f"Q{self.quarter} FY{self.fiscal_year}")


def quarter_of(day: date) -> Quarter:
    fy = day.year + 543 + (1 if day.month >= 10 else 0)
    q = 1 if day.month >= 10 else (day.month - 1) // 3 + 2
    return Quarter(fy, q)


def quarters_back(q: Quarter, n: int) -> list[Quarter]:
    """`n` quarters ending with `q`, oldest first."""
    out = [q]
    while len(out) < n:
        out.append(out[-1].previous())
    return out[::-1]


# --- shared pieces ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trend:
    current: float | None
    previous: float | None
    higher_is_better: bool = True
    kind: str = "share"  # share | count | mean | ratio
    note: tuple[str, str] | None = None  # why there is no trend, (th, en)
    series: tuple[float | None, ...] = ()  # oldest first, ending with `current`, for sparklines

    @property
    def direction(self) -> str:
        if self.current is None or self.previous is None:
            return "unknown"
        if abs(self.current - self.previous) < 1e-9:
            return "flat"
        return "up" if self.current > self.previous else "down"

    @property
    def better(self) -> bool | None:
        d = self.direction
        if d in ("unknown", "flat"):
            return None
        return (d == "up") == self.higher_is_better

    @property
    def change(self) -> float | None:
        if self.current is None or self.previous is None:
            return None
        return self.current - self.previous


def band(value: float | None, green: float, amber: float) -> str:
    if value is None:
        return "not_reported"
    return "green" if value >= green else "amber" if value >= amber else "red"


def label(mapping: Mapping[Any, tuple[str, str]], key: Any, lang: str) -> str:
    pair = mapping.get(key)
    if pair is None:
        return str(key)
    return pair[0] if lang == "th" else pair[1]


def agency_name(code: str | None, lang: str = "th") -> str:
    if not code:
        return ""
    agency = get_registry().get(code) if code in get_registry() else None
    if agency is None:
        return code
    return agency.name_th if lang == "th" else agency.name_en


# --- roadmap and regulation ---------------------------------------------------------------------

@dataclass(frozen=True)
class WorkstreamRow:
    workstream: str
    rating: str | None  # one of FIVE_POINT, or None: not yet reported
    reasons: tuple[str, ...]  # codes or texts as the roadmap service gave them
    reasons_text: tuple[tuple[str, str], ...]  # (th, en) per reason, for display
    counts: Mapping[str, int]
    total: int
    progress_ratio: float | None
    national: bool  # the rating is the programme-wide one (the API rates workstreams, not agencies)


@dataclass(frozen=True)
class LateMilestone:
    milestone_id: str
    title_th: str
    title_en: str
    workstream: str
    owner_agency: str
    status: str
    due_date: str
    baseline_due_date: str | None
    days_late: int
    slip_days: int  # current due date minus baseline
    latest_reason: tuple[str, str] | None  # (th, en); a stated reason is shown as stated in both


@dataclass(frozen=True)
class RoadmapSection:
    key: str
    status: str
    trend: Trend
    workstreams: tuple[WorkstreamRow, ...]
    late: tuple[LateMilestone, ...]  # listed: missed first (most days late), then at risk
    missed_total: int
    at_risk_total: int
    total: int
    available: bool = True


def milestone_days_late(item: Mapping[str, Any], today: date) -> int:
    """Days past the current due date: to completion if completed late, else to today (0 if not yet due)."""
    due = _iso(item.get("due_date"))
    if due is None:
        return 0
    until = _iso(item.get("completed_on")) or today
    return max(0, (until - due).days)


def open_overdue_at(items: Iterable[Mapping[str, Any]], day: date) -> int:
    """Milestones open and past their (current) due date at the end of `day`."""
    n = 0
    for item in items:
        if item.get("status") in ("cancelled", "unplanned"):
            continue
        due = _iso(item.get("due_date"))
        done = _iso(item.get("completed_on"))
        if due is not None and due < day and (done is None or done > day):
            n += 1
    return n


def latest_reason(item: Mapping[str, Any], detail: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    for entry in reversed(list((detail or {}).get("due_history") or item.get("due_history") or [])):
        reason = entry.get("reason") if isinstance(entry, Mapping) else None
        if isinstance(reason, str) and reason.strip():
            return (reason.strip(), reason.strip())
    stated = item.get("latest_reason")
    if isinstance(stated, str) and stated.strip():
        return (stated.strip(), stated.strip())
    codes = [c for c in item.get("status_reasons") or [] if isinstance(c, str)]
    if codes:
        return codes_in_words(codes)
    return None


def late_milestones(items: Iterable[Mapping[str, Any]], today: date, limit: int,
                    details: Mapping[str, Mapping[str, Any]] | None = None) -> list[LateMilestone]:
    """Missed (most days late first) then at-risk (soonest due first) milestones, at most `limit`."""
    details = details or {}
    chosen = sorted((i for i in items if i.get("status") in ("missed", "at_risk")),
                    key=lambda i: (i.get("status") != "missed", -milestone_days_late(i, today),
                                   str(i.get("due_date") or ""), str(i.get("milestone_id"))))[:limit]
    out = []
    for i in chosen:
        mid = str(i.get("milestone_id"))
        base, due = _iso(i.get("baseline_due_date")), _iso(i.get("due_date"))
        out.append(LateMilestone(
            milestone_id=mid, title_th=str(i.get("title_th") or ""), title_en=str(i.get("title_en") or i.get("title_th") or ""),
            workstream=str(i.get("workstream") or ""), owner_agency=str(i.get("owner_agency") or ""),
            status=str(i.get("status")), due_date=str(i.get("due_date") or ""),
            baseline_due_date=i.get("baseline_due_date"), days_late=milestone_days_late(i, today),
            slip_days=(due - base).days if due and base else 0, latest_reason=latest_reason(i, details.get(mid))))
    return out


def to_listing(milestones: Sequence[Mapping[str, Any]], today: date, limit: int) -> list[str]:
    """Ids of the milestones a section lists (fetch their detail for the latest reason)."""
    return [m.milestone_id for m in late_milestones(milestones, today, limit)]


def confidence_of(entry: Mapping[str, Any] | None) -> tuple[str | None, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(rating, reason codes, reason texts) from a summary workstream entry; rating None when absent."""
    conf = (entry or {}).get("confidence") or {}
    rating = conf.get("rating")
    rating = rating if rating in FIVE_POINT else None
    reasons = tuple(str(r) for r in conf.get("reasons") or [])
    th, en = conf.get("reasons_th"), conf.get("reasons_en")
    if isinstance(th, list) and isinstance(en, list) and len(th) == len(en):
        texts = tuple((str(a), str(b)) for a, b in zip(th, en, strict=True))
    else:
        texts = tuple((_reason_text(r, "th"), _reason_text(r, "en")) for r in reasons)
    return rating, reasons, texts


def _reason_text(code: str, lang: str) -> str:
    """`missed_share>=10%` -> readable words; codes from the roadmap's documented rule."""
    words = {"missed_share": ("สัดส่วนน้ำหนักที่พลาดกำหนด", "share missed"),
             "missed_plus_at_risk_share": ("สัดส่วนพลาด+เสี่ยง", "share missed or at risk"),
             "on_time_share": ("สัดส่วนที่เสร็จตรงเวลา", "share completed on time"),
             "at_risk_share": ("สัดส่วนที่เสี่ยง", "share at risk")}
    for name, pair in words.items():
        if code.startswith(name) and code[len(name):len(name) + 1] in "<>=":
            return (pair[0] if lang == "th" else pair[1]) + " " + code[len(name):]
    return label(REASON_LABELS, code, lang)


def roadmap_digest(items: Sequence[Mapping[str, Any]], agency: str | None, days: Sequence[date]) -> dict[str, Any]:
    """The roadmap's `GET /v1/overview` answer computed from milestone list items (the rule the roadmap runs in
    its database; used when it answers without that route): per workstream the counts by status, the open
    milestones past their due date at the end of each of `days`, and its missed and at-risk milestones,
    earliest due first (all of them; the route gives the first `late`)."""
    out: dict[str, dict[str, Any]] = {}
    keys = [d.isoformat() for d in days]
    for item in items:
        if agency is not None and item.get("owner_agency") != agency or item.get("workstream") is None:
            continue
        entry = out.setdefault(str(item.get("workstream")),
                               {"counts": {}, "open_overdue_at": dict.fromkeys(keys, 0), "missed": [], "at_risk": []})
        status = str(item.get("status"))
        entry["counts"][status] = entry["counts"].get(status, 0) + 1
        if status in ("missed", "at_risk"):
            entry[status].append(item)
    for ws, entry in out.items():
        mine = [i for i in items if i.get("workstream") == ws and (agency is None or i.get("owner_agency") == agency)]
        entry["open_overdue_at"] = {k: open_overdue_at(mine, d) for k, d in zip(keys, days, strict=True)}
        for status in ("missed", "at_risk"):
            # All of them (not only `limit`): late_milestones makes the final choice with its own order.
            entry[status] = sorted(entry[status], key=lambda i: (str(i.get("due_date") or ""), str(i.get("milestone_id"))))
    return {"agency": agency, "at": keys, "workstreams": out}


def roadmap_section(key: str, summary: Mapping[str, Any] | None, items: Sequence[Mapping[str, Any]] | None,
                    today: date, quarter: Quarter, *, agency: str | None, limit: int,
                    details: Mapping[str, Mapping[str, Any]] | None = None,
                    workstreams: Sequence[str] | None = None, digest: Mapping[str, Any] | None = None) -> RoadmapSection:
    """Roadmap (all workstreams) or one workstream's section (`workstreams=["regulation_reform"]`), from the
    roadmap's overview `digest` (GET /v1/overview with at=today and at=the previous quarter's end) or, without
    one, from the milestone list `items`."""
    wanted = list(workstreams or [w.value for w in Workstream])
    prev_end = quarter.previous().end
    if digest is None and items is not None:
        digest = roadmap_digest(items, agency, [today, prev_end])
    if digest is None:
        return RoadmapSection(key, "not_reported", Trend(None, None, False, "count", NOT_REPORTED), (), (), 0, 0, 0, False)
    of_ws = {ws: (digest.get("workstreams") or {}).get(ws) or {} for ws in wanted}
    ws_entries = (summary or {}).get("workstreams") or {}
    rows = []
    for ws in wanted:
        counts = _counts(of_ws[ws].get("counts"))
        entry = ws_entries.get(ws) if agency is None else None
        rating, reasons, texts = confidence_of(entry)
        progress = entry.get("progress_ratio") if entry else None
        if entry and agency is None:  # the API's counts are the authority for the national view
            counts = dict(entry.get("counts") or counts)
        rows.append(WorkstreamRow(ws, rating, reasons, texts, counts, sum(counts.values()), progress, agency is None))
    mine_counts = [_counts(e.get("counts")) for e in of_ws.values()]
    missed = sum(c.get("missed", 0) for c in mine_counts)
    at_risk = sum(c.get("at_risk", 0) for c in mine_counts)
    total = sum(sum(c.values()) for c in mine_counts)

    def overdue(day: date) -> float:
        return float(sum(_counts(e.get("open_overdue_at")).get(day.isoformat(), 0) for e in of_ws.values()))

    trend = Trend(overdue(today), overdue(prev_end), False, "count", series=())
    if agency is None and len(wanted) > 1:
        programme = (summary or {}).get("programme")
        rating = confidence_of(programme)[0]
        status = {"green": "green", "amber_green": "amber", "amber": "amber", "amber_red": "red", "red": "red"}.get(
            rating or "", "not_reported")
    elif agency is None:
        rating = rows[0].rating if rows else None
        status = {"green": "green", "amber_green": "amber", "amber": "amber", "amber_red": "red", "red": "red"}.get(
            rating or "", "not_reported")
    else:
        status = "red" if missed else "amber" if at_risk else ("green" if total else "not_reported")
    listed = [i for e in of_ws.values() for s in ("missed", "at_risk") for i in e.get(s) or [] if isinstance(i, Mapping)]
    late = tuple(late_milestones(listed, today, limit, details))
    return RoadmapSection(key, status, trend, tuple(rows), late, missed, at_risk, total)


def _counts(value: Any) -> dict[str, int]:
    """A {name: count} answer, anything that is not a count dropped (a page never fails on one odd value)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


# --- civil-servant readiness --------------------------------------------------------------------

@dataclass(frozen=True)
class CompetencyRow:
    competency: str
    target: int
    ready: int

    @property
    def ratio(self) -> float | None:
        return self.ready / self.target if self.target else None


@dataclass(frozen=True)
class LaggardRow:
    agency: str
    rank: int | None
    target: int
    ready: int
    expected: float
    gap: float
    ratio: float | None


@dataclass(frozen=True)
class ReadinessSection:
    key: str
    status: str
    trend: Trend
    fiscal_year: int
    rows: tuple[CompetencyRow, ...]
    target: int
    ready: int
    elapsed_ratio: float
    pace: float | None  # ready / expected on the linear path
    laggards: tuple[LaggardRow, ...]
    available: bool = True


def competency_rows(readiness: Mapping[str, Any] | None) -> list[CompetencyRow]:
    totals: dict[str, list[int]] = {c.value: [0, 0] for c in Competency}
    for row in (readiness or {}).get("rows") or []:
        t = totals.setdefault(str(row.get("competency")), [0, 0])
        t[0] += int(row.get("target") or 0)
        t[1] += int(row.get("ready_learners") or 0)
    return [CompetencyRow(c, t, r) for c, (t, r) in totals.items()]


def readiness_section(now: Mapping[str, Any] | None, previous_year: Mapping[str, Any] | None,
                      laggards: Mapping[str, Any] | None, fiscal_year: int, elapsed_ratio: float,
                      quarter: Quarter, *, agency: str | None, limit: int) -> ReadinessSection:
    if now is None:
        return ReadinessSection("readiness", "not_reported", Trend(None, None, note=NOT_REPORTED), fiscal_year, (), 0, 0,
                                elapsed_ratio, None, (), False)
    rows = competency_rows(now)
    target, ready = sum(r.target for r in rows), sum(r.ready for r in rows)
    pace = ready / (target * elapsed_ratio) if target and elapsed_ratio > 0 else None
    status = band(pace, 0.9, 0.7) if target else "not_reported"
    if quarter.quarter == 1 and previous_year is not None:  # previous quarter closed the previous fiscal year
        prev_rows = competency_rows(previous_year)
        p_target, p_ready = sum(r.target for r in prev_rows), sum(r.ready for r in prev_rows)
        trend = Trend(pace, p_ready / p_target if p_target else None, True, "ratio")
    else:
        trend = Trend(pace, None, True, "ratio",
                      ("API ความพร้อมรายงานเฉพาะยอดสะสมของปีงบประมาณ ไม่มีค่า ณ สิ้นไตรมาสก่อน",
                       "the readiness API reports the fiscal year to date only, not the figure at the previous quarter's end"))
    agencies = (laggards or {}).get("agencies") or []
    if agency is not None:
        agencies = [a for a in agencies if a.get("agency") == agency]
    lag = tuple(LaggardRow(str(a.get("agency")), a.get("rank"), int(a.get("target") or 0), int(a.get("ready_learners") or 0),
                           float(a.get("expected") or 0.0), float(a.get("gap") or 0.0), a.get("ratio"))
                for a in agencies[:limit])
    return ReadinessSection("readiness", status, trend, fiscal_year, tuple(rows), target, ready, elapsed_ratio, pace, lag)


# --- citizens' access to technology and public awareness ----------------------------------------

@dataclass(frozen=True)
class HeatCell:
    age_group: str
    channel: str
    value: float | None  # None: suppressed, not reported, or no responses
    responses: int | None  # None when suppressed
    suppressed: bool
    gap: bool  # significantly below the overall share satisfied (the feedback API's test)


@dataclass(frozen=True)
class HeatMap:
    measure: str
    title: tuple[str, str]
    kind: str  # mean | share
    higher_is_better: bool
    reported: bool  # False: the API does not report this measure yet
    cells: Mapping[CellKey, HeatCell]
    ages: tuple[str, ...] = tuple(a.value for a in AgeGroup)
    channels: tuple[str, ...] = tuple(c.value for c in Channel)


@dataclass(frozen=True)
class AccessSection:
    key: str
    status: str
    trend: Trend
    heatmaps: tuple[HeatMap, ...]
    responses: int | None
    share_satisfied: float | None
    mean_satisfaction: float | None
    suppressed_cells: int
    overall_suppressed: bool
    gaps: int  # significant gaps shown (in published cells)
    period: tuple[str, str]
    min_cell: int
    available: bool = True


@dataclass(frozen=True)
class AgeRow:
    age_group: str
    rate: float | None
    responses: int  # published responses the rate is computed from


@dataclass(frozen=True)
class AwarenessSection:
    key: str
    status: str
    trend: Trend
    by_age: tuple[AgeRow, ...]
    rate: float | None
    available: bool = True


@dataclass(frozen=True)
class PublicExperience:
    """One experience answer with the public suppression applied."""

    cells: Mapping[CellKey, Mapping[str, Any]]
    plan: Suppression
    overall: Mapping[str, Any]

    def figure(self, name: str) -> Any:
        return None if self.plan.overall else self.overall.get(name)


def public_experience(answer: Mapping[str, Any] | None, min_cell: int) -> PublicExperience | None:
    if answer is None:
        return None
    cells = {(str(c.get("age_group")), str(c.get("channel"))): c for c in answer.get("cells") or []
             if not c.get("suppressed")}
    plan = plan_counts({k: int(c.get("responses") or 0) for k, c in cells.items()}, min_cell)
    return PublicExperience(cells, plan, answer.get("overall") or {})


def _gap_keys(gaps: Mapping[str, Any] | None) -> set[CellKey]:
    return {(str(g.get("age_group")), str(g.get("channel"))) for g in (gaps or {}).get("gaps") or []
            if not g.get("suppressed")}


# Figures over an optional question: a cell with many responses may hold one or two answers to it, so
# these are hidden by their own answer counts on top of the responses' plan (as the feedback API does).
ITEM_ANSWERS = {"mean_trust": "trust_responses", "mean_ease": "ease_responses"}


def item_plan(exp: PublicExperience, measure: str) -> Suppression:
    answers = ITEM_ANSWERS.get(measure)
    if answers is None:
        return exp.plan
    return plan_item({k: int(c.get(answers) or 0) for k, c in exp.cells.items()}, exp.plan.min_cell or 0, exp.plan)


def heatmap(exp: PublicExperience, measure: str, title: tuple[str, str], kind: str, higher: bool,
            gaps: set[CellKey]) -> HeatMap:
    reported = any(measure in c for c in exp.cells.values())
    plan = item_plan(exp, measure)
    cells = {}
    for key, c in exp.cells.items():
        hidden = plan.hides_key(key)
        value = None if hidden or not reported else c.get(measure)
        cells[key] = HeatCell(key[0], key[1], value, None if hidden else int(c.get("responses") or 0), hidden,
                              (not hidden) and key in gaps)
    return HeatMap(measure, title, kind, higher, reported, cells)


def access_section(now: PublicExperience | None, gaps: Mapping[str, Any] | None,
                   series: Sequence[PublicExperience | None], period: tuple[str, str], min_cell: int) -> AccessSection:
    if now is None:
        return AccessSection("access", "not_reported", Trend(None, None, note=NOT_REPORTED), (), None, None, None, 0,
                             False, 0, period, min_cell, False)
    gap_keys = _gap_keys(gaps)
    # The gap test is on satisfaction: only the satisfaction map carries its marks.
    maps = tuple(heatmap(now, m, (th, en), kind, higher, gap_keys if m == "mean_satisfaction" else set())
                 for m, th, en, kind, higher in HEAT_MEASURES)
    share = now.figure("share_satisfied")
    values = tuple(e.figure("share_satisfied") if e else None for e in series)
    trend = Trend(share, values[-2] if len(values) >= 2 else None, True, "share", series=values)
    return AccessSection("access", band(share, 0.8, 0.6), trend, maps, now.figure("responses"), share,
                         now.figure("mean_satisfaction"), len(now.plan.cells), now.plan.overall,
                         sum(1 for c in maps[0].cells.values() if c.gap), period, min_cell)


def awareness_by_age(exp: PublicExperience, min_cell: int) -> list[AgeRow]:
    """Awareness per age group from the published cells only: a row total would let a reader difference out
    the suppressed cells of that row, so hidden cells never count, and a row under `min_cell` is not shown."""
    rows = []
    for age in AgeGroup:
        n = aware = 0.0
        for (a, _), c in exp.cells.items():
            if a != age.value or exp.plan.hides_key((a, _)) or c.get("awareness_rate") is None:
                continue
            n += int(c.get("responses") or 0)
            aware += float(c["awareness_rate"]) * int(c.get("responses") or 0)
        rows.append(AgeRow(age.value, (aware / n) if n >= min_cell else None, int(n)))
    return rows


def awareness_section(now: PublicExperience | None, series: Sequence[PublicExperience | None],
                      min_cell: int) -> AwarenessSection:
    if now is None:
        return AwarenessSection("awareness", "not_reported", Trend(None, None, note=NOT_REPORTED), (), None, False)
    rate = now.figure("awareness_rate")
    values = tuple(e.figure("awareness_rate") if e else None for e in series)
    trend = Trend(rate, values[-2] if len(values) >= 2 else None, True, "share", series=values)
    return AwarenessSection("awareness", band(rate, 0.6, 0.4), trend, tuple(awareness_by_age(now, min_cell)), rate)


# --- the overview -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rules:
    min_cell: int = 10
    late_listed: int = 10
    laggards_listed: int = 5


@dataclass
class Inputs:
    """What the read APIs answered (None: that source failed or was not asked)."""

    today: date
    quarter: Quarter
    agency: str | None
    summary: Mapping[str, Any] | None = None
    milestones: Sequence[Mapping[str, Any]] | None = None  # every one: only from a roadmap without /v1/overview
    roadmap: Mapping[str, Any] | None = None  # roadmap GET /v1/overview at today and the previous quarter's end
    moved: Sequence[Mapping[str, Any]] | None = None  # GET /v1/milestones?moved=true (the quarterly report's)
    acknowledgements: Mapping[str, Any] | None = None  # notifier GET /v1/acknowledgements/summary (the report's)
    details: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    readiness: Mapping[str, Any] | None = None
    readiness_previous_year: Mapping[str, Any] | None = None
    laggards: Mapping[str, Any] | None = None
    elapsed_ratio: float = 0.0
    experience: Sequence[Mapping[str, Any] | None] = ()  # per quarter, oldest first, the current quarter last
    gaps: Mapping[str, Any] | None = None
    unavailable: tuple[str, ...] = ()  # services that did not answer


@dataclass(frozen=True)
class Overview:
    agency: str | None
    today: date
    quarter: Quarter
    roadmap: RoadmapSection
    regulation: RoadmapSection
    readiness: ReadinessSection
    access: AccessSection
    awareness: AwarenessSection
    unavailable: tuple[str, ...]

    def sections(self) -> list[Any]:
        return [self.roadmap, self.regulation, self.readiness, self.access, self.awareness]


def build_overview(inputs: Inputs, rules: Rules = Rules()) -> Overview:
    q, today = inputs.quarter, inputs.today
    road = roadmap_section("roadmap", inputs.summary, inputs.milestones, today, q, agency=inputs.agency,
                           limit=rules.late_listed, details=inputs.details, digest=inputs.roadmap)
    reg = roadmap_section("regulation", inputs.summary, inputs.milestones, today, q, agency=inputs.agency,
                          limit=rules.late_listed, details=inputs.details, workstreams=[Workstream.regulation_reform.value],
                          digest=inputs.roadmap)
    ready = readiness_section(inputs.readiness, inputs.readiness_previous_year, inputs.laggards, q.fiscal_year,
                              inputs.elapsed_ratio, q, agency=inputs.agency, limit=rules.laggards_listed)
    series = [public_experience(e, rules.min_cell) for e in inputs.experience]
    now = series[-1] if series else None
    period = (q.start.isoformat(), min(today, q.end).isoformat())
    access = access_section(now, inputs.gaps, series, period, rules.min_cell)
    aware = awareness_section(now, series, rules.min_cell)
    return Overview(inputs.agency, today, q, road, reg, ready, access, aware, tuple(inputs.unavailable))


def _iso(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None
