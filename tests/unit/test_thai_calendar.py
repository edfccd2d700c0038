from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts.thai_calendar import (
    BANGKOK,
    BE_OFFSET,
    ascii_to_thai_digits,
    bangkok_day,
    bangkok_today,
    end_of_bangkok_day,
    fiscal_year_bounds,
    fiscal_year_elapsed_ratio,
    fiscal_year_of,
    fiscal_year_utc_range,
    format_thai_date,
    format_thai_datetime,
    is_valid_thai_national_id,
    parse_thai_date,
    thai_digits_to_ascii,
    to_buddhist_year,
    to_gregorian_year,
)

# --- years and digits -------------------------------------------------------


def test_year_conversion():
    assert BE_OFFSET == 543
    assert to_buddhist_year(2026) == 2569
    assert to_gregorian_year(2569) == 2026
    with pytest.raises(TypeError):
        to_buddhist_year("2026")


def test_digit_conversion():
    assert thai_digits_to_ascii("๓๐/๐๙/๒๕๖๙") == "30/09/2569"
    assert ascii_to_thai_digits("2569") == "๒๕๖๙"
    assert thai_digits_to_ascii("ปี ๒๕๖๙ abc") == "ปี 2569 abc"


@given(st.text())
def test_digit_conversion_round_trips_on_ascii_digits(s):
    ascii_only = thai_digits_to_ascii(s)
    assert thai_digits_to_ascii(ascii_to_thai_digits(ascii_only)) == ascii_only


# --- parsing -----------------------------------------------------------------

SEP_30 = date(2026, 9, 30)


@pytest.mark.parametrize(
    "text",
    [
        "2026-09-30",
        "30/09/2569",
        "30/9/2569",
        "30-09-2569",
        "30.09.2569",
        "30/09/2026",
        "30/09/69",
        "๓๐/๐๙/๒๕๖๙",
        "  30/09/2569  ",
        "30 กันยายน 2569",
        "30 ก.ย. 2569",
        "30 ก.ย. 69",
        "30 ก.ย 69",
        "๓๐ ก.ย. ๖๙",
        "30 ก.ย. พ.ศ. 2569",
        "30 กันยายน พ.ศ.2569",
        "30กันยายน2569",
        "วันพุธที่ 30 กันยายน พ.ศ. 2569",
        "30 กันยายน ค.ศ. 2026",
    ],
)
def test_parse_accepted_formats(text):
    assert parse_thai_date(text) == SEP_30


def test_parse_all_month_abbreviations():
    abbrs = ["ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค."]
    for month, abbr in enumerate(abbrs, start=1):
        assert parse_thai_date(f"1 {abbr} 2569") == date(2026, month, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("31/02/2569", "31/02/2569: day is out of range for month"),
        ("29/02/2569", "day is out of range for month"),  # 2026 is not a leap year
        ("๓๑/๐๒/๒๕๖๙", "day is out of range for month"),
        ("01/13/2569", "month must be in 1..12"),
        ("30 เดือนหน้า 2569", "unknown Thai month name"),
        ("30 ก.ย. พ.ศ. 2026", "not a plausible Buddhist-era year"),
        ("tomorrow", "unrecognised date format"),
        ("2569/09/30", "unrecognised date format"),
        ("", "empty"),
    ],
)
def test_parse_rejects_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_thai_date(text)


def test_parse_leap_day_in_buddhist_year():
    assert parse_thai_date("29/02/2567") == date(2024, 2, 29)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2400, 12, 31)), st.sampled_from(["short", "long", "full"]))
def test_format_parse_round_trip(d, style):
    assert parse_thai_date(format_thai_date(d, style)) == d


# --- formatting ----------------------------------------------------------------


def test_format_styles():
    assert format_thai_date(SEP_30) == "30 ก.ย. 2569"
    assert format_thai_date(SEP_30, "long") == "30 กันยายน 2569"
    assert format_thai_date(SEP_30, "full") == "วันพุธที่ 30 กันยายน พ.ศ. 2569"
    assert format_thai_date(date(2026, 1, 1), "short") == "1 ม.ค. 2569"
    with pytest.raises(ValueError):
        format_thai_date(SEP_30, "medium")


def test_format_datetime_in_bangkok_time():
    dt = datetime(2026, 9, 30, 7, 5, tzinfo=UTC)
    assert format_thai_datetime(dt) == "30 ก.ย. 2569 14:05 น."
    # 18:30 UTC is already the next Bangkok day.
    assert format_thai_datetime(datetime(2026, 9, 30, 18, 30, tzinfo=UTC)) == "1 ต.ค. 2569 01:30 น."
    with pytest.raises(ValueError):
        format_thai_datetime(datetime(2026, 9, 30, 7, 5))


# --- fiscal year ---------------------------------------------------------------


def test_fiscal_year_boundary_instants():
    # 2025-09-30T17:00Z is 2025-10-01 00:00 in Bangkok: first instant of FY 2569.
    assert fiscal_year_of(datetime(2025, 9, 30, 17, 0, tzinfo=UTC)) == 2569
    assert fiscal_year_of(datetime(2025, 9, 30, 16, 59, tzinfo=UTC)) == 2568
    assert fiscal_year_of(datetime(2025, 9, 30, 16, 59, 59, 999999, tzinfo=UTC)) == 2568


def test_fiscal_year_of_dates():
    assert fiscal_year_of(date(2025, 10, 1)) == 2569
    assert fiscal_year_of(date(2026, 9, 30)) == 2569
    assert fiscal_year_of(date(2026, 10, 1)) == 2570
    assert fiscal_year_of(date(2026, 1, 15)) == 2569


