"""1. Programme overview (for executives): is the programme on track, are people ready, are citizens served?"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from services.dashboards.panels import (
    AMBER,
    GREEN,
    RED,
    bargauge_panel,
    db_increase,
    fiscal_year_variable,
    mean_satisfaction,
    new_dashboard,
    pie_panel,
    query,
    row,
    share_with_difficulty,
    stat_panel,
    table_panel,
)

UID = "newnormal-overview"
TITLE = "ภาพรวมโครงการ · Programme overview"

# The roadmap service's five-point scale (metric value 0 best .. 4 worst, rule in docs/roadmap.md).
AMBER_GREEN, AMBER_RED = "yellow", "dark-orange"
CONFIDENCE_MAPPINGS = [model.ValueMap(options={
    "0": model.ValueMappingResult(text="เขียว · Green", color=GREEN, index=0),
    "1": model.ValueMappingResult(text="เหลือง/เขียว · Amber/Green", color=AMBER_GREEN, index=1),
    "2": model.ValueMappingResult(text="เหลือง · Amber", color=AMBER, index=2),
    "3": model.ValueMappingResult(text="เหลือง/แดง · Amber/Red", color=AMBER_RED, index=3),
    "4": model.ValueMappingResult(text="แดง · Red", color=RED, index=4),
})]
CONFIDENCE_STEPS = ((None, GREEN), (1, AMBER_GREEN), (2, AMBER), (3, AMBER_RED), (4, RED))
SATISFACTION_STEPS = ((None, RED), (2.61, AMBER), (3.41, GREEN))  # Thai 5-level bands: 3.41+ = "high"
DIFFICULTY_STEPS = ((None, GREEN), (0.2, AMBER), (0.35, RED))
AWARE = db_increase("newnormal_feedback_aware_total", "$__range", "", "age_group")
RESPONSES = db_increase("newnormal_feedback_responses_total", "$__range", "", "channel, age_group")


def build():
    return (
        new_dashboard(UID, TITLE, "สรุปสำหรับผู้บริหาร: ความเชื่อมั่นในการส่งมอบ หมุดหมาย ความพร้อมบุคลากร และประสบการณ์ประชาชน · "
                      "Executive summary: delivery confidence, milestones, workforce readiness and citizen experience.")
        .with_variable(fiscal_year_variable())
        .with_row(row("ความเชื่อมั่นในการส่งมอบ · Delivery confidence"))
        .with_panel(stat_panel(
            "ภาพรวมทั้งโครงการ (แผนงานที่แย่ที่สุด) · Programme (worst workstream)",
            [query("max(workstream:newnormal_roadmap_delivery_confidence:max)", "โครงการ · Programme", instant=True)],
            w=6, h=6, steps=CONFIDENCE_STEPS, mappings=CONFIDENCE_MAPPINGS,
            description="0 เขียว / 1 เหลือง/เขียว / 2 เหลือง / 3 เหลือง/แดง / 4 แดง ตามกฎของบริการแผนงาน · "
                        "Green, Amber/Green, Amber, Amber/Red, Red as rated by the roadmap service."))
        .with_panel(stat_panel(
            "สัญญาณไฟรายแผนงาน · Delivery confidence per workstream",
            [query("workstream:newnormal_roadmap_delivery_confidence:max", "{{workstream}}", instant=True)],
            w=18, h=6, steps=CONFIDENCE_STEPS, mappings=CONFIDENCE_MAPPINGS))
        .with_row(row("หมุดหมาย · Milestones"))
        .with_panel(pie_panel(
            "หมุดหมายตามสถานะ · Milestones by status",
            [query("sum by (status) (workstream_status:newnormal_roadmap_milestones:max)", "{{status}}", instant=True)],
            w=8, h=8))
        .with_panel(bargauge_panel(
            "ความคืบหน้าเฉลี่ยรายแผนงาน · Progress per workstream",
            [query("max by (workstream) (newnormal_roadmap_milestone_progress_ratio)", "{{workstream}}", instant=True)],
            w=8, h=8))
        .with_panel(table_panel(
            "รายการเกินกำหนด · Overdue (days, per workstream)",
            [query("sort_desc(workstream:newnormal_roadmap_milestone_overdue_days:max > 0)", "{{workstream}}",
                   instant=True, table_format=True)],
            w=8, h=8, unit="d", rename={"workstream": "แผนงาน · Workstream", "Value": "เกินกำหนด (วัน) · Overdue days"},
            sort_by="เกินกำหนด (วัน) · Overdue days", steps=((None, AMBER), (30, RED))))
        .with_row(row("ความพร้อมบุคลากร · Training readiness"))
        .with_panel(bargauge_panel(
            "ความพร้อมเทียบเป้าหมายรายสมรรถนะ ปีงบ $fiscal_year · Readiness vs target per competency",
            [query('competency_fiscal_year:newnormal_training_readiness:ratio{fiscal_year="$fiscal_year"}',
                   "{{competency}}", instant=True),
             query("newnormal:fiscal_year_elapsed:ratio", "เส้นทางเชิงเส้น ณ วันนี้ · Linear path today", instant=True)],
            w=16, h=8,
            description="สัดส่วนผู้พร้อมต่อเป้าหมาย เทียบกับสัดส่วนเวลาที่ผ่านไปของปีงบประมาณ · "
                        "Ready learners / target headcount, next to the share of the fiscal year elapsed."))
        .with_panel(stat_panel(
            "ผู้ผ่านการพัฒนา / เป้าหมาย · Ready / target",
            [query('sum(max by (agency, competency) (newnormal_training_ready_learners{fiscal_year="$fiscal_year"}))',
                   "พร้อม · Ready", instant=True),
             query('sum(max by (agency, competency) (newnormal_training_target_headcount{fiscal_year="$fiscal_year"}))',
                   "เป้าหมาย · Target", instant=True)],
            w=8, h=8))
        .with_row(row("ประสบการณ์ประชาชน · Citizen experience"))
        .with_panel(bargauge_panel(
            "ความพึงพอใจเฉลี่ยรายกลุ่มอายุ (1–5) · Mean satisfaction by age group",
            [query(mean_satisfaction("$__range", "age_group"), "{{age_group}}", instant=True)],
            unit="none", min_val=1, max_val=5, steps=SATISFACTION_STEPS, w=8, h=8))
        .with_panel(bargauge_panel(
            "สัดส่วนที่ใช้เทคโนโลยียาก รายกลุ่มอายุ · Share with tech difficulty by age group",
            [query(share_with_difficulty("$__range", "age_group"), "{{age_group}}", instant=True)],
            steps=DIFFICULTY_STEPS, w=8, h=8))
        .with_panel(stat_panel(
            "การรับรู้โครงการ · Awareness",
            [query(f"{AWARE} / ({RESPONSES} > 0)", "รับรู้ · Aware", instant=True),
             query(RESPONSES, "คำตอบ · Responses", instant=True)],
            unit="percentunit", w=8, h=8, steps=((None, RED), (0.4, AMBER), (0.7, GREEN))))
    )
