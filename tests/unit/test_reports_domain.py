"""The reports service's pure model: Thai fiscal quarters, trends, the five sections, public suppression."""

from __future__ import annotations

from datetime import date

import pytest

from services.common.disclosure import plan_counts
from services.reports import domain
from services.reports.domain import Quarter, Trend, quarter_of


@pytest.mark.parametrize(("day", "fy", "q"), [
    (date(2025, 10, 1), 2569, 1), (date(2025, 12, 31), 2569, 1), (date(2026, 1, 1), 2569, 2),
    (date(2026, 3, 31), 2569, 2), (date(2026, 4, 1), 2569, 3), (date(2026, 7, 1), 2569, 4),
    (date(2026, 9, 30), 2569, 4), (date(2026, 10, 1), 2570, 1),
])
def test_quarter_of_follows_the_thai_fiscal_year(day, fy, q):
    quarter = quarter_of(day)
    assert (quarter.fiscal_year, quarter.quarter) == (fy, q)
    assert quarter.start <= day <= quarter.end


def test_quarter_bounds_and_neighbours():
    q1 = Quarter(2569, 1)
    assert (q1.start, q1.end) == (date(2025, 10, 1), date(2025, 12, 31))
    assert (Quarter(2569, 2).start, Quarter(2569, 2).end) == (date(2026, 1, 1), date(2026, 3, 31))
    assert (Quarter(2569, 4).start, Quarter(2569, 4).end) == (date(2026, 7, 1), date(2026, 9, 30))
    assert q1.previous() == Quarter(2568, 4) and Quarter(2568, 4).next() == q1
    assert domain.quarters_back(Quarter(2569, 2), 4) == [Quarter(2568, 3), Quarter(2568, 4), q1, Quarter(2569, 2)]
    assert q1.label("th") == "ไตรมาส 1/2569" and q1.label("en") == "Q1 FY2569"


def test_trend_direction_and_whether_it_is_better():
    assert Trend(0.7, 0.6).direction == "up" and Trend(0.7, 0.6).better is True
    assert Trend(3, 5, higher_is_better=False).better is True  # fewer overdue milestones
    assert Trend(5, 3, higher_is_better=False).better is False
    assert Trend(0.5, 0.5).direction == "flat" and Trend(0.5, 0.5).better is None
    assert Trend(None, 0.5).direction == "unknown" and Trend(0.5, None).change is None


def ms(mid, status, due, *, ws="roadmap_governance", owner="dga", done=None, base=None, **extra):
    return {"milestone_id": mid, "status": status, "due_date": due, "baseline_due_date": base or due,
            "completed_on": done, "workstream": ws, "owner_agency": owner, "title_th": f"งาน {mid}",
            "title_en": f"Task {mid}", **extra}


TODAY = date(2026, 2, 10)  # Q2 FY2569; the previous quarter ended 31 Dec 2025


def test_days_late_and_overdue_at_a_day():
    items = [ms("a", "missed", "2026-01-31"), ms("b", "completed", "2025-12-01", done="2026-01-05"),
             ms("c", "in_progress", "2026-03-01"), ms("d", "cancelled", "2025-11-01"),
             ms("e", "completed", "2025-11-01", done="2025-11-01")]
    assert domain.milestone_days_late(items[0], TODAY) == 10
    assert domain.milestone_days_late(items[1], TODAY) == 35  # completed late: counted to completion
    assert domain.milestone_days_late(items[2], TODAY) == 0
    # At the end of Q1: b (due 1 Dec, done 5 Jan) was open and overdue; cancelled ones never count.
    assert domain.open_overdue_at(items, date(2025, 12, 31)) == 1
    assert domain.open_overdue_at(items, TODAY) == 1  # a