def test_fiscal_year_of_rejects_naive_datetime():
    with pytest.raises(ValueError, match="naive"):
        fiscal_year_of(datetime(2025, 10, 1, 0, 0))


def test_fiscal_year_of_other_timezone():
    ny = ZoneInfo("America/New_York")
    # 2025-09-30 13:00 New York == 2025-10-01 00:00 Bangkok.
    assert fiscal_year_of(datetime(2025, 9, 30, 13, 0, tzinfo=ny)) == 2569


def test_fiscal_year_bounds_and_utc_range():
    assert fiscal_year_bounds(2569) == (date(2025, 10, 1), date(2026, 9, 30))
    start, end = fiscal_year_utc_range(2569)
    assert start == datetime(2025, 9, 30, 17, 0, tzinfo=UTC)
    assert end == datetime(2026, 9, 30, 17, 0, tzinfo=UTC)
    assert start.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="Buddhist-era"):
        fiscal_year_bounds(2026)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_fiscal_year_range_contains_instant(instant):
    fy = fiscal_year_of(instant)
    start, end = fiscal_year_utc_range(fy)
    assert start <= instant < end
    first, last = fiscal_year_bounds(fy)
    assert first <= bangkok_day(instant) <= last


def test_consecutive_fiscal_years_are_contiguous():
    assert fiscal_year_utc_range(2569)[1] == fiscal_year_utc_range(2570)[0]


def test_fiscal_year_elapsed_ratio():
    start, end = fiscal_year_utc_range(2569)
    assert fiscal_year_elapsed_ratio(2569, start) == 0.0
    assert fiscal_year_elapsed_ratio(2569, start - timedelta(days=30)) == 0.0
    assert fiscal_year_elapsed_ratio(2569, end) == 1.0
    assert fiscal_year_elapsed_ratio(2569, end + timedelta(days=400)) == 1.0
    # 2026-04-01 Bangkok: 182 days (Oct..Mar) completed of 365.
    mid = datetime(2026, 4, 1, 12, 0, tzinfo=BANGKOK)
    assert fiscal_year_elapsed_ratio(2569, mid) == pytest.approx(182 / 365)
    with pytest.raises(ValueError):
        fiscal_year_elapsed_ratio(2569, datetime(2026, 4, 1))


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)))
def test_elapsed_ratio_in_unit_interval(now):
    assert 0.0 <= fiscal_year_elapsed_ratio(2569, now) <= 1.0


# --- Bangkok days --------------------------------------------------------------


def test_bangkok_day_and_today():
    assert bangkok_day(datetime(2025, 9, 30, 17, 0, tzinfo=UTC)) == date(2025, 10, 1)
    assert bangkok_day(datetime(2025, 9, 30, 16, 59, tzinfo=UTC)) == date(2025, 9, 30)
    assert bangkok_today(datetime(2026, 1, 1, 0, 0, tzinfo=BANGKOK)) == date(2026, 1, 1)
    with pytest.raises(ValueError):
        bangkok_day(datetime(2026, 1, 1))


def test_end_of_bangkok_day():
    end = end_of_bangkok_day(date(2026, 9, 30))
    assert end == datetime(2026, 9, 30, 17, 0, tzinfo=UTC)
    assert end.tzinfo is not None
    assert bangkok_day(end) == date(2026, 10, 1)
    assert bangkok_day(end - timedelta(microseconds=1)) == date(2026, 9, 30)
    with pytest.raises(TypeError):
        end_of_bangkok_day(datetime(2026, 9, 30, tzinfo=UTC))


# --- national ID -----------------------------------------------------------------

# Check digit worked by hand: weights 13..2 over 1,1,0,1,7,0,0,2,3,0,7,0 sum to
# 146; 146 mod 11 = 3; (11 - 3) mod 10 = 8.
VALID_ID = "1101700230708"


@pytest.mark.parametrize(
    "value",
    [VALID_ID, "1-1017-00230-70-8", "1 1017 00230 70 8", "๑๑๐๑๗๐๐๒๓๐๗๐๘", "3100400123456"],
)
def test_valid_national_ids(value):
    assert is_valid_thai_national_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "1101700230709",  # wrong check digit
        "0101700230706",  # leading zero is never issued
        "110170023070",  # 12 digits
        "11017002307080",  # 14 digits
        "11017002307a8",
        "",
        "١١٠١٧٠٠٢٣٠٧٠٨",  # Arabic-Indic digits are not accepted
        None,
        1101700230708,
    ],
)
def test_invalid_national_ids(value):
    assert not is_valid_thai_national_id(value)


def _check_digit(first12: str) -> int:
    return (11 - sum(int(first12[i]) * (13 - i) for i in range(12)) % 11) % 10


@given(st.from_regex(r"[1-9][0-9]{11}", fullmatch=True), st.integers(min_value=1, max_value=9))
def test_changing_check_digit_invalidates(first12, delta):
    good = _check_digit(first12)
    assert is_valid_thai_national_id(f"{first12}{good}")
    bad = (good + delta) % 10
    assert not is_valid_thai_national_id(f"{first12}{bad}")


def test_a_year_in_either_era_reads_as_gregorian():
    from services.contracts.thai_calendar import year_as_gregorian

    assert year_as_gregorian(2510) == 1967
    assert year_as_gregorian(1967) == 1967
    assert year_as_gregorian(2400) == 2400  # the boundary stays Gregorian, as parse_thai_date reads it
