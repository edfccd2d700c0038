import json
from datetime import UTC, date, datetime, timedelta

import pytest

from services.contracts.thai_calendar import BANGKOK
from services.notifier.holidays import (
    DEFAULT_HOLIDAYS_FILE,
    Holiday,
    HolidayDataError,
    is_working_day,
    load_holidays,
    next_working_morning,
)


@pytest.fixture(scope="module")
def holidays():
    return load_holidays()


def test_file_has_note_and_both_years(holidays):
    doc = json.loads(DEFAULT_HOLIDAYS_FILE.read_text(encoding="utf-8"))
    assert "Cabinet" in doc["note"]
    years = {d.year for d in holidays}
    assert years == {2026, 2027}
    assert all(isinstance(h, Holiday) and h.date == d for d, h in holidays.items())


@pytest.mark.parametrize("year", [2026, 2027])
@pytest.mark.parametrize(
    ("month", "day"),
    [
        (1, 1),
        (4, 6),
        (4, 13),
        (4, 14),
        (4, 15),
        (5, 1),
        (5, 4),
        (6, 3),
        (7, 28),
        (8, 12),
        (10, 13),
        (10, 23),
        (12, 5),
        (12, 10),
        (12, 31),
    ],
)
def test_fixed_holidays_present(holidays, year, month, day):
    assert date(year, month, day) in holidays


def test_lunar_holidays_present(holidays):
    for year in (2026, 2027):
        names = {h.name_en for h in holidays.values() if h.date.year == year}
        assert {"Makha Bucha Day", "Visakha Bucha Day", "Asarnha Bucha Day", "Buddhist Lent Day"} <= names


def test_weekend_holidays_have_substitution_day(holidays):
    # Every holiday on a weekend must be followed by a weekday substitution
    # entry before the next run of ordinary working days.
    for d, h in holidays.items():
        if d.weekday() >= 5 and not h.name_en.startswith("Substitution"):
            following = [holidays.get(d + timedelta(days=i)) for i in range(1, 5)]
            assert any(f and f.name_en.startswith("Substitution") and f.date.weekday() < 5 for f in following), d


def test_known_substitution_days(holidays):
    assert date(2026, 12, 7) in holidays  # 5 Dec 2026 is a Saturday
    assert date(2027, 10, 25) in holidays  # 23 Oct 2027 is a Saturday


def test_load_returns_fresh_dict(holidays):
    fresh = load_holidays()
    fresh.clear()
    assert load_holidays() == holidays


def test_load_rejects_duplicates(tmp_path):
    path = tmp_path / "h.json"
    rec = {"date": "2026-01-01", "name_th": "วันขึ้นปีใหม่", "name_en": "New Year's Day"}
    path.write_text(json.dumps({"holidays": [rec, rec]}), encoding="utf-8")
    with pytest.raises(HolidayDataError, match="duplicate"):
        load_holidays(path)


def test_load_rejects_bad_date(tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"holidays": [{"date": "2026-02-30", "name_th": "x", "name_en": "x"}]}))
    with pytest.raises(HolidayDataError):
        load_holidays(str(path))


def test_is_working_day(holidays):
    assert is_working_day(date(2026, 9, 30), holidays)  # Wednesday
    assert not is_working_day(date(2026, 10, 3), holidays)  # Saturday
    assert not is_working_day(date(2026, 4, 13), holidays)  # Songkran, Monday
    assert is_working_day(date(2026, 4, 13), {})
    with pytest.raises(TypeError):
        is_working_day(datetime(2026, 9, 30, tzinfo=UTC), holidays)


def test_next_working_morning_same_day_before_hour(holidays):
    after = datetime(2026, 9, 30, 7, 30, tzinfo=BANGKOK)
    assert next_working_morning(after, holidays) == datetime(2026, 9, 30, 8, 0, tzinfo=BANGKOK)


def test_next_working_morning_after_hour_goes_to_next_day(holidays):
    after = datetime(2026, 9, 30, 8, 0, tzinfo=BANGKOK)
    assert next_working_morning(after, holidays) == datetime(2026, 10, 1, 8, 0, tzinfo=BANGKOK)


def test_next_working_morning_skips_weekend_and_songkran(holidays):
    # Friday 10 Apr 2026 evening -> weekend -> Songkran Mon-Wed -> Thu 16 Apr.
    after = datetime(2026, 4, 10, 18, 0, tzinfo=BANGKOK)
    assert next_working_morning(after, holidays) == datetime(2026, 4, 16, 8, 0, tzinfo=BANGKOK)


def test_next_working_morning_converts_from_utc(holidays):
    # 2026-07-27 23:30 UTC is Tue 28 Jul 06:30 Bangkok; 28-30 Jul are holidays.
    after = datetime(2026, 7, 27, 23, 30, tzinfo=UTC)
    result = next_working_morning(after, holidays, hour=9)
    assert result == datetime(2026, 7, 31, 9, 0, tzinfo=BANGKOK)
    assert result.tzinfo == BANGKOK


def test_next_working_morning_validation(holidays):
    with pytest.raises(ValueError):
        next_working_morning(datetime(2026, 9, 30, 7, 0), holidays)
    with pytest.raises(ValueError):
        next_working_morning(datetime(2026, 9, 30, 7, 0, tzinfo=UTC), holidays, hour=24)


def test_next_working_morning_broken_table():
    everything = _AllDays()
    with pytest.raises(HolidayDataError):
        next_working_morning(datetime(2026, 9, 30, tzinfo=UTC), everything)


class _AllDays:
    def __contains__(self, item):
        return True
