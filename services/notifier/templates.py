"""Messages people read: Thai first, English below, dates in the Buddhist era (Jinja2 templates)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property, partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.contracts.agencies import get_registry
from services.contracts.roadmap import reason_words
from services.contracts.thai_calendar import BANGKOK, format_thai_date, format_thai_datetime

TEMPLATES = Path(__file__).parent / "templates"

_HEADLINES = {
    # alert type -> (icon, Thai, English)
    "at_risk": ("🟠", "ภารกิจมีความเสี่ยงจะล่าช้า", "Milestone at risk"),
    "missed": ("⚠️", "ภารกิจเลยกำหนด", "Milestone missed"),
    "recovered": ("✅", "ภารกิจกลับมาตามแผน", "Milestone recovered"),
    "rebaselined": ("📅", "ภารกิจที่เลยกำหนดได้กำหนดเสร็จใหม่", "Missed milestone rescheduled"),
}


@dataclass(frozen=True)
class Message:
    """Channel-independent content; each channel lays it out in its own format."""

    subject: str
    text: str
    html_renderer: Callable[[], str] = field(repr=False, compare=False)  # see `html`
    title: str                       # one line, Thai then English
    link: str
    facts: list[tuple[str, str]] = field(default_factory=list)  # label (Thai / English) -> value
    severity: str = "warning"
    ack_url: str | None = None       # the recipient's personal acknowledge link (missed / at-risk milestones)

    def __post_init__(self) -> None:
        # Subject and title are one line whatever the agency typed into a milestone's title: a line break there
        # made the e-mail header unwritable (the owner was never told) and would break a chat title's layout.
        object.__setattr__(self, "subject", one_line(self.subject))
        object.__setattr__(self, "title", one_line(self.title))
        object.__setattr__(self, "facts", [(one_line(k), one_line(v)) for k, v in self.facts])

    @cached_property
    def html(self) -> str:
        """The HTML part, rendered when first read: only e-mail has one, and rendering it was most of a chat
        delivery's Python time."""
        return self.html_renderer()


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def one_line(text: str) -> str:
    """Line breaks and other control characters as one space each run."""
    return _CONTROL.sub(" ", text)


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f\u0085\u2028\u2029]")


