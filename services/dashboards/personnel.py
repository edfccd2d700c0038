"""3. Personnel readiness: readiness per agency × competency, completions over time, laggard agencies."""

from __future__ import annotations

from services.dashboards.panels import (
    AMBER,
    GREEN,
    RED,
    agency_variable,
    bargauge_panel,
    competency_variable,
    fiscal_year_variable,
    matrix_panel,
    new_dashboard,
    query,
    row,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "newnormal-personnel"
TITLE = "ความพร้อมบุคลากร · Personnel readiness"
SEL = 'fiscal_year="$fiscal_year", agency=~"$agency", competency=~"$competency"'
AGENCY_READINESS = 'agency_fiscal_year:newnormal_training_readiness:ratio{fiscal_year="$fiscal_year", agency=~"$agency"}'
# Gap to the linear path (negative = behind), the ten agencies furthest behind.
LAGGARDS = f"bottomk(10, {AGENCY_READINESS} - on() group_left() newnormal:fiscal_year_elapsed:ratio)"


def build():
    return (
        new_dashboard(UID, TITLE, "ความพร้อมของข้าราชการตามสมรรถนะ 4 ด้าน เทียบเป้าหมายของปีงบประมาณ · "
                      "Civil-servant readiness in the four competencies against the fiscal year's targets.")
        .with_variable(fiscal_year_variable())
        .with_variable(agency_variable())
        .with_variable(competency_variable())
        .with_row(row("ภาพรวม · Summary"))
        .with_panel(stat_panel(
            "ผู้พร้อม · Ready learners",
            [query(f"sum(max by (agency, competency) (newnormal_training_ready_learners{{{SEL}}}))", "พร้อม · Ready",
                   instant=True)], w=6, h=5))
        .with_panel(stat_panel(
            "เป้าหมาย · Target headcount",
            [query(f"sum(max by (agency, competency) (newnormal_training_target_headcount{{{SEL}}}))",
                   "เป้าหมาย · Target", instant=True)], w=6, h=5))
        .with_panel(stat_panel(
            "ความพร้อมรวม · Overall readiness",
            [query(f"sum(max by (agency, competency) (newnormal_training_ready_learners{{{SEL}}}))"
                   f" / (sum(max by (agency, competency) (newnormal_training_target_headcount{{{SEL}}})) > 0)",
                   "ความพร้อม · Readiness", instant=True)],
            unit="percentunit", w=6, h=5, steps=((None, RED), (0.6, AMBER), (0.8, GREEN))))
        .with_panel(stat_panel(
            "เส้นทางเชิงเส้น ณ วันนี้ · Linear path today",
            [query("newnormal:fiscal_year_elapsed:ratio", "ปีงบที่ผ่านไป · Fiscal year elapsed", instant=True)],
            unit="percentunit", w=6, h=5,
            description="สัดส่วนของปีงบประมาณที่ผ่านไป: ความพร้อมควรอย่างน้อยเท่านี้ · Share of the fiscal year elapsed: "
                        "readiness on a linear path to 100 % should be at least this."))
        .with_row(row("แผนที่ความร้อน · Heat map"))
        .with_panel(matrix_panel(
            "ความพร้อมรายหน่วยงาน × สมรรถนะ · Readiness per agency × competency",
            [query(f"agency_competency_fiscal_year:newnormal_training_readiness:ratio{{{SEL}}}", "", instant=True,
                   table_format=True)],
            row_field="agency", column_field="competency", h=12))
        .with_row(row("ตามเวลา · Over time"))
        .with_panel(timeseries_panel(
            "ผู้พร้อมสะสมรายสมรรถนะ · Ready learners over time",
            [query(f"sum by (competency) (max by (agency, competency) (newnormal_training_ready_learners{{{SEL}}}))",
                   "{{competency}}")], w=12, h=8))
        .with_panel(timeseries_panel(
            "การอบรมที่สำเร็จ · Completions per hour",
            [query('sum by (type) (rate(newnormal_training_events_applied_total{type=~".*completed.*"}[$__rate_interval])) * 3600',
                   "{{type}}"),
             query('max by (competency) (rate(newnormal_training_hours_total{competency=~"$competency"}[$__rate_interval])) * 3600',
                   "ชั่วโมงอบรม {{competency}} · training hours")],
            unit="short", w=12, h=8, bars=True))
        .with_row(row("หน่วยงานที่ล่าช้า · Laggard agencies"))
        .with_panel(bargauge_panel(
            "ความพร้อมเทียบเป้ารายสมรรถนะ · Readiness per competency",
            [query('competency_fiscal_year:newnormal_training_readiness:ratio{fiscal_year="$fiscal_year", competency=~"$competency"}',
                   "{{competency}}", instant=True)], w=10, h=9))
        .with_panel(table_panel(
            "10 หน่วยงานที่ห่างจากเส้นทางมากที่สุด · 10 agencies furthest behind the linear path",
            [query(LAGGARDS, "{{agency}}", instant=True, table_format=True),
             query(f"{AGENCY_READINESS} and on (agency) {LAGGARDS}", "{{agency}}", instant=True, table_format=True)],
            unit="percentunit", w=14, h=9, exclude=("Time", "fiscal_year"),
            rename={"agency": "หน่วยงาน · Agency", "Value #A": "ห่างจากเส้นทาง · Gap to linear path",
                    "Value #B": "ความพร้อม · Readiness"},
            steps=((None, RED), (-0.1, AMBER), (0, GREEN))))
    )
