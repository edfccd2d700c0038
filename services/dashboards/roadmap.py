"""2. Roadmap: milestones by workstream and status over time, at-risk and missed, progress, overdue days."""

from __future__ import annotations

from services.dashboards.panels import (
    AMBER,
    RED,
    bargauge_panel,
    new_dashboard,
    query,
    row,
    stat_panel,
    table_panel,
    timeseries_panel,
    workstream_variable,
)

UID = "newnormal-roadmap"
TITLE = "แผนงานและหมุดหมาย · Roadmap"
WS = 'workstream=~"$workstream"'


def _status_table(title: str, status: str, colour: str):
    return table_panel(
        title,
        [query(f'sort_desc(workstream_status:newnormal_roadmap_milestones:max{{{WS}, status="{status}"}} > 0)',
               "{{workstream}}", instant=True, table_format=True)],
        w=12, h=7, exclude=("Time", "status"), sort_by="จำนวน · Milestones",
        rename={"workstream": "แผนงาน · Workstream", "Value": "จำนวน · Milestones"}, steps=((None, colour),))


def build():
    return (
        new_dashboard(UID, TITLE, "หมุดหมายของแผนงานทั้ง 5 ด้าน ตามสถานะ ความคืบหน้า และวันที่เกินกำหนด · "
                      "Milestones of the five workstreams by status, progress and days overdue.")
        .with_variable(workstream_variable())
        .with_row(row("สถานะ · Status"))
        .with_panel(stat_panel(
            "หมุดหมายตามสถานะ · Milestones by status",
            [query(f"sum by (status) (workstream_status:newnormal_roadmap_milestones:max{{{WS}}})", "{{status}}",
                   instant=True)], w=24, h=4))
        .with_panel(timeseries_panel(
            "หมุดหมายตามสถานะตามเวลา · Milestones by status over time",
            [query(f"sum by (status) (workstream_status:newnormal_roadmap_milestones:max{{{WS}}})", "{{status}}")],
            stacked=True))
        .with_panel(timeseries_panel(
            "เสี่ยงและพลาดรายแผนงาน · At risk and missed by workstream",
            [query(f'workstream_status:newnormal_roadmap_milestones:max{{{WS}, status=~"at_risk|missed"}}',
                   "{{workstream}} · {{status}}")]))
        .with_row(row("ต้องติดตาม · Needs attention"))
        .with_panel(_status_table("หมุดหมายที่เสี่ยง · At risk", "at_risk", AMBER))
        .with_panel(_status_table("หมุดหมายที่พลาดกำหนด · Missed", "missed", RED))
        .with_row(row("ความคืบหน้า · Progress"))
        .with_panel(bargauge_panel(
            "ความคืบหน้าถ่วงน้ำหนักรายแผนงาน · Weighted progress per workstream",
            [query(f"max by (workstream) (newnormal_roadmap_milestone_progress_ratio{{{WS}}})", "{{workstream}}",
                   instant=True)], w=12, h=8))
        .with_panel(timeseries_panel(
            "วันที่เกินกำหนด · Overdue days per workstream",
            [query(f"workstream:newnormal_roadmap_milestone_overdue_days:max{{{WS}}}", "{{workstream}}")],
            unit="d", w=12, h=8))
        .with_row(row("เหตุการณ์ · Events"))
        .with_panel(timeseries_panel(
            "เหตุการณ์ที่ประมวลผล · Events applied and rejected",
            [query("sum by (type) (rate(newnormal_roadmap_events_applied_total[$__rate_interval]))", "applied {{type}}"),
             query("sum by (reason) (rate(newnormal_roadmap_events_rejected_total[$__rate_interval]))",
                   "rejected {{reason}}")],
            unit="ops", w=12, h=8))
        .with_panel(table_panel(
            "การแจ้งเตือนที่ส่งออก · Alerts published in range",
            [query("sum by (type) (increase(newnormal_roadmap_alerts_published_total[$__range]))", "{{type}}",
                   instant=True, table_format=True)],
            w=12, h=8, rename={"type": "ประเภท · Type", "Value": "จำนวน · Count"}))
    )
