"""HTML of the public pages (server-rendered Jinja2; pure: an Overview in, a string out).

`render_overview(overview, lang, as_of)` draws the five sections; `render_not_found(lang)` the 404 page.
TEMPLATES (the Jinja environment, with the filters below) is shared with the quarterly documents.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from services.contracts.agencies import get_registry
from services.contracts.thai_calendar import BANGKOK, format_thai_date, format_thai_datetime
from services.reports import domain, svg

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)

EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SECTION_TITLES = {
    "roadmap": ("1. แผนงานและกลไกขับเคลื่อน", "1. Roadmap and driving mechanism"),
    "regulation": ("2. การปรับปรุงกฎระเบียบ", "2. Regulation revision"),
    "readiness": ("3. ความพร้อมของข้าราชการ", "3. Civil-servant readiness"),
    "access": ("4. การเข้าถึงเทคโนโลยีของประชาชน", "4. Citizens' access to technology"),
    "awareness": ("5. การรับรู้ของประชาชน", "5. Public awareness"),
}


def be_date(value: date | str | None, lang: str) -> str:
    """Buddhist-era date in both languages (English: `2 Nov 2569 BE`)."""
    if value is None or value == "":
        return "–"
    d = date.fromisoformat(value[:10]) if isinstance(value, str) else value
    if lang == "th":
        return format_thai_date(d)
    return f"{d.day} {EN_MONTHS[d.month - 1]} {d.year + 543} BE"


def be_datetime(value: datetime, lang: str) -> str:
    if lang == "th":
        return format_thai_datetime(value)
    local = value.astimezone(BANGKOK)
    return f"{be_date(local.date(), 'en')}, {local:%H:%M} Bangkok time"


def _t(pair: tuple[str, str] | None, lang: str) -> str:
    if pair is None:
        return ""
    return pair[0] if lang == "th" else pair[1]


TEMPLATES.filters.update(be_date=be_date, fmt=svg.fmt, t=_t)


def context(overview: domain.Overview, lang: str, as_of: datetime) -> dict[str, Any]:
    registry = get_registry()
    agency = registry.get(overview.agency) if overview.agency else None
    q, prev = overview.quarter, overview.quarter.previous()
    def spark(trend: domain.Trend, th: str, en: str) -> Markup:
        if not trend.series:
            return Markup("")
        labels = [x.label(lang) for x in domain.quarters_back(q, len(trend.series))]
        return Markup(svg.sparkline(trend.series, labels, "share", lang, th if lang == "th" else en))

    charts = {
        "heatmaps": [Markup(svg.heatmap(h, lang)) for h in overview.access.heatmaps if h.reported],
        "bars": {r.competency: Markup(svg.progress_bar(r.ready, r.target, overview.readiness.elapsed_ratio, lang,
                                                       domain.label(domain.COMPETENCY_LABELS, r.competency, lang)))
                 for r in overview.readiness.rows},
        "spark_access": spark(overview.access.trend, "ผู้พึงพอใจรายไตรมาส", "Share satisfied by quarter"),
        "spark_awareness": spark(overview.awareness.trend, "การรับรู้รายไตรมาส", "Awareness by quarter"),
    }
    return {
        "lang": lang, "ov": overview, "agency": agency, "as_of": be_datetime(as_of, lang),
        "quarter": q.label(lang), "previous": prev.label(lang), "charts": charts, "domain": domain,
        "agencies": [a for a in registry.all()], "titles": SECTION_TITLES, "rules": domain.STATUS_RULES,
        "not_reported_maps": [h for h in overview.access.heatmaps if not h.reported],
        "period": (be_date(overview.access.period[0], lang), be_date(overview.access.period[1], lang)),
        "switch_href": ("?lang=en" if lang == "th" else "?lang=th"),
        "label": lambda mapping, key: domain.label(mapping, key, lang),
        "agency_name": lambda code: domain.agency_name(code, lang), "zip": zip,
    }


def render_overview(overview: domain.Overview, lang: str, as_of: datetime) -> str:
    return TEMPLATES.get_template("overview.html").render(**context(overview, lang, as_of))


def render_not_found(lang: str) -> str:
    return TEMPLATES.get_template("not_found.html").render(lang=lang, switch_href="?lang=en" if lang == "th" else "?lang=th")