def test_latest_reason_prefers_the_stated_reason_of_the_due_history():
    item = ms("a", "missed", "2026-01-31", status_reasons=["deadline_passed"])
    detail = {"due_history": [{"due_date": "2026-01-01", "reason": None},
                              {"due_date": "2026-01-31", "reason": "รองบประมาณเพิ่มเติม"}]}
    assert domain.latest_reason(item, detail) == ("รองบประมาณเพิ่มเติม", "รองบประมาณเพิ่มเติม")
    assert domain.latest_reason(item) == ("เลยกำหนดแล้ว", "deadline passed")
    assert domain.latest_reason({**item, "latest_reason": "vendor late"}) == ("vendor late", "vendor late")
    assert domain.latest_reason(ms("b", "at_risk", "2026-03-01")) is None


def summary(ratings: dict[str, str | None], programme: str | None = "amber") -> dict:
    def conf(r):
        return {} if r is None else {"confidence": {"rating": r, "reasons": ["at_risk_share>=10%"]}}
    return {"workstreams": {ws: {"counts": {"missed": 1}, **conf(r)} for ws, r in ratings.items()},
            "programme": conf(programme)}


def test_roadmap_section_reads_the_five_point_scale_and_says_when_it_is_not_reported():
    items = [ms("a", "missed", "2026-01-31"), ms("b", "at_risk", "2026-03-01", ws="regulation_reform", owner="ocsc"),
             ms("c", "missed", "2025-12-01", ws="regulation_reform", owner="ocsc")]
    s = summary({"roadmap_governance": "amber_red", "regulation_reform": None}, programme="amber_green")
    sec = domain.roadmap_section("roadmap", s, items, TODAY, quarter_of(TODAY), agency=None, limit=10)
    rows = {r.workstream: r for r in sec.workstreams}
    assert rows["roadmap_governance"].rating == "amber_red"
    assert rows["roadmap_governance"].reasons_text == (("สัดส่วนที่เสี่ยง >=10%", "share at risk >=10%"),)
    assert rows["regulation_reform"].rating is None  # not in the API yet: "not yet reported"
    assert sec.status == "amber"  # amber/green -> amber on the three-level status
    assert (sec.missed_total, sec.at_risk_total, sec.total) == (2, 1, 3)
    # Missed first, most days late first; then at risk.
    assert [m.milestone_id for m in sec.late] == ["c", "a", "b"] and sec.late[0].days_late == 71
    # Overdue and open: c at the end of Q1 (due 1 Dec), a and c now: worse.
    assert (sec.trend.previous, sec.trend.current, sec.trend.better) == (1.0, 2.0, False)


def test_regulation_section_and_agency_pages():
    items = [ms("a", "missed", "2026-01-31"), ms("b", "at_risk", "2026-03-01", ws="regulation_reform", owner="ocsc")]
    s = summary({"regulation_reform": "red"})
    reg = domain.roadmap_section("regulation", s, items, TODAY, quarter_of(TODAY), agency=None, limit=10,
                                 workstreams=["regulation_reform"])
    assert [r.workstream for r in reg.workstreams] == ["regulation_reform"] and reg.status == "red"
    assert [m.milestone_id for m in reg.late] == ["b"]
    mine = domain.roadmap_section("roadmap", s, items, TODAY, quarter_of(TODAY), agency="ocsc", limit=10)
    assert mine.status == "amber" and mine.total == 1 and all(r.rating is None for r in mine.workstreams)
    none = domain.roadmap_section("roadmap", s, items, TODAY, quarter_of(TODAY), agency="cgd", limit=10)
    assert none.status == "not_reported" and none.total == 0
    failed = domain.roadmap_section("roadmap", None, None, TODAY, quarter_of(TODAY), agency=None, limit=10)
    assert failed.status == "not_reported" and not failed.available


def readiness_answer(rows):
    return {"rows": [{"agency": a, "competency": c, "target": t, "ready_learners": r} for a, c, t, r in rows]}


