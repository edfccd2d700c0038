"""The simulated world: agencies' programme plans, training and citizen feedback, as CloudEvents.

Pure and reproducible: everything comes from one `random.Random(seed)` and an injected start
instant, so the same seed and start give the same events (ids, times, contents). No I/O here;
`sender.py` puts the events on the wire.

Realism the dashboards rely on:
- a programme plan of 40-60 milestones over the five workstreams, due across the current
  fiscal year; past milestones are mostly completed, some were rescheduled, a few are missed
  (due date passed, no completion); open ones report progress, some behind schedule (slip);
- training targets per agency x competency for the fiscal year and completions that follow a
  logistic adoption curve with parameters of each agency's own;
- citizen feedback whose channel mix, tech difficulty and awareness of digital channels depend
  on the age group (older people use walk-in and call centre more, report more difficulty and
  know the digital channels less).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.contracts.agencies import PROGRAMME_OFFICE, get_registry
from services.contracts.common_types import AgeGroup, Channel, Competency, TechDifficulty, Workstream
from services.contracts.events import (
    FEEDBACK_RESPONSE_SUBMITTED,
    MILESTONE_COMPLETED,
    MILESTONE_PLANNED,
    MILESTONE_PROGRESSED,
    MILESTONE_RESCHEDULED,
    TRAINING_COURSE_COMPLETED,
    TRAINING_TARGET_SET,
)
from services.contracts.provinces import PROVINCE_CODES
from services.contracts.thai_calendar import bangkok_day, fiscal_year_bounds, fiscal_year_of

SPECVERSION = "1.0"
MIN_MILESTONES, MAX_MILESTONES = 40, 60

# (Thai, English) milestone titles per workstream of the Cabinet decision.
MILESTONE_TEMPLATES: dict[Workstream, list[tuple[str, str]]] = {
    Workstream.roadmap_governance: [
        ("จัดทำแผนปฏิบัติราชการวิถีใหม่", "Adopt the New Normal action plan"),
        ("แต่งตั้งคณะทำงานขับเคลื่อน", "Appoint the steering working group"),
        ("รายงานความก้าวหน้ารายไตรมาส", "Quarterly progress report to the Cabinet"),
        ("ประเมินผลกลางปี", "Mid-year evaluation"),
        ("ทบทวนตัวชี้วัดผลสัมฤทธิ์", "Review outcome indicators"),
    ],
    Workstream.regulation_reform: [
        ("ปรับปรุงระเบียบการทำงานนอกสถานที่", "Amend the remote-work regulation"),
        ("ยกเลิกสำเนาเอกสารราชการ", "Abolish paper copies of official documents"),
        ("ออกประกาศการลงลายมือชื่ออิเล็กทรอนิกส์", "Issue the e-signature notification"),
        ("ทบทวนกฎหมายใบอนุญาต", "Review licensing laws"),
        ("ปรับปรุงระเบียบงานสารบรรณ", "Update the correspondence regulation"),
    ],
    Workstream.personnel_readiness: [
        ("หลักสูตรทักษะดิจิทัลสำหรับข้าราชการ", "Digital-skills curriculum for civil servants"),
        ("ประเมินสมรรถนะดิจิทัล", "Digital competency assessment"),
        ("อบรมผู้บริหารระดับสูง", "Executive training cohort"),
        ("ระบบประเมินผลงานแบบยืดหยุ่น", "Flexible performance appraisal"),
        ("เครือข่ายผู้นำการเปลี่ยนแปลง", "Change-agent network"),
    ],
    Workstream.technology_access: [
        ("เชื่อมโยงข้อมูลผ่านระบบกลาง", "Connect to the government data exchange"),
        ("บริการออนไลน์ครบวงจร", "End-to-end online service"),
        ("ระบบนัดหมายล่วงหน้า", "Online appointment system"),
        ("ย้ายระบบขึ้นคลาวด์ภาครัฐ", "Move systems to the government cloud"),
        ("แอปพลิเคชันบริการประชาชน", "Citizen service mobile app"),
    ],
    Workstream.public_awareness: [
        ("รณรงค์ประชาสัมพันธ์ช่องทางดิจิทัล", "Digital-channel awareness campaign"),
        ("จุดช่วยเหลือผู้สูงอายุ", "Assisted-digital desks for older citizens"),
        ("สำรวจความพึงพอใจประชาชน", "Citizen satisfaction survey"),
        ("หน่วยบริการเคลื่อนที่", "Mobile service units"),
        ("คู่มือบริการภาษาง่าย", "Plain-language service guides"),
    ],
}

RESCHEDULE_REASONS = [
    "รองบประมาณเพิ่มเติม (awaiting supplementary budget)",
    "ผู้รับจ้างส่งมอบล่าช้า (contractor delivery delayed)",
    "รอการแก้ไขกฎหมายที่เกี่ยวข้อง (awaiting a related legal amendment)",
    "ปรับขอบเขตตามมติคณะทำงาน (scope revised by the working group)",
]

COURSES: dict[Competency, list[tuple[str, str]]] = {
    Competency.digital_technology: [("DG-101", "ทักษะดิจิทัลพื้นฐาน (Digital literacy)"),
                                    ("DG-201", "การวิเคราะห์ข้อมูล (Data analytics)"),
                                    ("DG-301", "ความมั่นคงปลอดภัยไซเบอร์ (Cybersecurity)")],
    Competency.academic_knowledge: [("AK-110", "กฎหมายรัฐบาลดิจิทัล (Digital government law)"),
                                    ("AK-210", "การออกแบบนโยบาย (Policy design)")],
    Competency.mindset: [("MS-100", "วิธีคิดแบบวิถีใหม่ (New Normal mindset)"),
                         ("MS-200", "การทำงานแบบคล่องตัว (Agile ways of working)")],
    Competency.public_service: [("PS-120", "การออกแบบบริการ (Service design)"),
                                ("PS-220", "บริการที่เข้าถึงได้ (Accessible services)")],
}

SERVICES_OFFERED = [
    "ขอหนังสือรับรอง (certificate request)", "ยื่นคำร้องออนไลน์ (online application)",
    "ชำระค่าธรรมเนียม (fee payment)", "ต่ออายุใบอนุญาต (licence renewal)",
    "ตรวจสอบสถานะคำขอ (application status)", "แจ้งเรื่องร้องเรียน (complaint)",
]

# Population share of respondents per age group.
AGE_WEIGHTS: dict[AgeGroup, float] = {
    AgeGroup.under_18: 0.04, AgeGroup.age_18_24: 0.14, AgeGroup.age_25_34: 0.22,
    AgeGroup.age_35_44: 0.21, AgeGroup.age_45_59: 0.24, AgeGroup.age_60_plus: 0.15,
}
_AGE_ORDER = list(AGE_WEIGHTS)
# Channel mix per age group: digital channels fade and walk-in / call centre grow with age.
CHANNEL_WEIGHTS: dict[AgeGroup, dict[Channel, float]] = {
    AgeGroup.under_18: {Channel.online_web: 0.25, Channel.mobile_app: 0.35, Channel.line_official_account: 0.25,
                        Channel.call_center: 0.03, Channel.walk_in: 0.10, Channel.mobile_unit: 0.02},
    AgeGroup.age_18_24: {Channel.online_web: 0.28, Channel.mobile_app: 0.32, Channel.line_official_account: 0.24,
                         Channel.call_center: 0.04, Channel.walk_in: 0.10, Channel.mobile_unit: 0.02},
    AgeGroup.age_25_34: {Channel.online_web: 0.30, Channel.mobile_app: 0.28, Channel.line_official_account: 0.22,
                         Channel.call_center: 0.06, Channel.walk_in: 0.12, Channel.mobile_unit: 0.02},
    AgeGroup.age_35_44: {Channel.online_web: 0.27, Channel.mobile_app: 0.22, Channel.line_official_account: 0.20,
                         Channel.call_center: 0.10, Channel.walk_in: 0.18, Channel.mobile_unit: 0.03},
    AgeGroup.age_45_59: {Channel.online_web: 0.18, Channel.mobile_app: 0.12, Channel.line_official_account: 0.18,
                         Channel.call_center: 0.17, Channel.walk_in: 0.30, Channel.mobile_unit: 0.05},
    AgeGroup.age_60_plus: {Channel.online_web: 0.06, Channel.mobile_app: 0.04, Channel.line_official_account: 0.10,
                           Channel.call_center: 0.27, Channel.walk_in: 0.43, Channel.mobile_unit: 0.10},
}
# P(some), P(severe) tech difficulty and P(aware of digital channels) per age group.
DIFFICULTY: dict[AgeGroup, tuple[float, float]] = {
    AgeGroup.under_18: (0.10, 0.02), AgeGroup.age_18_24: (0.10, 0.02), AgeGroup.age_25_34: (0.14, 0.03),
    AgeGroup.age_35_44: (0.22, 0.05), AgeGroup.age_45_59: (0.32, 0.10), AgeGroup.age_60_plus: (0.38, 0.27),
}
AWARENESS: dict[AgeGroup, float] = {
    AgeGroup.under_18: 0.85, AgeGroup.age_18_24: 0.90, AgeGroup.age_25_34: 0.88,
    AgeGroup.age_35_44: 0.78, AgeGroup.age_45_59: 0.60, AgeGroup.age_60_plus: 0.35,
}
DIGITAL = frozenset({Channel.online_web, Channel.mobile_app, Channel.line_official_account})
# Mix of the live stream (relative weights).
STREAM_MIX = {"feedback": 0.70, "training": 0.25, "roadmap": 0.05}


@dataclass
class Milestone:
    milestone_id: str
    workstream: Workstream
    owner: str
    title_th: str
    title_en: str
    due: date
    fate: str  # completed | rescheduled | missed | slipping | on_track
    new_due: date | None = None
    percent: float = 0.0
    completed_on: date | None = None
    depends_on: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Adoption:
    """Logistic adoption curve of one agency: share trained = ceiling / (1 + e^(-steepness (f - midpoint)))
    where f is the elapsed fraction of the fiscal year."""

    ceiling: float
    midpoint: float
    steepness: float

    def share(self, f: float) -> float:
        return self.ceiling / (1 + math.exp(-self.steepness * (f - self.midpoint)))

    def rate(self, f: float) -> float:
        """Derivative of `share`: how fast the agency is training people at this point of the year."""
        s = 1 / (1 + math.exp(-self.steepness * (f - self.midpoint)))
        return self.ceiling * self.steepness * s * (1 - s)


def _event(rng: random.Random, type_: str, agency: str, source_path: str, when: datetime, data: dict[str, Any],
           subject: str | None = None) -> dict[str, Any]:
    event = {
        "specversion": SPECVERSION,
        # Ids from the seeded generator: the same seed gives the same ids, so a re-run is deduplicated.
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "source": f"/agencies/{agency}/{source_path}",
        "type": type_,
        "agency": agency,
        "time": _iso(when),
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject:
        event["subject"] = subject
    return event


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _weighted(rng: random.Random, weights: dict[Any, float]) -> Any:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


class World:
    """The simulated agencies for one seed, one start instant and one fiscal year."""

    def __init__(self, seed: int, start: datetime, agencies: int = 12, training_scale: float = 1.0,
                 progress_step: float = 1.0):
        """`progress_step`: how far one progress report moves a milestone, relative to a demo's (a long run, such
        as the full fault run, makes it small so that the plan does not finish and its reports dry up)."""
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        registry = get_registry()
        if not 1 <= agencies <= len(registry):
            raise ValueError(f"agencies must be between 1 and {len(registry)}")
        self.seed = seed
        self.start = start
        self.progress_step = progress_step
        self.rng = random.Random(seed)
        codes = sorted(c for c in registry.codes() if c != PROGRAMME_OFFICE)
        # The programme office always takes part: it owns the governance milestones.
        self.agencies = [PROGRAMME_OFFICE, *sorted(self.rng.sample(codes, agencies - 1))]
        self.fiscal_year = fiscal_year_of(start)
        self.fy_first, self.fy_last = fiscal_year_bounds(self.fiscal_year)
        self.today = bangkok_day(start)
        self.adoption = {a: Adoption(ceiling=self.rng.uniform(0.55, 0.98), midpoint=self.rng.uniform(0.2, 0.8),
                                     steepness=self.rng.uniform(6, 14)) for a in self.agencies}
        self.targets = {(a, c): max(5, int(self.rng.lognormvariate(math.log(120 * training_scale), 0.6)))
                        for a in self.agencies for c in Competency}
        self.provinces = sorted(PROVINCE_CODES)
        self.milestones = self._plan()

    # --- roadmap -----------------------------------------------------------------------------
    def fy_fraction(self, when: datetime) -> float:
        days = (self.fy_last - self.fy_first).days + 1
        return min(1.0, max(0.0, (bangkok_day(when) - self.fy_first).days / days))

    def _plan(self) -> list[Milestone]:
        rng = self.rng
        count = rng.randint(MIN_MILESTONES, MAX_MILESTONES)
        workstreams = list(Workstream)
        span = (self.fy_last - self.fy_first).days
        # At least a quarter of the plan lies in the past so completed, rescheduled and missed
        # milestones exist even early in the fiscal year.
        past_window = max(45, (self.today - self.fy_first).days)
        milestones: list[Milestone] = []
        for n in range(count):
            ws = workstreams[n % len(workstreams)] if n < len(workstreams) else rng.choice(workstreams)
            title_th, title_en = rng.choice(MILESTONE_TEMPLATES[ws])
            owner = PROGRAMME_OFFICE if ws is Workstream.roadmap_governance and rng.random() < 0.5 else rng.choice(self.agencies)
            if n % 4 == 0 or rng.random() < 0.1:
                due = self.today - timedelta(days=rng.randint(3, past_window))
            else:
                due = self.today + timedelta(days=rng.randint(7, max(8, (self.fy_last - self.today).days or span)))
            mid = f"NN{self.fiscal_year}-{ws.value[:3].upper()}-{n + 1:03d}"
            milestones.append(Milestone(mid, ws, owner, f"{title_th} ({self.agency_label(owner)})", title_en, due, "on_track"))
        past = [m for m in milestones if m.due < self.today]
        future = [m for m in milestones if m.due >= self.today]
        rng.shuffle(past)
        # A few missed, some rescheduled, the rest completed (some late).
        n_missed = max(2, round(len(past) * 0.15))
        n_resched = max(2, round(len(past) * 0.2))
        for i, m in enumerate(past):
            if i < n_missed:
                m.fate, m.percent = "missed", round(rng.uniform(20, 85))
            elif i < n_missed + n_resched:
                m.fate, m.percent = "rescheduled", round(rng.uniform(30, 70))
                m.new_due = self.today + timedelta(days=rng.randint(20, 120))
            else:
                m.fate, m.percent = "completed", 100.0
                m.completed_on = min(self.today - timedelta(days=1), m.due + timedelta(days=rng.randint(-20, 5)))
        # The plan is adopted before the fiscal year and at least 45 days before the first due date.
        self.plan_day = min(self.fy_first, min(m.due for m in milestones) - timedelta(days=45))
        for m in future:
            # Share of the time from the plan to the due date already gone: on-track work is a little
            # ahead of it (so the roadmap's projected finish falls before the due date), slipping work behind.
            planned_share = (self.today - self.plan_day).days / max(1, (m.due - self.plan_day).days)
            if rng.random() < 0.25:
                m.fate, m.percent = "slipping", round(max(0.0, planned_share * 100 - rng.uniform(25, 45)))
            else:
                m.fate, m.percent = "on_track", round(min(95.0, planned_share * 100 + rng.uniform(5, 15)))
        # A light dependency graph inside each workstream: a later milestone depends on an earlier one.
        by_ws: dict[Workstream, list[Milestone]] = {}
        for m in sorted(milestones, key=lambda m: m.due):
            earlier = by_ws.setdefault(m.workstream, [])
            if earlier and rng.random() < 0.3:
                m.depends_on = [rng.choice(earlier).milestone_id]
            earlier.append(m)
        return milestones

    def agency_label(self, code: str) -> str:
        agency = get_registry().get(code)
        return agency.name_th if agency else code

    def _at(self, d: date, hour: int = 10) -> datetime:
        """An instant on Bangkok day d (never after the start instant)."""
        when = datetime(d.year, d.month, d.day, hour - 7, self.rng.randint(0, 59), tzinfo=UTC)
        return min(when, self.start)

    def plan_events(self) -> list[dict[str, Any]]:
        """`roadmap.milestone.planned` for the whole plan (sent with the programme office's key)."""
        return [_event(self.rng, MILESTONE_PLANNED, m.owner, "roadmap-plan", self._at(self.plan_day, 9), {
            "milestone_id": m.milestone_id, "title_th": m.title_th, "title_en": m.title_en,
            "workstream": m.workstream.value, "owner_agency": m.owner, "due_date": m.due.isoformat(),
            "weight": float(self.rng.choice([1, 1, 2, 3])), "depends_on": m.depends_on,
        }, subject=m.milestone_id) for m in self.milestones]

    def roadmap_history(self) -> list[dict[str, Any]]:
        """What agencies reported up to the start: progress, completions, reschedules (missed ones stay open)."""
        events = []
        for m in self.milestones:
            reported = self.today - timedelta(days=self.rng.randint(1, 10))
            if m.fate == "completed":
                assert m.completed_on is not None
                events.append(self._progress(m, 60.0, self._at(m.completed_on - timedelta(days=14))))
                events.append(_event(self.rng, MILESTONE_COMPLETED, m.owner, "pmo-system",
                                     self._at(m.completed_on, 16), {"milestone_id": m.milestone_id,
                                                                    "completed_on": m.completed_on.isoformat(),
                                                                    "evidence": "รายงานผลการดำเนินงาน (completion report)"},
                                     subject=m.milestone_id))
            elif m.fate == "rescheduled":
                assert m.new_due is not None
                events.append(self._progress(m, m.percent, self._at(m.due - timedelta(days=10))))
                events.append(_event(self.rng, MILESTONE_RESCHEDULED, m.owner, "pmo-system",
                                     self._at(m.due - timedelta(days=3), 14),
                                     {"milestone_id": m.milestone_id, "new_due_date": m.new_due.isoformat(),
                                      "reason": self.rng.choice(RESCHEDULE_REASONS),
                                      "approved_by": "คณะทำงานขับเคลื่อน (steering group)"}, subject=m.milestone_id))
            elif m.fate == "missed":
                events.append(self._progress(m, m.percent, self._at(m.due - timedelta(days=10))))
            elif m.percent > 0:
                events.append(self._progress(m, m.percent, self._at(reported)))
        return sorted(events, key=lambda e: e["time"])

    def _progress(self, m: Milestone, percent: float, when: datetime) -> dict[str, Any]:
        return _event(self.rng, MILESTONE_PROGRESSED, m.owner, "pmo-system", when,
                      {"milestone_id": m.milestone_id, "percent_complete": float(min(100.0, max(0.0, percent))),
                       "as_of": _iso(when)}, subject=m.milestone_id)

    # --- training ----------------------------------------------------------------------------
    def target_events(self) -> list[dict[str, Any]]:
        when = self._at(self.fy_first, 9)
        return [_event(self.rng, TRAINING_TARGET_SET, a, "hr-system", when, {
            "agency": a, "competency": c.value, "fiscal_year": self.fiscal_year, "headcount": n,
        }, subject=f"{a}:{c.value}:{self.fiscal_year}") for (a, c), n in self.targets.items()]

    def training_history(self, limit: int = 3000) -> list[dict[str, Any]]:
        """Completions so far, per agency x competency as its adoption curve says at the start (scaled to `limit`)."""
        f = self.fy_fraction(self.start)
        due = {(a, c): round(n * self.adoption[a].share(f)) for (a, c), n in self.targets.items()}
        total = sum(due.values())
        scale = min(1.0, limit / total) if total else 0.0
        days = max(1, (self.today - self.fy_first).days)
        events = []
        for (agency, comp), n in due.items():
            for _ in range(round(n * scale)):
                # Completion days follow the curve: sample the share, invert to a day.
                day = self.fy_first + timedelta(days=min(days - 1, int(self.rng.triangular(0, days, days))))
                events.append(self._completion(agency, comp, self._at(day, self.rng.randint(9, 16))))
        return sorted(events, key=lambda e: e["time"])

    def _completion(self, agency: str, comp: Competency, when: datetime) -> dict[str, Any]:
        course_id, title = self.rng.choice(COURSES[comp])
        passed = self.rng.random() < 0.9
        return _event(self.rng, TRAINING_COURSE_COMPLETED, agency, "lms", when, {
            "agency": agency, "learner_ref": f"L-{self.rng.getrandbits(48):012x}", "course_id": course_id,
            "course_title": title, "competency": comp.value, "hours": float(self.rng.choice([3, 6, 6, 12, 18])),
            "completed_on": bangkok_day(when).isoformat(), "passed": passed,
            "score": round(self.rng.uniform(60, 100) if passed else self.rng.uniform(20, 59), 1),
        })

    def training_completion(self, when: datetime) -> dict[str, Any]:
        """One live completion: agencies in the steep part of their curve train fastest."""
        f = self.fy_fraction(when)
        weights = {(a, c): n * (self.adoption[a].rate(f) + 0.01) for (a, c), n in self.targets.items()}
        agency, comp = _weighted(self.rng, weights)
        return self._completion(agency, comp, when)

    # --- feedback ----------------------------------------------------------------------------
    def feedback_response(self, when: datetime) -> dict[str, Any]:
        rng = self.rng
        agency = rng.choice(self.agencies)
        age = _weighted(rng, AGE_WEIGHTS)
        channel = _weighted(rng, CHANNEL_WEIGHTS[age])
        p_some, p_severe = DIFFICULTY[age]
        if channel in DIGITAL:
            # Those who already use a digital channel struggle less with it.
            p_some, p_severe = p_some * 0.8, p_severe * 0.6
        roll = rng.random()
        difficulty = TechDifficulty.severe if roll < p_severe else TechDifficulty.some if roll < p_severe + p_some else TechDifficulty.none
        aware = channel in DIGITAL or rng.random() < AWARENESS[age]
        base = 4.1 - {TechDifficulty.none: 0, TechDifficulty.some: 0.6, TechDifficulty.severe: 1.4}[difficulty]
        satisfaction = max(1, min(5, round(rng.gauss(base, 0.7))))
        data: dict[str, Any] = {
            "agency": agency, "service_name": rng.choice(SERVICES_OFFERED), "channel": channel.value,
            "age_group": age.value, "satisfaction": satisfaction,
            "ease": max(1, min(5, satisfaction + rng.choice([-1, 0, 0, 1]))),
            "trust": max(1, min(5, round(rng.gauss(3.8, 0.8)))),
            "tech_difficulty": difficulty.value, "aware_of_digital_channels": aware,
            "province": rng.choice(self.provinces), "submitted_at": _iso(when),
        }
        return _event(rng, FEEDBACK_RESPONSE_SUBMITTED, agency, "feedback-kiosk" if channel is Channel.walk_in else "survey",
                      when, data)

    # --- roadmap live ------------------------------------------------------------------------
    def roadmap_update(self, when: datetime) -> dict[str, Any]:
        """A progress report (or completion) on an open milestone; slipping ones move slowly, missed ones not at all."""
        open_ = [m for m in self.milestones if m.fate in ("on_track", "slipping", "rescheduled") and m.completed_on is None]
        if not open_:
            return self.feedback_response(when)
        m = self.rng.choice(open_)
        # Small steps: a demo of an hour moves milestones along without finishing the whole plan.
        step = (self.rng.uniform(0.05, 0.3) if m.fate == "slipping" else self.rng.uniform(0.2, 1.0)) * self.progress_step
        m.percent = min(100.0, m.percent + step)
        if m.percent >= 100.0:
            m.completed_on = bangkok_day(when)
            return _event(self.rng, MILESTONE_COMPLETED, m.owner, "pmo-system", when,
                          {"milestone_id": m.milestone_id, "completed_on": m.completed_on.isoformat()},
                          subject=m.milestone_id)
        return self._progress(m, round(m.percent, 1), when)

    # --- the whole run -----------------------------------------------------------------------
    def initial_events(self, training_history_limit: int = 3000) -> list[dict[str, Any]]:
        """The state of the world at the start: plan, targets, what was reported so far."""
        return [*self.plan_events(), *self.target_events(), *self.roadmap_history(),
                *self.training_history(training_history_limit)]

    def stream(self, clock_step: float, origin: datetime | None = None) -> Iterator[tuple[float, dict[str, Any]]]:
        """Live events forever as (simulated seconds after the start, event).

        `clock_step` is the mean simulated time between two events (speedup / rate): arrivals are
        a Poisson process, so the simulated clock advances by exponential gaps. Simulated time
        starts at `origin` (default: the start instant).
        """
        origin = origin or self.start
        offset = 0.0
        kinds = list(STREAM_MIX)
        weights = [STREAM_MIX[k] for k in kinds]
        while True:
            offset += self.rng.expovariate(1 / clock_step) if clock_step > 0 else 0.0
            when = origin + timedelta(seconds=offset)
            kind = self.rng.choices(kinds, weights=weights)[0]
            if kind == "feedback":
                yield offset, self.feedback_response(when)
            elif kind == "training":
                yield offset, self.training_completion(when)
            else:
                yield offset, self.roadmap_update(when)
