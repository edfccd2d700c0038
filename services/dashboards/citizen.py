"""4. Citizen experience: satisfaction, trust and ease by age group × channel, tech difficulty, awareness, volumes."""

from __future__ import annotations

from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from services.dashboards.overview import DIFFICULTY_STEPS, SATISFACTION_STEPS
from services.dashboards.panels import (
    age_group_variable,
    bargauge_panel,
    channel_variable,
    db_increase,
    matrix_panel,
    mean_satisfaction,
    mean_score,
    new_dashboard,
    query,
    row,
    share_with_difficulty,
    stat_panel,
    timeseries_panel,
)

UID = "newnormal-citizen"
TITLE = "ประสบการณ์ประชาชน · Citizen experience"
SEL = 'age_group=~"$age_group", channel=~"$channel"'


def _mean(by: str) -> str:
    return mean_satisfaction("$__range", by, SEL)


def build():
    return (
        new_dashboard(UID, TITLE, "ความพึงพอใจ ความเชื่อมั่น ความง่าย (1–5) ความยากในการใช้เทคโนโลยี และการรับรู้ ตามกลุ่มอายุและช่องทาง · "
                      "Satisfaction, trust, ease (1–5), technology difficulty and awareness by age group and channel.")
        .with_variable(age_group_variable())
        .with_variable(channel_variable())
        .with_row(row("ความพึงพอใจ · Satisfaction"))
        .with_panel(stat_panel(
            "ความพึงพอใจเฉลี่ย · Mean satisfaction",
            [query(_mean(""), "เฉลี่ย · Mean", instant=True)],
            unit="none", decimals=2, w=6, h=8, steps=SATISFACTION_STEPS,
            description="เกณฑ์ 5 ระดับ: 4.21–5.00 มากที่สุด, 3.41–4.20 มาก, 2.61–3.40 ปานกลาง · Thai 5-level bands."))
        .with_panel(bargauge_panel(
            "การกระจายคะแนน · Satisfaction distribution (responses per score)",
            [query(db_increase("newnormal_feedback_satisfaction_bucket", "$__range", "le", "channel, age_group, le",
                               f'{SEL}, le!="+Inf"'),
                   "{{le}}", instant=True).format(PromQueryFormat.HEATMAP)],
            unit="short", max_val=None, steps=((None, "blue"),), w=8, h=8,
            description="คะแนน 1–5 (ถังสะสมของ histogram แปลงเป็นจำนวนต่อคะแนน) · Scores 1–5."))
        .with_panel(bargauge_panel(
            "ความพึงพอใจเฉลี่ยรายกลุ่มอายุ · Mean by age group",
            [query(_mean("age_group"), "{{age_group}}", instant=True)],
            unit="none", min_val=1, max_val=5, steps=SATISFACTION_STEPS, w=10, h=8))
        .with_panel(matrix_panel(
            "ความพึงพอใจเฉลี่ย กลุ่มอายุ × ช่องทาง · Mean satisfaction, age group × channel",
            [query(_mean("age_group, channel"), "", instant=True, table_format=True)],
            row_field="age_group", column_field="channel", unit="none", min_val=1, max_val=5,
            steps=SATISFACTION_STEPS, h=9))
        .with_row(row("ความเชื่อมั่นและความง่าย · Trust and ease"))
        .with_panel(stat_panel(
            "ความเชื่อมั่นเฉลี่ย · Mean trust",
            [query(mean_score("trust", "$__range", "", SEL), "เฉลี่ย · Mean", instant=True)],
            unit="none", decimals=2, w=6, h=8, steps=SATISFACTION_STEPS,
            description="ความเชื่อมั่นต่อบริการ 1–5 เฉลี่ยจากผู้ที่ตอบข้อนี้ (ข้อหลักของงานประสบการณ์ผู้รับบริการภาครัฐ) · "
                        "Trust in the service, 1–5, over the responses that answered it (the headline CX item)."))
        .with_panel(matrix_panel(
            "ความเชื่อมั่นเฉลี่ย กลุ่มอายุ × ช่องทาง · Mean trust, age group × channel",
            [query(mean_score("trust", "$__range", "age_group, channel", SEL), "", instant=True, table_format=True)],
            row_field="age_group", column_field="channel", unit="none", min_val=1, max_val=5,
            steps=SATISFACTION_STEPS, w=10, h=8))
        .with_panel(bargauge_panel(
            "ความง่ายในการใช้บริการเฉลี่ยรายกลุ่มอายุ · Mean ease by age group",
            [query(mean_score("ease", "$__range", "age_group", SEL), "{{age_group}}", instant=True)],
            unit="none", min_val=1, max_val=5, steps=SATISFACTION_STEPS, w=8, h=8))
        .with_row(row("ความยากในการใช้เทคโนโลยี · Technology difficulty"))
        .with_panel(bargauge_panel(
            "สัดส่วนที่ใช้ยาก (บ้าง/มาก) รายกลุ่มอายุ · Share with some or severe difficulty",
            [query(share_with_difficulty("$__range", "age_group", SEL), "{{age_group}}", instant=True)],
            steps=DIFFICULTY_STEPS, w=12, h=8))
        .with_panel(matrix_panel(
            "ระดับความยาก กลุ่มอายุ × ระดับ · Difficulty level counts, age group × level",
            [query(db_increase("newnormal_feedback_tech_difficulty_total", "$__range", "age_group, level",
                               "channel, age_group, level", SEL),
                   "", instant=True, table_format=True)],
            row_field="age_group", column_field="level", unit="short", min_val=0, max_val=None,
            steps=((None, "blue"),), w=12, h=8))
        .with_row(row("การรับรู้และปริมาณ · Awareness and volumes"))
        .with_panel(timeseries_panel(
            "แนวโน้มการรับรู้ (1 วันล่าสุด) · Awareness trend (trailing day)",
            [query('age_group:newnormal_feedback_awareness:ratio1d{age_group=~"$age_group"}', "{{age_group}}")],
            unit="percentunit", min_val=0, max_val=1, w=12, h=8))
        .with_panel(timeseries_panel(
            "ปริมาณคำตอบรายช่องทาง · Responses per channel",
            [query(db_increase("newnormal_feedback_responses_total", "$__interval", "channel", "channel, age_group", SEL),
                   "{{channel}}")],
            stacked=True, bars=True, w=12, h=8))
        .with_panel(stat_panel(
            "คำตอบในช่วงเวลา รายกลุ่มอายุ · Responses in range by age group",
            [query(db_increase("newnormal_feedback_responses_total", "$__range", "age_group", "channel, age_group", SEL),
                   "{{age_group}}",
                   instant=True)],
            w=24, h=4, decimals=0, steps=((None, "blue"),)))
    )