def test_readiness_against_the_linear_path():
    now = readiness_answer([("dga", "mindset", 100, 30), ("ocsc", "mindset", 100, 10), ("dga", "digital_technology", 200, 40)])
    lag = {"agencies": [{"agency": "ocsc", "rank": 1, "target": 100, "ready_learners": 10, "expected": 30, "gap": 20},
                        {"agency": "dga", "rank": 2, "target": 300, "ready_learners": 70, "expected": 90, "gap": 20}]}
    sec = domain.readiness_section(now, None, lag, 2569, 0.3, Quarter(2569, 2), agency=None, limit=5)
    rows = {r.competency: r for r in sec.rows}
    assert (rows["mindset"].target, rows["mindset"].ready) == (200, 40) and rows["academic_knowledge"].target == 0
    assert (sec.target, sec.ready) == (400, 80)
    assert sec.pace == pytest.approx(80 / 120) and sec.status == "red"  # 67% of the path: below 70%
    assert sec.trend.direction == "unknown" and sec.trend.note is not None  # the API has no as-of date
    assert [a.agency for a in sec.laggards] == ["ocsc", "dga"]
    only = domain.readiness_section(now, None, lag, 2569, 0.3, Quarter(2569, 2), agency="dga", limit=5)
    assert [a.agency for a in only.laggards] == ["dga"]
    # In Q1 the previous quarter closed the previous fiscal year: its final ratio is the comparison.
    prev = readiness_answer([("dga", "mindset", 100, 95)])
    q1 = domain.readiness_section(now, prev, lag, 2569, 0.3, Quarter(2569, 1), agency=None, limit=5)
    assert q1.trend.previous == pytest.approx(0.95) and q1.trend.current == pytest.approx(80 / 120)


def cell(age, channel, n, **figures):
    base = {"age_group": age, "channel": channel, "responses": n, "mean_satisfaction": 4.0, "share_satisfied": 0.8,
            "share_tech_difficulty": 0.1, "awareness_rate": 0.5, "suppressed": False}
    return {**base, **figures}


def experience(cells, **overall):
    return {"cells": cells, "overall": {"responses": sum(c["responses"] for c in cells), "share_satisfied": 0.75,
                                        "mean_satisfaction": 3.9, "awareness_rate": 0.6, **overall}}


def test_public_suppression_is_the_feedback_apis_rule():
    cells = [cell("18_24", "online_web", 50), cell("18_24", "walk_in", 4), cell("60_plus", "walk_in", 12),
             cell("60_plus", "mobile_app", 30)]
    exp = domain.public_experience(experience(cells), 10)
    expected = plan_counts({(c["age_group"], c["channel"]): c["responses"] for c in cells}, 10)
    assert exp.plan == expected
    # 4 responses are hidden, and with them the next smallest cell (12), so 4 cannot be differenced out.
    assert exp.plan.cells == {("18_24", "walk_in"), ("60_plus", "walk_in")}
    sec = domain.access_section(exp, {"gaps": [{"age_group": "60_plus", "channel": "walk_in"},
                                               {"age_group": "60_plus", "channel": "mobile_app"}]}, [exp], ("", ""), 10)
    sat = sec.heatmaps[0]
    assert sat.measure == "mean_satisfaction"
    hidden = sat.cells[("60_plus", "walk_in")]
    assert hidden.suppressed and hidden.value is None and hidden.responses is None and not hidden.gap
    assert sat.cells[("60_plus", "mobile_app")].gap and sat.cells[("18_24", "online_web")].value == 4.0
    assert not any(c.gap for c in sec.heatmaps[3].cells.values())  # the gap test is about satisfaction only
    assert sec.suppressed_cells == 2 and sec.gaps == 1


def test_trust_and_ease_are_shown_once_the_api_reports_them():
    before = domain.access_section(domain.public_experience(experience([cell("18_24", "online_web", 50)]), 10),
                                   None, [], ("", ""), 10)
    assert {h.measure: h.reported for h in before.heatmaps} == {
        "mean_satisfaction": True, "mean_trust": False, "mean_ease": False, "share_tech_difficulty": True}
    after = domain.access_section(domain.public_experience(
        experience([cell("18_24", "online_web", 50, mean_trust=3.5, mean_ease=4.25,
                     trust_responses=50, ease_responses=50)]), 10), None, [], ("", ""), 10)
    trust = next(h for h in after.heatmaps if h.measure == "mean_trust")
    assert trust.reported and trust.cells[("18_24", "online_web")].value == 3.5


