"""5. Pipeline health: events in and out, consumer lag, processing latency, dead letters, notifier, reports,
service up."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from services.dashboards.panels import (
    GREEN,
    RED,
    bargauge_panel,
    histogram_heatmap_panel,
    job_variable,
    new_dashboard,
    quantile,
    query,
    row,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "newnormal-pipeline"
TITLE = "สุขภาพระบบส่งข้อมูล · Pipeline health"
JOB = 'job=~"$job"'
UP_MAPPINGS = [model.ValueMap(options={
    "0": model.ValueMappingResult(text="หยุด · Down", color=RED, index=0),
    "1": model.ValueMappingResult(text="ทำงาน · Up", color=GREEN, index=1),
})]


def build():
    return (
        new_dashboard(UID, TITLE, "การไหลของเหตุการณ์ผ่าน Kafka ความล่าช้า คิวค้าง จดหมายตาย และการส่งแจ้งเตือน · "
                      "Event flow through Kafka, latency, lag, dead letters and notification delivery.",
                      time_from="now-3h", refresh="30s")
        .with_variable(job_variable())
        .with_row(row("บริการ · Services"))
        .with_panel(stat_panel(
            "สถานะบริการ · Service up",
            [query(f"min by (job) (up{{{JOB}}})", "{{job}}", instant=True)],
            w=12, h=4, steps=((None, RED), (1, GREEN)), mappings=UP_MAPPINGS))
        .with_panel(stat_panel(
            "อินสแตนซ์ที่ทำงาน · Instances up",
            [query(f"sum by (job) (up{{{JOB}}})", "{{job}}", instant=True)], w=12, h=4, decimals=0))
        .with_row(row("การไหลของเหตุการณ์ · Event flow"))
        .with_panel(timeseries_panel(
            "เหตุการณ์ขาเข้าจาก Kafka · Events in (consumed) per topic and outcome",
            [query(f"sum by (topic, outcome) (rate(newnormal_consumer_records_total{{{JOB}}}[$__rate_interval]))",
                   "{{topic}} · {{outcome}}")], unit="ops", w=8))
        .with_panel(timeseries_panel(
            "เหตุการณ์ขาออก · Events out (published) per topic",
            [query(f"sum by (topic) (rate(newnormal_published_events_total{{{JOB}}}[$__rate_interval]))", "{{topic}}")],
            unit="ops", w=8))
        .with_panel(timeseries_panel(
            "รับผ่าน HTTP · HTTP intake by outcome",
            [query(f"sum by (job, outcome) (rate(newnormal_ingest_events_total{{{JOB}}}[$__rate_interval]))",
                   "{{job}} · {{outcome}}")], unit="ops", w=8))
        .with_row(row("ความล่าช้าและคิวค้าง · Latency and lag"))
        .with_panel(timeseries_panel(
            "คิวค้าง · Consumer lag (records)",
            [query(f"max by (job, topic) (newnormal_consumer_lag_records{{{JOB}}})", "{{job}} · {{topic}}")], w=8))
        .with_panel(timeseries_panel(
            "เวลาประมวลผล p50/p95 · Processing latency (record time → commit)",
            [query(quantile(0.95, "newnormal_consumer_event_age_seconds", "topic", JOB), "p95 {{topic}}"),
             query(quantile(0.5, "newnormal_consumer_event_age_seconds", "topic", JOB), "p50 {{topic}}")], unit="s", w=8))
        .with_panel(timeseries_panel(
            "เวลาต่อชุด p95 · Batch duration p95",
            [query(quantile(0.95, "newnormal_consumer_batch_duration_seconds", "topic", JOB), "{{topic}}")],
            unit="s", w=8))
        .with_panel(histogram_heatmap_panel(
            "การกระจายเวลาประมวลผล · Processing latency distribution",
            [query(f"sum by (le) (increase(newnormal_consumer_event_age_seconds_bucket{{{JOB}}}[$__rate_interval]))", "{{le}}")],
            w=12))
        .with_panel(timeseries_panel(
            "ข้อความที่ FastStream รับ · FastStream messages received",
            [query(f"sum by (job, handler) (rate(faststream_received_messages_total{{{JOB}}}[$__rate_interval]))",
                   "{{job}} · {{handler}}")], unit="ops", w=12))
        .with_row(row("จดหมายตายและการลองใหม่ · Dead letters and retries"))
        .with_panel(table_panel(
            "ระเบียนที่ส่งไปคิวจดหมายตาย · Dead-letter records in range",
            [query(f"sort_desc(sum by (job, topic, reason) (increase(newnormal_dead_letter_records_total{{{JOB}}}[$__range])))",
                   "{{topic}}", instant=True, table_format=True)],
            w=16, h=7, rename={"job": "บริการ · Service", "topic": "หัวข้อ · Topic", "reason": "เหตุผล · Reason",
                               "Value": "จำนวน · Records"}, steps=((None, RED),)))
        .with_panel(stat_panel(
            "การเขียนซ้ำเมื่อฐานข้อมูลขัดข้อง · Store retries in range",
            # A counter with labels exists only after its first increment: no series means no retry, i.e. 0.
            [query(f"sum(increase(newnormal_consumer_store_retries_total{{{JOB}}}[$__range])) or vector(0)",
                   "retries", instant=True)], w=8, h=7, decimals=0, steps=((None, GREEN), (1, "orange"))))
        .with_row(row("การแจ้งเตือน · Notifier"))
        .with_panel(timeseries_panel(
            "การส่งตามผลลัพธ์ · Deliveries by channel and outcome",
            [query("sum by (channel, outcome) (increase(newnormal_notifier_notifications_total[$__rate_interval]))",
                   "{{channel}} · {{outcome}}")], w=8, bars=True))
        .with_panel(table_panel(
            "ส่งไม่สำเร็จในช่วงเวลา · Failed and retried in range",
            [query('sum by (channel, outcome) (increase(newnormal_notifier_notifications_total{outcome!="sent"}[$__range]))'
                   " or sum by (channel) (increase(newnormal_notifier_retries_total[$__range]))",
                   "{{channel}}", instant=True, table_format=True)],
            w=8, rename={"channel": "ช่องทาง · Channel", "outcome": "ผล · Outcome", "Value": "จำนวน · Count"}))
        .with_panel(timeseries_panel(
            "รอส่ง · Pending notifications",
            [query("max by (channel) (newnormal_notifier_pending)", "{{channel}}")], w=8))
        .with_panel(timeseries_panel(
            "เวลาการส่ง p95 · Delivery time p95",
            [query(quantile(0.95, "newnormal_notifier_delivery_seconds"), "p95"),
             query(quantile(0.5, "newnormal_notifier_delivery_seconds"), "p50")], unit="s", w=16))
        .with_panel(stat_panel(
            "ล้มเหลวรอส่งใหม่ · Failed, kept for a manual retry",
            [query("max by (channel) (newnormal_notifier_failed)", "{{channel}}", instant=True)],
            w=8, h=8, decimals=0, steps=((None, GREEN), (1, RED)),
            description="การแจ้งเตือนที่หมดจำนวนครั้งลองใหม่ ส่งซ้ำได้ทาง API · Notifications that exhausted their "
                        "retries; re-send through POST /v1/notifications/{id}/retry."))
        .with_panel(bargauge_panel(
            "ยังไม่มีผู้รับทราบ · Unacknowledged by age",
            [query("max by (age) (newnormal_notifier_unacknowledged)", "{{age}}", instant=True)], w=8, h=8,
            unit="none", max_val=None, steps=((None, GREEN), (1, "orange")),
            description="ภารกิจเลยกำหนด/เสี่ยงที่แจ้งแล้วแต่ยังไม่มีผู้รับทราบ (30 วันล่าสุด) ตามเวลาตั้งแต่แจ้งครั้งแรก · "
                        "Missed or at-risk episodes told in the last 30 days that nobody acknowledged, by age."))
        .with_panel(stat_panel(
            "เวลาจนรับทราบ (เฉลี่ย) · Mean time to acknowledge in range",
            # clamp_min: no acknowledgement in the range reads 0, not NaN.
            [query("sum(increase(newnormal_notifier_acknowledgement_seconds_sum[$__range])) / "
                   "clamp_min(sum(increase(newnormal_notifier_acknowledgement_seconds_count[$__range])), 1)",
                   "mean", instant=True),
             query("sum(increase(newnormal_notifier_acknowledgements_total[$__range]))", "acknowledged",
                   instant=True)], w=8, h=8, decimals=0,
            description="จากการส่งถึงผู้รับจนผู้รับกดรับทราบ · From delivery to the recipient's acknowledgement "
                        "(newnormal_notifier_acknowledgement_seconds); and how many were acknowledged."))
        .with_panel(stat_panel(
            "การยกระดับตามลำดับขั้น · Escalations by level in range",
            [query("sum by (level) (increase(newnormal_notifier_escalations_total[$__range]))", "level {{level}}",
                   instant=True),
             query("sum(increase(newnormal_notifier_cancelled_total[$__range]))", "cancelled by an acknowledgement",
                   instant=True)], w=8, h=8, decimals=0))
        .with_row(row("รายงาน · Reports"))
        .with_panel(timeseries_panel(
            "เวลาแสดงหน้าภาพรวม p95 · Page server time p95 (target 300 ms)",
            [query(quantile(0.95, "newnormal_reports_page_render_seconds", "page", JOB), "p95 {{page}}")],
            unit="s", w=8,
            description="เวลาฝั่งเซิร์ฟเวอร์ของหน้าภาพรวมและหน้าหน่วยงาน รวมการอ่าน API ต้นทาง · Server time of the "
                        "overview and agency pages, read API fetches included (issue 13: <= 300 ms)."))
        .with_panel(timeseries_panel(
            "หน้าที่แสดงตามผลลัพธ์ · Page views by outcome",
            [query(f"sum by (page, outcome) (rate(newnormal_reports_page_renders_total{{{JOB}}}[$__rate_interval]))",
                   "{{page}} · {{outcome}}")], unit="ops", w=8,
            description="partial: บริการต้นทางไม่ตอบ ส่วนนั้นแสดง 'ยังไม่มีรายงาน' · a read API did not answer and "
                        "its sections say 'not yet reported'."))
        .with_panel(timeseries_panel(
            "อ่าน API ต้นทาง p95 · Read API fetch p95 (cache misses)",
            [query(quantile(0.95, "newnormal_reports_upstream_fetch_seconds", "service", JOB), "{{service}}")],
            unit="s", w=8))
        .with_panel(stat_panel(
            "ตอบจากแคช · Answers from the cache in range",
            [query(f'sum by (service) (increase(newnormal_reports_cache_lookups_total{{{JOB},result="hit"}}[$__range]))'
                   f" / sum by (service) (increase(newnormal_reports_cache_lookups_total{{{JOB}}}[$__range]))",
                   "{{service}}", instant=True)], unit="percentunit", w=8, h=6,
            description="สัดส่วนคำตอบของ API ต้นทางที่ใช้ซ้ำจากแคช (NEWNORMAL_REPORTS_CACHE_SECONDS) · Share of read "
                        "API answers reused from the cache."))
        .with_panel(table_panel(
            "รายงานรายไตรมาส · Quarterly documents in range",
            [query(f"sum by (format, outcome) (increase(newnormal_reports_quarterly_documents_total{{{JOB}}}[$__range]))"
                   " > 0", "{{format}}", instant=True, table_format=True)],
            w=8, h=6, rename={"format": "รูปแบบ · Format", "outcome": "ผล · Outcome", "Value": "จำนวน · Documents"}))
        .with_panel(timeseries_panel(
            "เวลาสร้างรายงานรายไตรมาส p95 · Quarterly document time p95 (PDF target 10 s)",
            [query(quantile(0.95, "newnormal_reports_quarterly_seconds", "format", JOB), "{{format}}")],
            unit="s", w=8))
    )
