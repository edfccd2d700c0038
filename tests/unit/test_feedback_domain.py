"""Pure feedback rules: age groups and cohorts, intake preparation, rollups, gap statistics, rate limit."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from services.common.counters import counters
from services.contracts.envelope import EventError, document_id, make_event
from services.feedback import domain
from services.feedback.metrics import build_families
from services.feedback.redact import placeholder

TYPE = "feedback.response.submitted"


def event(**data):
    base = {"agency": "dga", "service_name": "ต่อใบอนุญาต", "channel": "online_web", "satisfaction": 4,
            "tech_difficulty": "none", "aware_of_digital_channels": True, "submitted_at": "2026-03-01T10:00:00+07:00"}
    base.update(data)
    if "age_group" not in base and "birth_year" not in base:
        base["age_group"] = "25_34"
    return make_event(TYPE, base, agency="dga", source="/agencies/dga/survey", id=uuid.uuid4().hex,
                      time=datetime.now(UTC))


@pytest.mark.parametrize("age,group", [(0, "under_18"), (17, "under_18"), (18, "18_24"), (24, "18_24"), (25, "25_34"),
                                       (34, "25_34"), (35, "35_44"), (44, "35_44"), (45, "45_59"), (59, "45_59"),
                                       (60, "60_plus"), (101, "60_plus")])
def test_age_group_edges(age, group):
    assert domain.age_group_for_age(age).value == group


def test_birth_year_gregorian_and_buddhist_era_use_the_bangkok_year():
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert domain.age_group_for_birth_year(1966, at).value == "60_plus"   # 60 in 2026
    assert domain.age_group_for_birth_year(2509, at).value == "60_plus"   # 2509 BE = 1966
    assert domain.age_group_for_birth_year(1967, at).value == "45_59"
    # 31 Dec 2025 20:00 UTC is already 1 Jan 2026 in Bangkok.
    new_year = datetime(2025, 12, 31, 20, tzinfo=UTC)
    assert domain.age_group_for_birth_year(1966, new_year).value == "60_plus"
    assert domain.age_group_for_birth_year(1966, new_year - timedelta(hours=4)).value == "45_59"
    with pytest.raises(ValueError):
        domain.age_group_for_birth_year(2030, at)


def test_cohorts():
    assert {domain.cohort_of(g) for g in ("under_18", "18_24")} == {"gen_z"}
    assert domain.cohort_of("35_44") == "gen_y" and domain.cohort_of("45_59") == "gen_x"
    assert domain.cohort_of("60_plus") == "baby_boomer"


def test_prepare_drops_birth_year_and_redacts_the_comment():
    original = event(birth_year=2500, comment="โทร 081-234-5678 หรือ a@b.co ขอบคุณค่ะ")
    prepared = domain.prepare(original)
    assert prepared.id == original.id and prepared.source == original.source
    assert prepared.data.birth_year is None and prepared.data.age_group.value == "60_plus"
    assert prepared.data.comment == f"โทร {placeholder('PHONE')} หรือ {placeholder('EMAIL')} ขอบคุณค่ะ"
    assert "birth_year" not in prepared.to_document()["data"]
    # The number and the address themselves (a bare "081" can turn up in the event's random id).
    assert "081-234-5678" not in str(prepared.to_json_dict()) and "a@b.co" not in str(prepared.to_json_dict())
    assert domain.prepare(prepared) == prepared  # idempotent
    clean = event(comment="ดีมาก")
    assert domain.prepare(clean) is clean
    doc = domain.response_document(prepared)
    assert doc["redactions"] == {"PHONE": 1, "EMAIL": 1} and doc["cohort"] == "baby_boomer"
    assert doc["bangkok_day"] == "2026-03-01" and "birth_year" not in doc["data"]
    assert doc["_id"] == document_id(prepared.source, prepared.id)  # the stored response is the audit record
    assert {k: v for k, v in doc.items() if k not in ("cohort", "bangkok_day", "redactions")} == prepared.to_document()
    # A birth year and nothing to redact: the age group is set without validating the data again, to the same
    # result as validating what it says.
    only_year = domain.prepare(event(birth_year=1990, comment="ดีมาก"))
    assert only_year.data == type(only_year.data).model_validate(only_year.data_dict())
    assert only_year.data.age_group.value == "35_44" and "birth_year" not in only_year.to_json_dict()["data"]


def test_prepare_refuses_impossible_birth_year_with_a_reason():
    with pytest.raises(EventError) as err:
        domain.prepare(event(birth_year=2027))
    assert err.value.reason == "invalid_data" and "2027" not in err.value.detail or "age" in err.value.detail


def test_rollup_deltas_sum_per_document():
    docs = [domain.response_document(domain.prepare(event(satisfaction=s, tech_difficulty=t, aware_of_digital_channels=a)))
            for s, t, a in [(5, "none", True), (2, "severe", False), (4, "some", True)]]
    totals, daily = domain.rollup_deltas(docs)
    assert list(totals) == ["online_web|25_34"]
    assert list(daily) == ["2026-03-01|dga", "2026-03|dga", "2026-03-01|*", "2026-03|*"]  # days and their months
    assert daily["2026-03|dga"].inc == daily["2026-03-01|dga"].inc and daily["2026-03|dga"].keys == {"month": "2026-03", "agency": "dga"}
    assert daily["2026-03-01|*"].inc == daily["2026-03-01|dga"].inc and daily["2026-03-01|*"].keys["agency"] == "*"
    inc = totals["online_web|25_34"].inc
    assert inc == {"responses": 3, "satisfaction_sum": 11, "sat_5": 1, "sat_2": 1, "sat_4": 1, "tech_none": 1,
                   "tech_severe": 1, "tech_some": 1, "aware": 2}
    assert daily["2026-03-01|dga"].inc == {f"cells.online_web|25_34.{k}": v for k, v in inc.items()}
    assert daily["2026-03-01|dga"].keys == {"day": "2026-03-01", "agency": "dga"}
    nested = [{"cells": {"online_web|25_34": inc}}, {"cells": {"online_web|25_34": {"responses": 2}, "walk_in|60_plus": {"responses": 1}}}]
    summed = domain.sum_daily_cells(nested)
    assert summed[("online_web", "25_34")]["responses"] == 5 and summed[("walk_in", "60_plus")] == {"responses": 1}
    assert counters({"_id": "x", "applied": ["t"], "rev": 3, "day": "d", "cells": {"a|b": {"responses": 2}}}) == \
        {"cells.a|b.responses": 2}
    cell = domain.Cell.from_counts("25_34", "online_web", inc).as_dict()
    assert cell["mean_satisfaction"] == round(11 / 3, 3) and cell["share_satisfied"] == round(2 / 3, 4)
    assert cell["share_tech_difficulty"] == round(2 / 3, 4) and cell["awareness_rate"] == round(2 / 3, 4)
    assert cell["cohort"] == "gen_y"


def cell(age, channel, n, satisfied):
    return domain.Cell(age, channel, n, satisfied, satisfied * 5 + (n - satisfied) * 2, 0, 0)


def test_two_proportion_z_matches_a_hand_computation():
    # 40/100 vs 160/200: pooled 0.6667, se = sqrt(.6667*.3333*(1/100+1/200)) = 0.05774, z = -0.4/0.05774 = -6.928
    assert domain.two_proportion_z(40, 100, 160, 200) == pytest.approx(-6.928, abs=1e-3)
    assert domain.two_proportion_z(0, 10, 0, 10) == 0.0
    assert domain.normal_cdf(-1.6449) == pytest.approx(0.05, abs=1e-4)
    assert domain.normal_cdf(0) == 0.5


def test_gaps_flag_a_large_low_cell_but_not_small_or_noisy_ones():
    cells = [
        cell("60_plus", "online_web", 200, 80),      # 40 % satisfied: a real gap
        cell("60_plus", "walk_in", 10, 0),           # 0 % but only 10 responses: not tested
        cell("25_34", "mobile_app", 400, 300),
        cell("35_44", "online_web", 400, 290),
        cell("45_59", "online_web", 100, 66),        # 66 % vs ~ 70 %: noise, not flagged
    ]
    results = domain.satisfaction_gaps(cells, alpha=0.05, min_cell=30)
    flagged = [(r.cell.age_group, r.cell.channel) for r in results if r.significant]
    assert flagged == [("60_plus", "online_web")]
    assert {(r.cell.age_group, r.cell.channel) for r in results} == {
        ("60_plus", "online_web"), ("25_34", "mobile_app"), ("35_44", "online_web"), ("45_59", "online_web")}
    top = results[0]
    assert top.z < -5 and top.p_value < 1e-6 and top.cell_share == 0.4
    assert top.overall_share == pytest.approx(736 / 1110)
    # Above-average cells have p > 0.5 in the one-sided test.
    assert all(r.p_value > 0.5 for r in results if r.cell_share > r.rest_share)


def test_bonferroni_makes_borderline_cells_pass():
    # p about 0.02: significant at 0.05 alone, not after dividing by 4 tested cells.
    cells = [cell("60_plus", "online_web", 300, 200), cell("25_34", "mobile_app", 300, 218),
             cell("35_44", "online_web", 300, 218), cell("45_59", "online_web", 300, 218)]
    plain = domain.satisfaction_gaps(cells, bonferroni=False)
    corrected = domain.satisfaction_gaps(cells, bonferroni=True)
    assert 0.0125 < plain[0].p_value < 0.05
    assert plain[0].significant and not corrected[0].significant


def test_default_range_is_inclusive():
    assert domain.default_range(date(2026, 3, 30), 30) == (date(2026, 3, 1), date(2026, 3, 30))


def test_metric_families_histogram_is_cumulative():
    docs = [{"channel": "walk_in", "age_group": "60_plus", "responses": 4, "satisfaction_sum": 11, "sat_1": 1, "sat_3": 1,
             "sat_4": 1, "sat_5": 1, "tech_severe": 3, "tech_none": 1, "aware": 1},
            {"channel": "online_web", "age_group": "60_plus", "responses": 1, "satisfaction_sum": 5, "sat_5": 1,
             "tech_none": 1, "aware": 1}]
    fams = {f.name: f for f in build_families(docs)}
    hist = {(s.name, s.labels.get("le")): s.value for s in fams["newnormal_feedback_satisfaction"].samples
            if s.labels["channel"] == "walk_in"}
    assert [hist[("newnormal_feedback_satisfaction_bucket", le)] for le in ("1.0", "2.0", "3.0", "4.0", "5.0", "+Inf")] == \
        [1, 1, 2, 3, 4, 4]
    assert hist[("newnormal_feedback_satisfaction_sum", None)] == 11 and hist[("newnormal_feedback_satisfaction_count", None)] == 4
    aware = {s.labels["age_group"]: s.value for s in fams["newnormal_feedback_aware"].samples if s.name.endswith("_total")}
    assert aware == {"60_plus": 2}
    tech = {(s.labels["channel"], s.labels["level"]): s.value for s in fams["newnormal_feedback_tech_difficulty"].samples}
    assert tech[("walk_in", "severe")] == 3 and tech[("walk_in", "some")] == 0
    assert math.isclose(sum(s.value for s in fams["newnormal_feedback_responses"].samples if s.name.endswith("_total")), 5)