def test_small_overall_is_hidden_and_status_follows_the_published_figure():
    tiny = domain.public_experience(experience([cell("18_24", "online_web", 6)]), 10)
    sec = domain.access_section(tiny, None, [tiny], ("", ""), 10)
    assert sec.share_satisfied is None and sec.overall_suppressed and sec.status == "not_reported"
    big = domain.public_experience(experience([cell("18_24", "online_web", 60)], share_satisfied=0.85), 10)
    prev = domain.public_experience(experience([cell("18_24", "online_web", 60)], share_satisfied=0.7), 10)
    sec = domain.access_section(big, None, [prev, big], ("", ""), 10)
    assert sec.status == "green" and sec.trend.previous == 0.7 and sec.trend.better is True


def test_awareness_by_age_uses_published_cells_only():
    cells = [cell("60_plus", "walk_in", 20, awareness_rate=0.25), cell("60_plus", "mobile_app", 30, awareness_rate=0.5),
             cell("60_plus", "call_center", 3, awareness_rate=1.0), cell("18_24", "online_web", 5, awareness_rate=1.0),
             cell("25_34", "online_web", 100, awareness_rate=0.9)]
    exp = domain.public_experience(experience(cells), 10)
    rows = {r.age_group: r for r in domain.awareness_by_age(exp, 10)}
    hidden = exp.plan.cells
    assert ("60_plus", "call_center") in hidden and ("18_24", "online_web") in hidden
    published_60 = [c for c in cells if c["age_group"] == "60_plus" and (c["age_group"], c["channel"]) not in hidden]
    n = sum(c["responses"] for c in published_60)
    assert rows["60_plus"].responses == n
    assert rows["60_plus"].rate == pytest.approx(sum(c["awareness_rate"] * c["responses"] for c in published_60) / n)
    assert rows["18_24"].rate is None  # too few published responses in the row
    sec = domain.awareness_section(exp, [None, exp], 10)
    assert sec.rate == 0.6 and sec.trend.direction == "unknown" and sec.status == "green"


def test_overview_with_every_source_down_says_not_reported_everywhere():
    view = domain.build_overview(domain.Inputs(today=TODAY, quarter=quarter_of(TODAY), agency=None,
                                               unavailable=("feedback", "roadmap", "training")))
    assert [s.key for s in view.sections()] == ["roadmap", "regulation", "readiness", "access", "awareness"]
    assert {s.status for s in view.sections()} == {"not_reported"}


def test_trust_and_ease_cells_hidden_by_their_own_answer_counts():
    # A cell with 40 responses but 2 trust answers must not publish a trust figure (one person's answer could be
    # picked out); satisfaction over the same cell stays published.
    from services.reports.domain import heatmap, public_experience

    def cell(age, channel, responses, trust):
        return {"age_group": age, "channel": channel, "responses": responses, "mean_satisfaction": 4.0,
                "trust_responses": trust, "mean_trust": 3.5, "ease_responses": responses, "mean_ease": 4.1}

    answer = {"cells": [cell("60_plus", "walk_in", 40, 2), cell("18_24", "online_web", 40, 40),
                        cell("25_34", "online_web", 40, 40), cell("35_44", "online_web", 40, 40)],
              "overall": {"responses": 160}}
    exp = public_experience(answer, 10)
    trust = heatmap(exp, "mean_trust", ("", ""), "mean", True, set())
    satisfaction = heatmap(exp, "mean_satisfaction", ("", ""), "mean", True, set())
    assert trust.cells[("60_plus", "walk_in")].value is None and trust.cells[("60_plus", "walk_in")].suppressed
    # complementary suppression: the hidden answers alone are under the threshold, so one more cell is hidden
    assert sum(1 for c in trust.cells.values() if c.suppressed) >= 2
    assert satisfaction.cells[("60_plus", "walk_in")].value == 4.0
