"""The quarterly report as one HTML document (pure): the web version and, through WeasyPrint, the PDF.

`render_html(report, lang="th", for_print=False)`: every figure comes from `quarterly.tables(report)`, the charts
from the same overview as the public pages (services.reports.svg). `for_print` adds the paged-media parts
(cover page, table of contents with page numbers, running footer) that only a PDF can fill in.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from services.contracts.thai_calendar import format_thai_date
from services.reports import domain, pages, quarterly, svg

# Thai headings of the published columns (the XLSX keeps the English names: they are the import interface).
COLUMN_LABELS = {
    "workstream": "แผนงาน", "workstream_th": "แผนงาน", "confidence": "ระดับความเชื่อมั่น",
    "confidence_reasons_th": "เหตุผล", "milestones": "หมุดหมาย", "planned": "ตามแผน", "in_progress": "ดำเนินการ",
    "at_risk": "เสี่ยง", "missed": "พลาดกำหนด", "completed": "เสร็จ", "cancelled": "ยกเลิก", "unplanned": "ยังไม่วางแผน",
    "progress_ratio": "ความคืบหน้า", "milestone_id": "รหัส", "title_th": "หมุดหมาย", "title_en": "Milestone",
    "owner_agency": "หน่วยงาน", "status": "สถานะ", "due_date": "กำหนดปัจจุบัน", "baseline_due_date": "กำหนดเดิม",
    "days_late": "ล่าช้า (วัน)", "latest_reason": "เหตุผลล่าสุด", "fiscal_year": "ปีงบประมาณ",
    "competency": "สมรรถนะ", "competency_th": "สมรรถนะ", "target": "เป้าหมาย", "ready_learners": "ผู้พร้อม",
    "ready_ratio": "สัดส่วน", "rank": "ลำดับ", "agency": "หน่วยงาน", "agency_th": "หน่วยงาน",
    "expected": "ควรถึง (เชิงเส้น)", "gap": "ส่วนต่าง", "measure": "ตัวชี้วัด", "age_group": "ช่วงอายุ",
    "age_group_th": "ช่วงอายุ", "channel": "ช่องทาง", "value": "ค่า", "responses": "ผู้ตอบ",
    "suppressed": "ปกปิด", "significant_gap": "ต่ำอย่างมีนัยสำคัญ", "awareness_rate": "อัตราการรับรู้",
    "current_due_date": "กำหนดปัจจุบัน", "variance_days": "ต่าง (วัน)", "stated_reason": "เหตุผลที่แจ้ง",
    "flag_over_30_days_no_reason": "เลื่อน > 30 วัน ไม่แจ้งเหตุผล", "figure_th": "ตัวเลข", "episodes": "ที่แจ้ง",
    "acknowledged": "รับทราบ", "acknowledged_share": "สัดส่วนรับทราบ", "median_hours_to_acknowledge": "ชั่วโมงจนรับทราบ",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # agencies' text: no glyph, only a box
# Columns left out of the printed tables (codes duplicated by their Thai label, English titles).
HIDDEN_IN_PRINT = {"workstream", "competency", "age_group", "title_en", "fiscal_year", "agency", "figure"}
SHARE_COLUMNS = {"progress_ratio", "ready_ratio", "awareness_rate", "acknowledged_share"}
DATE_COLUMNS = {"due_date", "baseline_due_date", "current_due_date"}
MEASURE_KIND = {m: kind for m, _, _, kind, _ in domain.HEAT_MEASURES}
STATUS_TH = {"planned": "ตามแผน", "in_progress": "ดำเนินการ", "at_risk": "เสี่ยง", "missed": "พลาดกำหนด",
             "completed": "เสร็จ", "cancelled": "ยกเลิก", "unplanned": "ยังไม่วางแผน"}


def cell(column: str, value: Any, row: dict[str, Any]) -> str:
    """One figure as a Cabinet reader reads it (the XLSX keeps the raw value)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "ใช่" if value else ""
    if column in SHARE_COLUMNS or (column == "value" and str(row.get("figure", "")).endswith("_share")):
        return svg.fmt(value, "share")
    if column == "value" and "measure" in row:
        return svg.fmt(value, MEASURE_KIND.get(row.get("measure", ""), "mean"))
    if column in ("expected", "gap"):
        return f"{value:,.1f}"
    if column in DATE_COLUMNS:
        return pages.be_date(value, "th")
    if column == "confidence":
        return domain.label(domain.CONFIDENCE_LABELS, value, "th")
    if column == "status":
        return STATUS_TH.get(value, str(value))
    if column == "owner_agency":
        return domain.agency_name(value, "th")
    if column == "channel":
        return domain.label(domain.CHANNEL_LABELS, value, "th")
    if column == "measure":
        return next((th for m, th, _, _, _ in domain.HEAT_MEASURES if m == value), value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return _CONTROL.sub("", str(value))


def printable(table: quarterly.Table) -> dict[str, Any]:
    shown = [c for c in table.columns if c not in HIDDEN_IN_PRINT]
    rows = []
    for raw in table.rows:
        row = dict(zip(table.columns, raw, strict=True))
        rows.append({"cells": [(c, cell(c, row[c], row)) for c in shown],
                     "flag": bool(row.get("flag_over_30_days_no_reason"))})
    numeric = {c for c in shown for raw in table.rows
               if isinstance(v := raw[table.columns.index(c)], int | float) and not isinstance(v, bool)}
    return {"title": table.title[0], "headers": [(c, COLUMN_LABELS.get(c, c)) for c in shown], "rows": rows,
            "numeric": numeric}


def heat_table(hm: domain.HeatMap) -> dict[str, Any]:
    """A heat map as an HTML table (channels x age groups) with the overview's colours: WeasyPrint shapes Thai
    in HTML text but not in SVG text, so the document draws its heat maps this way in both formats."""
    palette = svg.BLUES if hm.higher_is_better else svg.ORANGES
    rows = []
    for ch in hm.channels:
        cells = []
        for age in hm.ages:
            c = hm.cells.get((age, ch))
            if c is None:
                cells.append(("·", "#ffffff", "#374151", False))
            elif c.suppressed:
                cells.append(("ปกปิด", svg.SUPPRESSED_FILL, svg.SUPPRESSED_TEXT, False))
            elif c.value is None:
                cells.append(("–", "#ffffff", "#374151", False))
            else:
                fill, ink = palette[svg._step(c.value, hm.kind)]
                cells.append((svg.fmt(c.value, hm.kind) + (" ▼" if c.gap else ""), fill, ink, c.gap))
        rows.append((domain.label(domain.CHANNEL_LABELS, ch, "th"), cells))
    return {"title": hm.title[0], "measure": hm.measure,
            "ages": [domain.label(domain.AGE_LABELS, a, "th") for a in hm.ages], "rows": rows}


def render_html(report: quarterly.QuarterlyReport, *, for_print: bool = False) -> str:
    ov = report.overview
    sheets = quarterly.tables(report)
    printed = quarterly.printed_slips(report.slips) if for_print else report.slips
    sheets["schedule_changes"] = quarterly.schedule_table(report, printed)
    if for_print:  # the least responsive agencies; every agency is in the XLSX and the HTML
        agencies = sheets["acknowledgements_agencies"]
        sheets["acknowledgements_agencies"] = replace(agencies, rows=agencies.rows[:quarterly.ACK_AGENCY_ROWS])
    charts = {"heatmaps": [heat_table(h) for h in ov.access.heatmaps if h.reported]}
    return pages.TEMPLATES.get_template("quarterly.html").render(
        r=report, ov=ov, t={name: printable(t) for name, t in sheets.items()}, charts=charts, for_print=for_print,
        titles=pages.SECTION_TITLES, rules=domain.STATUS_RULES, status_labels=domain.STATUS_LABELS,
        agency_name=domain.agency_name(report.agency, "th") if report.agency else "ทุกหน่วยงาน (ภาพรวมแผนงาน)",
        quarter_label=report.quarter.label("th"),
        period=(format_thai_date(report.quarter.start, "long"), format_thai_date(report.period_end, "long")),
        as_of=pages.be_datetime(report.data_as_of, "th"), flag_days=quarterly.SLIP_FLAG_DAYS,
        printed_slips=len(printed), fmt=svg.fmt, label=lambda mapping, key: domain.label(mapping, key, "th"))
