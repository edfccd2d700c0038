"""Month rollups: a range read as whole months plus the days at its edges covers every day exactly once, and a
month's rollup equals the sum of its days' rollups."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.feedback import domain

some_day = st.integers(0, 900).map(lambda n: date(2025, 1, 1) + timedelta(days=n))


@settings(max_examples=300, deadline=None)
@given(some_day, st.integers(0, 400))
def test_a_range_is_whole_months_and_edge_days_each_day_once(start, length):
    end = start + timedelta(days=length)
    months, runs = domain.split_range(start, end)
    covered: list[date] = []
    for m in months:
        first = date.fromisoformat(f"{m}-01")
        day = first
        while day.strftime("%Y-%m") == m:
            covered.append(day)
            day += timedelta(days=1)
    for first, last in runs:
        assert first.strftime("%Y-%m") == last.strftime("%Y-%m")  # an edge run stays in one month
        covered += [first + timedelta(days=i) for i in range((last - first).days + 1)]
    assert sorted(covered) == [start + timedelta(days=i) for i in range(length + 1)]
    assert len(runs) <= 2 or not months  # at most the two edges


def test_a_quarter_is_three_month_documents():
    assert domain.split_range(date(2026, 1, 1), date(2026, 3, 31)) == (["2026-01", "2026-02", "2026-03"], [])
    assert domain.split_range(date(2026, 10, 1), date(2026, 11, 17)) == (
        ["2026-10"], [(date(2026, 11, 1), date(2026, 11, 17))])


def test_a_months_rollup_is_the_sum_of_its_days():
    docs = [{"agency": a, "bangkok_day": d, "data": {"channel": "walk_in", "age_group": "60_plus", "satisfaction": s,
                                                       "tech_difficulty": "none", "aware_of_digital_channels": True}}
            for a, d, s in [("dga", "2026-02-27", 5), ("dga", "2026-02-28", 3), ("rd", "2026-02-28", 1),
                            ("dga", "2026-03-01", 4)]]
    _, daily = domain.rollup_deltas(docs)
    for agency in ("dga", "rd", domain.ALL_AGENCIES):
        days = [d.inc for rid, d in daily.items() if d.keys.get("agency") == agency and d.keys.get("day", "").startswith("2026-02")]
        summed: dict[str, int] = {}
        for inc in days:
            for k, v in inc.items():
                summed[k] = summed.get(k, 0) + v
        assert daily[domain.monthly_rollup_id("2026-02", agency)].inc == summed
    assert daily["2026-03|dga"].inc["cells.walk_in|60_plus.responses"] == 1
