"""Delivery confidence stated once: the API's rule text and the reasons follow the thresholds; the
summary figures per workstream and for the programme (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.contracts.common_types import Workstream
from services.roadmap import confidence as conf
from services.roadmap.confidence import Rating, WeightTally, compute_stats, confidence, confidence_rule

TODAY_TH = ("แดง: น้ำหนักหมุดหมายที่พลาดกำหนด ≥ 10% หรือพลาด+เสี่ยง ≥ 30% หรือหมุดหมายที่เสร็จแล้วเสร็จตรงเวลาน้อยกว่า 70%; "
            "เหลือง: มีหมุดหมายพลาดกำหนด หรือเสี่ยง ≥ 10% หรือส่งตรงเวลาน้อยกว่า 90%; เขียว: นอกเหนือจากนี้")
TODAY_EN = ("Red: missed weight share >= 10%, or missed + at-risk >= 30%, or on-time share of completed milestones "
            "< 70%; Amber: any missed, or at-risk >= 10%, or on-time share < 90%; Green: otherwise")


def test_rule_text_from_todays_thresholds_is_the_published_text():
    rule = confidence_rule()
    assert rule == {"th": TODAY_TH, "en": TODAY_EN, "labels": {"green": "เขียว", "amber": "เหลือง", "red": "แดง"}}


def test_changing_a_threshold_changes_the_rule_text_and_the_reasons(monkeypatch):
    monkeypatch.setattr(conf, "RED_MISSED_SHARE", 0.125)
    monkeypatch.setattr(conf, "AMBER_ON_TIME_BELOW", 0.95)
    rule = confidence_rule()
    assert "missed weight share >= 12.5%," in rule["en"] and "on-time share < 95%;" in rule["en"]
    assert "พลาดกำหนด ≥ 12.5% " in rule["th"] and "ส่งตรงเวลาน้อยกว่า 95%;" in rule["th"]
    assert "10%" not in rule["en"].split(",")[0]
    assert confidence(WeightTally(total=100, missed=10)).rating is Rating.amber  # 10 % is now below red
    assert confidence(WeightTally(total=100, missed=13)).reasons == ["missed_share>=12.5%"]


def _group(ws, status, count, weight, on_time=0.0, progress=0.0):
    return {"_id": {"workstream": ws, "status": status}, "count": count, "weight": weight,
            "on_time_weight": on_time, "progress_weight": progress}


def test_compute_stats_counts_every_status_but_rates_only_planned_work():
    now = datetime(2026, 4, 10, 3, 0, tzinfo=UTC)  # 10 April in Bangkok
    ws = Workstream.technology_access.value
    groups = [_group(ws, "completed", 2, 2.0, on_time=2.0, progress=200.0),
              _group(ws, "missed", 1, 1.0, progress=50.0),
              _group(ws, "cancelled", 3, 3.0, progress=300.0), _group(ws, "unplanned", 1, 0.0)]
    stats = compute_stats(groups, [{"workstream": ws, "due_date": "2026-03-31"}], now)
    entry = stats["workstreams"][ws]
    assert entry["counts"] == {"completed": 2, "missed": 1, "cancelled": 3, "unplanned": 1} and entry["total"] == 7
    assert entry["progress_ratio"] == round(250 / 3 / 100, 6) and entry["overdue_days"] == 10
    assert entry["confidence"]["rating"] == "red" and entry["confidence"]["total_weight"] == 3.0
    assert set(stats["workstreams"]) == {w.value for w in Workstream}
    others = [v for k, v in stats["workstreams"].items() if k != ws]
    assert all(v["confidence"]["reasons"] == ["no_milestones"] and v["total"] == 0 for v in others)
    assert stats["programme"]["counts"] == entry["counts"] and stats["programme"]["overdue_days"] == 10
    assert stats["programme"]["confidence"] == entry["confidence"] and stats["computed_at"] == now
