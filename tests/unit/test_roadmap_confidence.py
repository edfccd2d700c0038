"""Delivery confidence stated once: the API's rule text and the reasons follow the thresholds; the
summary figures per workstream and for the programme (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts.common_types import Workstream
from services.roadmap import confidence as conf
from services.roadmap.confidence import Rating, WeightTally, compute_stats, confidence, confidence_rule

TODAY_EN = ("The first level, from Red down, with any condition met; "
            "Red: missed weight share >= 20%, or missed + at-risk weight share >= 50%, "
            "or on-time share of completed milestones < 50%; "
            "Amber/Red: missed weight share >= 10%, or missed + at-risk weight share >= 30%, "
            "or on-time share of completed milestones < 70%; "
            "Amber: missed weight share > 0%, or at-risk weight share >= 10%, "
            "or on-time share of completed milestones < 90%; "
            "Amber/Green: at-risk weight share > 0%, or on-time share of completed milestones < 95%; Green: otherwise")


def test_rule_text_from_todays_thresholds_is_the_published_text():
    rule = confidence_rule()
    assert rule["en"] == TODAY_EN
    assert rule["th"].startswith("ระดับแรกจากแดงลงมา") and rule["th"].endswith("เขียว: นอกเหนือจากนี้")
    assert "เหลือง/แดง: น้ำหนักหมุดหมายที่พลาดกำหนด ≥ 10% หรือ" in rule["th"]
    assert rule["scale"] == ["green", "amber_green", "amber", "amber_red", "red"]
    assert rule["labels"] == {"green": "เขียว", "amber_green": "เหลือง/เขียว", "amber": "เหลือง",
                              "amber_red": "เหลือง/แดง", "red": "แดง"}
    assert rule["labels_en"]["amber_green"] == "Amber/Green"
    assert [lv["rating"] for lv in rule["levels"]] == ["red", "amber_red", "amber", "amber_green", "green"]
    assert rule["levels"][1]["any_of"][0] == {"code": "missed_share>=10%", "measure": "missed_share",
                                              "op": ">=", "threshold": 0.10}


def test_changing_a_threshold_changes_the_rule_text_and_the_reasons(monkeypatch):
    rule = list(conf.RULE)
    rule[0] = (Rating.red, (conf.Condition("missed_share", ">=", 0.125), *rule[0][1][1:]))
    monkeypatch.setattr(conf, "RULE", tuple(rule))
    text = confidence_rule()
    assert "Red: missed weight share >= 12.5%," in text["en"] and "แดง: น้ำหนักหมุดหมายที่พลาดกำหนด ≥ 12.5% " in text["th"]
    assert "20%" not in text["en"].split(";")[1]
    assert confidence(WeightTally(total=100, missed=20)).rating is Rating.red
    assert confidence(WeightTally(total=1000, missed=124)).rating is Rating.amber_red  # 12.4 % is now below red
    assert confidence(WeightTally(total=100, missed=13)).reasons == ["missed_share>=12.5%"]


def _tally(total, missed=0.0, at_risk=0.0, completed=0.0, on_time=0.0) -> WeightTally:
    return WeightTally(total=total, missed=missed, at_risk=at_risk, completed=completed, completed_on_time=on_time)


@pytest.mark.parametrize(("tally", "rating", "reasons"), [
    (_tally(0), "green", ["no_milestones"]),
    (_tally(100), "green", ["on_track"]),
    (_tally(100, completed=100, on_time=95), "green", ["on_track"]),          # 95 % on time: not below 95 %
    (_tally(100, completed=100, on_time=94), "amber_green", ["on_time_share<95%"]),
    (_tally(100, at_risk=1), "amber_green", ["at_risk_share>0%"]),
    (_tally(100, at_risk=10), "amber", ["at_risk_share>=10%"]),
    (_tally(1000, missed=1), "amber", ["missed_share>0%"]),                 # any missed milestone
    (_tally(100, completed=10, on_time=9), "amber_green", ["on_time_share<95%"]),  # 90 %: not below 90 %
    (_tally(1000, completed=100, on_time=89), "amber", ["on_time_share<90%"]),
    (_tally(100, missed=9.99, at_risk=19.99), "amber", ["missed_share>0%", "at_risk_share>=10%"]),
    (_tally(100, missed=10), "amber_red", ["missed_share>=10%"]),
    (_tally(100, missed=1, at_risk=29), "amber_red", ["missed_plus_at_risk_share>=30%"]),
    (_tally(10, missed=1, at_risk=2), "amber_red", ["missed_share>=10%", "missed_plus_at_risk_share>=30%"]),
    (_tally(100, completed=10, on_time=7), "amber", ["on_time_share<90%"]),  # 70 %: not below 70 %
    (_tally(1000, completed=100, on_time=69), "amber_red", ["on_time_share<70%"]),
    (_tally(100, missed=20), "red", ["missed_share>=20%"]),
    (_tally(1000, missed=199), "amber_red", ["missed_share>=10%"]),
    (_tally(100, missed=1, at_risk=49), "red", ["missed_plus_at_risk_share>=50%"]),
    (_tally(100, at_risk=49), "amber_red", ["missed_plus_at_risk_share>=30%"]),
    (_tally(100, completed=10, on_time=5), "amber_red", ["on_time_share<70%"]),  # 50 %: not below 50 %
    (_tally(100, completed=10, on_time=4.9), "red", ["on_time_share<50%"]),
])
def test_five_point_rule_at_its_boundaries(tally, rating, reasons):
    result = confidence(tally)
    assert (result.rating.value, result.reasons) == (rating, reasons)
    shown = result.as_dict()
    assert shown["value"] == ["green", "amber_green", "amber", "amber_red", "red"].index(rating)
    assert len(shown["reasons_th"]) == len(shown["reasons_en"]) == len(reasons)
    assert shown["label_th"] == shown["rating_th"] and shown["label_en"]


shares = st.integers(min_value=0, max_value=1000)


@given(total=st.integers(min_value=1, max_value=1000), missed=shares, at_risk=shares, completed=shares, on_time=shares)
def test_rating_is_the_worst_level_with_a_condition_met(total, missed, at_risk, completed, on_time):
    missed, at_risk = min(missed, total), min(at_risk, total - min(missed, total))
    completed = min(completed, total - missed - at_risk)
    tally = _tally(total, missed, at_risk, completed, min(on_time, completed))
    result = confidence(tally)
    shares_now = {"missed_share": missed / total, "missed_plus_at_risk_share": (missed + at_risk) / total,
                  "at_risk_share": at_risk / total, "on_time_share": min(on_time, completed) / completed if completed else None}

    def holds(c):
        v = shares_now[c.measure]
        return v is not None and {">=": v >= c.threshold, ">": v > c.threshold, "<": v < c.threshold}[c.op]

    # The rating is the first level, worst first, with a condition that holds; its reasons are exactly those.
    expected = next(((r, [c.code for c in cs if holds(c)]) for r, cs in conf.RULE if any(holds(c) for c in cs)),
                    (Rating.green, ["on_track"]))
    assert (result.rating, result.reasons) == expected
    # Turning one unit of open work into missed work never improves the rating.
    if total - missed - at_risk - completed >= 1:
        worse = _tally(total, missed + 1, at_risk, completed, min(on_time, completed))
        assert conf.RATING_VALUE[confidence(worse).rating] >= conf.RATING_VALUE[result.rating]


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
