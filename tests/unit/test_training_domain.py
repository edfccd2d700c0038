"""Training rules without I/O: fiscal years, pseudonyms, distinct learners, targets, laggards, CSV rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from fakes_training import completion_record
from ledger_fakes import MemoryLedgerStore

from services.contracts.thai_calendar import fiscal_year_elapsed_ratio, fiscal_year_of
from services.contracts.training import TrainingCourseCompleted
from services.training import domain
from services.training.adapters import counting_ledger

NOW = datetime(2026, 4, 1, 5, 0, tzinfo=UTC)


def completion(learner: str, competency="digital_technology", passed=True, hours=3.0, on=date(2026, 2, 1), agency="dga"):
    data = TrainingCourseCompleted(agency=agency, learner_ref=learner, course_id="C", competency=competency, hours=hours,
                                   completed_on=on, passed=passed)
    return completion_record("/agencies/dga/t", f"{learner}-{competency}-{hours}-{on}", data, time=NOW)


def test_fiscal_year_boundary_is_1_october_in_bangkok():
    # 30 Sep 2025 17:00 UTC is already 1 Oct 2025 00:00 in Bangkok: fiscal year 2569 begins.
    assert fiscal_year_of(datetime(2025, 9, 30, 16, 59, tzinfo=UTC)) == 2568
    assert fiscal_year_of(datetime(2025, 9, 30, 17, 0, tzinfo=UTC)) == 2569
    assert fiscal_year_of(date(2026, 9, 30)) == 2569
    assert fiscal_year_of(date(2026, 10, 1)) == 2570
    assert domain.completion_state(completion("x", on=date(2025, 10, 1)))["fiscal_year"] == 2569
    assert domain.completion_state(completion("x", on=date(2025, 9, 30)))["fiscal_year"] == 2568


def test_learner_hash_is_keyed_and_scoped_by_agency():
    a = domain.learner_hash("k1", "dga", "emp-1")
    assert a == domain.learner_hash("k1", "dga", "emp-1") and domain.is_learner_hash(a)
    assert a != domain.learner_hash("k2", "dga", "emp-1")  # without the key the hash cannot be recomputed
    assert a != domain.learner_hash("k1", "ocsc", "emp-1")
    assert "emp-1" not in a


def test_a_learner_with_three_courses_of_a_competency_counts_once_when_learners_are_distinct():
    docs = [completion("h1", hours=2), completion("h1", hours=3), completion("h1", hours=4), completion("h2", passed=False)]
    store = MemoryLedgerStore()
    asyncio.run(counting_ledger(store, lambda: NOW).write([{**d, "_id": str(i), "id": str(i)} for i, d in enumerate(docs)],
                                                          domain.COMPLETIONS))
    [rollup] = store.docs(domain.ROLLUPS)
    assert rollup["_id"] == "2569:dga:digital_technology"
    assert rollup["ready_learners"] == 1 and rollup["completions"] == 4 and rollup["passed_completions"] == 3
    assert rollup["passed_hours"] == 9 and rollup["hours"] == 12


def test_target_replacement_orders_by_time_then_id():
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    assert domain.target_is_newer((t2, "b"), (t1, "z"))
    assert not domain.target_is_newer((t1, "z"), (t2, "b"))
    assert not domain.target_is_newer((t1, "a"), (t1, "a"))  # redelivery changes nothing
    assert domain.target_is_newer((t1, "a"), None)


def test_laggards_rank_by_gap_to_linear_path():
    now = datetime(2026, 4, 1, 5, tzinfo=UTC)  # about half of FY 2569
    share = fiscal_year_elapsed_ratio(2569, now)
    rows = [
        {"agency": "dga", "competency": "digital_technology", "target": 100, "ready_learners": 50},
        {"agency": "ocsc", "competency": "digital_technology", "target": 100, "ready_learners": 10},
        {"agency": "ocsc", "competency": "mindset", "target": 20, "ready_learners": 0},
        {"agency": "nso", "competency": "mindset", "target": None, "ready_learners": 500},
    ]
    out = domain.laggards(rows, 2569, now)
    assert [a["agency"] for a in out] == ["ocsc", "dga"]  # no target, not ranked
    assert out[0]["expected"] == pytest.approx(120 * share, abs=0.01)
    assert out[0]["gap"] == pytest.approx(120 * share - 10, abs=0.01)
    assert out[0]["competencies"][0]["competency"] == "digital_technology"


def test_csv_row_accepts_buddhist_era_and_thai_digits_and_is_deterministic():
    row = {"agency": "dga", "learner_ref": "emp-๐๐๑", "course_id": "DG-๑๐๑", "course_title": "ดิจิทัล",
           "competency": "digital_technology", "hours": "๖", "completed_on": "๑๐/๐๒/๒๕๖๙", "passed": "ผ่าน", "score": "๘๕"}
    parsed = domain.parse_csv_row(row)
    assert parsed.data.completed_on == date(2026, 2, 10)
    assert parsed.data.learner_ref == "emp-001" and parsed.data.hours == 6 and parsed.data.score == 85 and parsed.data.passed
    assert parsed.id == domain.parse_csv_row(dict(row)).id and parsed.id.startswith("csv:")
    assert domain.parse_csv_row({**row, "id": "R-7"}).id == "csv:R-7"


@pytest.mark.parametrize("change,reason", [
    ({"agency": "nope"}, "unknown_agency"),
    ({"competency": "cooking"}, "unknown_competency"),
    ({"learner_ref": "1101700230708"}, "national_id"),
    ({"completed_on": "31/02/2569"}, "invalid_date"),
    ({"hours": "six"}, "invalid_number"),
    ({"passed": "maybe"}, "invalid_passed"),
    ({"course_id": ""}, "missing_value"),
    ({"hours": "5000"}, "invalid_value"),
])
def test_csv_row_errors_have_reasons(change, reason):
    row = {"agency": "dga", "learner_ref": "emp-1", "course_id": "C1", "competency": "mindset", "hours": "1",
           "completed_on": "2026-01-05", "passed": "true"}
    with pytest.raises(domain.RowError) as info:
        domain.parse_csv_row({**row, **change})
    assert info.value.reason == reason


def test_later_target_wins_whatever_the_delivery_order():
    events = [(datetime(2025, 10, 5, tzinfo=UTC), "a", 10), (datetime(2026, 1, 5, tzinfo=UTC), "b", 4),
              (datetime(2026, 1, 5, tzinfo=UTC), "c", 6)]
    import itertools

    for order in itertools.permutations(events + events[:1]):  # with a redelivery
        current = None
        target = None
        for t, eid, head in order:
            if domain.target_is_newer((domain.bson_time(t), eid), current):
                current, target = (domain.bson_time(t), eid), head
        assert target == 6  # latest time, then the larger id


def test_bson_time_truncates_to_milliseconds():
    t = datetime(2026, 1, 5, 1, 2, 3, 456789, tzinfo=UTC)
    assert domain.bson_time(t).microsecond == 456000