def web_link(value: Any) -> str | None:
    """`value` if it is a web address a message may link to (http or https, with a host), else None: a link made
    from what an alert says (Alertmanager's generatorURL) must not be `javascript:` or `data:` in a mail reader,
    Slack or Teams."""
    if not isinstance(value, str) or len(value) > 2000 or _CONTROL_OR_SPACE.search(value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.hostname else None


class Renderer:
    def __init__(self, dashboard_url: str, ack_link: Callable[[dict[str, Any]], str | None] | None = None):
        self.dashboard_url = dashboard_url.rstrip("/")
        self.ack_link = ack_link or (lambda doc: None)
        # auto_reload off: the templates ship with the code, and checking each file's time cost a stat per render.
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, trim_blocks=False,
                               autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
                               auto_reload=False)
        self.registry = get_registry()

    def render(self, doc: dict[str, Any]) -> Message:
        if doc.get("alert_type") == "operational":
            return self._operational(doc)
        if doc.get("kind") == "report":
            return self._report(doc)
        return self._milestone(doc)

    def milestone_link(self, milestone_id: str) -> str:
        return f"{self.dashboard_url}/d/newnormal-roadmap?var-milestone={quote(milestone_id, safe='')}"

    def _agency(self, code: str | None) -> tuple[str, str]:
        agency = self.registry.get(code) if code else None
        if agency is None:
            return (code or "", code or "")
        return agency.name_th, agency.name_en

    def _milestone(self, doc: dict[str, Any]) -> Message:
        alert = doc["alert"]
        alert_type = doc["alert_type"]
        icon, head_th, head_en = _HEADLINES.get(alert_type, ("🔔", "แจ้งเตือนภารกิจ", "Milestone alert"))
        if doc.get("kind") == "test":
            head_th, head_en = f"[ทดสอบ] {head_th}", f"[TEST] {head_en}"
        agency_th, agency_en = self._agency(alert.get("owner_agency"))
        due = _as_date(alert["due_date"])
        projected = _as_date(alert.get("projected_finish"))
        completed = _as_date(alert.get("completed_on"))
        days_late = int(doc.get("days_late_now") or alert.get("days_late") or 0)
        title_th = alert.get("title_th") or alert.get("title_en") or alert["milestone_id"]
        title_en = alert.get("title_en") or alert.get("title_th") or alert["milestone_id"]
        link = self.milestone_link(alert["milestone_id"])
        reason = reason_words(alert.get("reason")) or ("", "")  # codes in words; an agency's own reason as it is
        suffix_th = {"reminder": f" (แจ้งเตือนซ้ำครั้งที่ {doc.get('sequence')})", "escalation": " (ยกระดับ)"}.get(doc.get("kind"), "")
        ctx = dict(
            icon=icon, headline_th=head_th, headline_en=head_en, kind=doc.get("kind"), sequence=doc.get("sequence"),
            title_th=title_th, title_en=title_en, milestone_id=alert["milestone_id"],
            due_th=format_thai_date(due), due_en=due.strftime("%d %b %Y"), days_late=days_late,
            percent=_percent(alert.get("percent_complete", 0)), agency_th=agency_th, agency_en=agency_en,
            projected_th=format_thai_date(projected) if projected else "", projected_en=projected.strftime("%d %b %Y") if projected else "",
            completed_th=format_thai_date(completed) if completed else "", completed_en=completed.strftime("%d %b %Y") if completed else "",
            reason_th=reason[0], reason_en=reason[1], link=link, ack_url=self.ack_link(doc),
        )
        subject = f"{icon} {head_th}{suffix_th}: {title_th} · {head_en}"
        ctx["subject"] = subject
        facts = [("กำหนดเสร็จ / Due", ctx["due_th"]), ("ล่าช้า / Days late", str(days_late)),
                 ("ความคืบหน้า / Complete", f"{ctx['percent']}%"), ("หน่วยงาน / Owner", f"{agency_th} ({agency_en})")]
        severity = {"missed": "critical", "at_risk": "warning", "recovered": "resolved"}.get(alert_type, "info")
        return Message(subject=subject[:250], text=self.env.get_template("milestone.txt.j2").render(ctx).strip(),
                       html_renderer=partial(self.env.get_template("milestone.html.j2").render, ctx),
                       title=f"{icon} {head_th}{suffix_th}: {title_th} · {head_en}: {title_en}", link=link, facts=facts,
                       severity=severity, ack_url=ctx["ack_url"])

    def _operational(self, doc: dict[str, Any]) -> Message:
        op = doc["operational"]
        resolved = op.get("status") == "resolved"
        icon = "✅" if resolved else "🔥"
        head_th = "แก้ไขแล้ว: การแจ้งเตือนระบบ" if resolved else "การแจ้งเตือนระบบ"
        head_en = "Resolved operational alert" if resolved else "Operational alert"
        agency_th, agency_en = self._agency(doc.get("agency")) if doc.get("agency") else ("", "")
        started = as_datetime(op.get("startsAt"))
        ctx = dict(icon=icon, headline_th=head_th, headline_en=head_en, alertname=op.get("alertname", "alert"),
                   severity=op.get("severity") or "none", agency_th=agency_th, agency_en=agency_en,
                   summary=op.get("summary") or "", description=op.get("description") or "",
                   started_th=format_thai_datetime(started) if started else "-",
                   started_en=started.astimezone(BANGKOK).strftime("%d %b %Y %H:%M ICT") if started else "-",
                   labels=sorted((op.get("labels") or {}).items()),
                   link=web_link(op.get("generatorURL")) or web_link(op.get("externalURL")) or self.dashboard_url)
        subject = f"{icon} {head_th}: {ctx['alertname']} · {head_en}"
        ctx["subject"] = subject
        facts = [("ระดับ / Severity", ctx["severity"]), ("สถานะ / Status", op.get("status", "firing"))]
        if agency_th:
            facts.append(("หน่วยงาน / Agency", f"{agency_th} ({agency_en})"))
        return Message(subject=subject[:250], text=self.env.get_template("operational.txt.j2").render(ctx).strip(),
                       html_renderer=partial(self.env.get_template("operational.html.j2").render, ctx), title=subject, link=ctx["link"],
                       facts=facts, severity="resolved" if resolved else (op.get("severity") or "warning"))


    def _report(self, doc: dict[str, Any]) -> Message:
        """A quarterly report announced by the reports service (services/notifier/reports.py)."""
        r = doc["report"]
        agency_th, agency_en = self._agency(r.get("report_agency")) if r.get("report_agency") else (
            "ทุกหน่วยงาน", "whole programme")
        as_of = as_datetime(r.get("data_as_of"))
        status_th = {"green": "เป็นไปตามแผน", "amber": "ต้องติดตาม", "red": "ต้องเร่งแก้ไข",
                     "not_reported": "ยังไม่มีรายงาน"}
        sections = [("แผนงานและกลไกขับเคลื่อน", "roadmap"), ("การปรับปรุงกฎระเบียบ", "regulation"),
                    ("ความพร้อมของข้าราชการ", "readiness"), ("การเข้าถึงเทคโนโลยีของประชาชน", "access"),
                    ("การรับรู้ของประชาชน", "awareness")]
        ctx = dict(quarter=r["quarter"], fiscal_year=r["fiscal_year"], agency_th=agency_th, agency_en=agency_en,
                   as_of_th=format_thai_datetime(as_of) if as_of else "-",
                   statuses=[(th, status_th.get(r.get("section_status", {}).get(key, ""), "-"),
                              r.get("section_status", {}).get(key, "-")) for th, key in sections],
                   schedule_changes=r.get("schedule_changes", 0), flagged=r.get("flagged_slips", 0),
                   unavailable=", ".join(r.get("unavailable") or []), link=r["pdf_url"], html_url=r["html_url"],
                   xlsx_url=r["xlsx_url"])
        subject = (f"📊 รายงานความก้าวหน้า ไตรมาส {r['quarter']}/{r['fiscal_year']} ({agency_th}) · "
                   f"Quarterly report Q{r['quarter']} FY{r['fiscal_year']}")
        ctx["subject"] = subject
        facts = [(f"{th} / {key}", label) for th, label, key in ctx["statuses"]]
        facts.append(("เลื่อน > 30 วันไม่แจ้งเหตุผล / Slips > 30 days without reason", str(ctx["flagged"])))
        return Message(subject=subject[:250], text=self.env.get_template("report.txt.j2").render(ctx).strip(),
                       html_renderer=partial(self.env.get_template("report.html.j2").render, ctx), title=subject, link=ctx["link"],
                       facts=facts, severity="info")


def _as_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(BANGKOK).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        text = str(value).replace("Z", "+00:00")
        # Alertmanager sends nanoseconds; Python keeps microseconds.
        if "." in text:
            head, _, rest = text.partition(".")
            frac = "".join(itertools.takewhile(str.isdigit, rest))
            tz = rest[len(frac):]
            text = f"{head}.{frac[:6]}{tz}"
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else None
    except ValueError:
        return None


def _percent(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "0"
    return f"{number:.0f}" if number == int(number) else f"{number:.1f}"
