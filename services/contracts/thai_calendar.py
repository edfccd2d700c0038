"""Thai calendar helpers: Buddhist-era years, Thai dates, fiscal years, national IDs.

Everything here is a pure function. Instants are always timezone-aware: the
programme's deadlines are Bangkok calendar days, and mixing naive datetimes
with aware ones is the classic way to be off by seven hours at a fiscal-year
boundary, so naive datetimes are rejected instead of guessed at.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "BANGKOK",
    "BE_OFFSET",
    "THAI_MONTHS_ABBR",
    "THAI_MONTHS_FULL",
    "THAI_WEEKDAYS",
    "ascii_to_thai_digits",
    "bangkok_day",
    "bangkok_today",
    "end_of_bangkok_day",
    "fiscal_year_bounds",
    "fiscal_year_elapsed_ratio",
    "fiscal_year_of",
    "fiscal_year_utc_range",
    "format_thai_date",
    "format_thai_datetime",
    "is_valid_thai_national_id",
    "parse_thai_date",
    "thai_digits_to_ascii",
    "to_buddhist_year",
    "to_gregorian_year",
    "year_as_gregorian",
]

BANGKOK = ZoneInfo("Asia/Bangkok")
# Buddhist Era year = Gregorian year + 543 (the Thai civil calendar since 1941).
BE_OFFSET = 543

# Four-digit years above this are taken as Buddhist era. Gregorian 2401+ and
# BE 2400- are both far outside anything this system will ever record.
_BE_THRESHOLD = 2400

THAI_MONTHS_FULL = (
    "มกราคม",
    "กุมภาพันธ์",
    "มีนาคม",
    "เมษายน",
    "พฤษภาคม",
    "มิถุนายน",
    "กรกฎาคม",
    "สิงหาคม",
    "กันยายน",
    "ตุลาคม",
    "พฤศจิกายน",
    "ธันวาคม",
)
THAI_MONTHS_ABBR = (
    "ม.ค.",
    "ก.พ.",
    "มี.ค.",
    "เม.ย.",
    "พ.ค.",
    "มิ.ย.",
    "ก.ค.",
    "ส.ค.",
    "ก.ย.",
    "ต.ค.",
    "พ.ย.",
    "ธ.ค.",
)
# Indexed by date.weekday() (Monday == 0).
THAI_WEEKDAYS = ("จันทร์", "อังคาร", "พุธ", "พฤหัสบดี", "ศุกร์", "เสาร์", "อาทิตย์")

_THAI_DIGITS = "๐๑๒๓๔๕๖๗๘๙"
_TO_ASCII = str.maketrans(_THAI_DIGITS, "0123456789")
_TO_THAI = str.maketrans("0123456789", _THAI_DIGITS)

# Month lookup ignores dots so "ก.ย.", "ก.ย" and "กย" all resolve; full names are unambiguous so they share the same table.
_MONTH_LOOKUP: dict[str, int] = {}
for _i, (_full, _abbr) in enumerate(zip(THAI_MONTHS_FULL, THAI_MONTHS_ABBR), start=1):
    _MONTH_LOOKUP[_full] = _i
    _MONTH_LOOKUP[_abbr.replace(".", "")] = _i
del _i, _full, _abbr

_ISO_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NUMERIC_RE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})")
_THAI_TEXT_RE = re.compile(
    r"(\d{1,2})\s*"
    # Non-greedy so an unspaced era marker ("กันยายนพ.ศ.2569") is not
    # swallowed into the month name.
    r"(?P<month>[\u0E01-\u0E4E.]+?)\s*"
    r"(?:(?P<era>พ\.?\s?ศ\.?|ค\.?\s?ศ\.?)\s*)?"
    r"(?P<year>\d{4}|\d{2})"
)
# Optional leading weekday as produced by format_thai_date(style="full").
_WEEKDAY_PREFIX_RE = re.compile(r"^วัน(?:" + "|".join(THAI_WEEKDAYS) + r")(?:ที่)?\s*")


# --------------------------------------------------------------------------
# Years and digits


def to_buddhist_year(gregorian_year: int) -> int:
    return _require_int(gregorian_year, "gregorian_year") + BE_OFFSET


def to_gregorian_year(be_year: int) -> int:
    return _require_int(be_year, "be_year") - BE_OFFSET


def year_as_gregorian(year: int) -> int:
    """A four-digit year written in either era, as Gregorian: above 2400 it is Buddhist era (2400 BE = 1857 CE,
    so no real Gregorian year of this system is ambiguous)."""
    return year - BE_OFFSET if year > _BE_THRESHOLD else year


def thai_digits_to_ascii(s: str) -> str:
    """Replace Thai digits (๐-๙) with ASCII 0-9; other characters are untouched."""
    return s.translate(_TO_ASCII)


def ascii_to_thai_digits(s: str) -> str:
    """Replace ASCII 0-9 with Thai digits (๐-๙); other characters are untouched."""
    return s.translate(_TO_THAI)


# --------------------------------------------------------------------------
# Parsing and formatting


def parse_thai_date(text: str) -> date:
    """Parse the date notations found in Thai government documents.

    Accepted (ASCII or Thai digits, surrounding whitespace ignored):
      * ISO ``2026-09-30``
      * ``30/09/2569``, ``30/9/2569``, ``30-09-2569``, ``30.09.2569`` (day first)
      * ``30 กันยายน 2569``, ``30 ก.ย. 69``, ``30 ก.ย. พ.ศ. 2569``, ``วันพุธที่ 30 กันยายน พ.ศ. 2569``

    Four-digit years above 2400 are Buddhist era, others Gregorian; two-digit
    years are Buddhist era 25xx (``69`` -> 2569), the Thai convention, unless
    marked ``ค.ศ.`` (then 20xx). Raises ValueError naming the input on failure.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_thai_date expects str, got {type(text).__name__}")
    original = text
    s = " ".join(thai_digits_to_ascii(text).split())
    if not s:
        raise ValueError("empty date string")

    if m := _ISO_RE.fullmatch(s):
        # Accepts a BE year too ("2569-09-30"), which some exports produce.
        return _make_date(original, _resolve_year(original, m[1], era=None), int(m[2]), int(m[3]))

    if m := _NUMERIC_RE.fullmatch(s):
        day, month = int(m[1]), int(m[3])
        return _make_date(original, _resolve_year(original, m[4], era=None), month, day)

    s = _WEEKDAY_PREFIX_RE.sub("", s)
    if m := _THAI_TEXT_RE.fullmatch(s):
        month_key = m["month"].replace(".", "")
        month = _MONTH_LOOKUP.get(month_key)
        if month is None:
            raise ValueError(f"{original}: unknown Thai month name {m['month']!r}")
        era = None
        if m["era"]:
            era = "BE" if m["era"].startswith("พ") else "CE"
        year = _resolve_year(original, m["year"], era=era)
        return _make_date(original, year, month, int(m[1]))

    raise ValueError(f"{original}: unrecognised date format (expected YYYY-MM-DD, DD/MM/YYYY or 'DD <Thai month> YYYY')")


def _resolve_year(original: str, digits: str, era: str | None) -> int:
    """Return the Gregorian year for a parsed year field."""
    value = int(digits)
    if len(digits) == 2:
        # Two-digit years are a Thai-era habit ("ก.ย. 69"); ค.ศ. marks the rare
        # Gregorian short form.
        return 2000 + value if era == "CE" else 2500 + value - BE_OFFSET
    if era == "BE" and value <= _BE_THRESHOLD:
        raise ValueError(f"{original}: {value} is not a plausible Buddhist-era year")
    if era == "CE" and value > _BE_THRESHOLD:
        raise ValueError(f"{original}: {value} is not a plausible Gregorian year")
    if value > _BE_THRESHOLD:
        return value - BE_OFFSET
    if value < 1:
        raise ValueError(f"{original}: year must be positive")
    return value


def _make_date(original: str, year: int, month: int, day: int) -> date:
    if not 1 <= month <= 12:
        raise ValueError(f"{original}: month must be in 1..12")
    try:
        return date(year, month, day)
    except ValueError as exc:  # e.g. "day is out of range for month"
        raise ValueError(f"{original}: {exc}") from None


def format_thai_date(d: date, style: str = "short") -> str:
    """Format a date in Buddhist era.

    short: ``30 ก.ย. 2569``; long: ``30 กันยายน 2569``;
    full: ``วันพุธที่ 30 กันยายน พ.ศ. 2569``.
    Aware datetimes are formatted as their Bangkok calendar day.
    """
    d = _as_bangkok_date(d)
    be_year = d.year + BE_OFFSET
    if style == "short":
        return f"{d.day} {THAI_MONTHS_ABBR[d.month - 1]} {be_year}"
    if style == "long":
        return f"{d.day} {THAI_MONTHS_FULL[d.month - 1]} {be_year}"
    if style == "full":
        weekday = THAI_WEEKDAYS[d.weekday()]
        return f"วัน{weekday}ที่ {d.day} {THAI_MONTHS_FULL[d.month - 1]} พ.ศ. {be_year}"
    raise ValueError(f"unknown style {style!r}; expected 'short', 'long' or 'full'")


def format_thai_datetime(dt: datetime) -> str:
    """``30 ก.ย. 2569 14:05 น.`` in Bangkok local time (aware datetimes only)."""
    local = _require_aware(dt).astimezone(BANGKOK)
    return f"{format_thai_date(local.date())} {local:%H:%M} น."


# --------------------------------------------------------------------------
# Bangkok days


def bangkok_day(dt: datetime) -> date:
    """The Bangkok calendar day containing the instant ``dt``."""
    return _require_aware(dt).astimezone(BANGKOK).date()


def bangkok_today(now: datetime) -> date:
    """Today's Bangkok date; ``now`` is injected so callers stay testable."""
    return bangkok_day(now)


def end_of_bangkok_day(d: date) -> datetime:
    """UTC instant at which Bangkok day ``d`` ends (next day 00:00 Asia/Bangkok)."""
    if isinstance(d, datetime):
        # A datetime here is almost always a bug (which day did the caller mean?).
        raise TypeError("end_of_bangkok_day expects a date; use bangkok_day(dt) first")
    return _bangkok_midnight_utc(d + timedelta(days=1))


def _bangkok_midnight_utc(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=BANGKOK).astimezone(UTC)


# --------------------------------------------------------------------------
# Fiscal year
#
# The Thai government budget year FY N (Buddhist era) runs from 1 October of
# N-1 to 30 September of N, e.g. FY 2569 = 2025-10-01 .. 2026-09-30.


def fiscal_year_of(value: date | datetime) -> int:
    """Buddhist-era fiscal year of a date or an aware datetime (judged in Bangkok)."""
    d = _as_bangkok_date(value)
    gregorian_fy = d.year + 1 if d.month >= 10 else d.year
    return gregorian_fy + BE_OFFSET


def fiscal_year_bounds(fy: int) -> tuple[date, date]:
    """First and last day (both inclusive) of Buddhist-era fiscal year ``fy``."""
    end_year = _fy_end_gregorian_year(fy)
    return date(end_year - 1, 10, 1), date(end_year, 9, 30)


def fiscal_year_utc_range(fy: int) -> tuple[datetime, datetime]:
    """Half-open UTC range [start, end) covering fiscal year ``fy`` in Bangkok time.

    Use it for database range queries: ``start <= ts < end``.
    """
    first, last = fiscal_year_bounds(fy)
    return _bangkok_midnight_utc(first), end_of_bangkok_day(last)


def fiscal_year_elapsed_ratio(fy: int, now: datetime) -> float:
    """Fraction of fiscal year ``fy`` completed at ``now``, in [0, 1].

    Counts whole Bangkok days completed before ``now``'s Bangkok day, so it is
    0.0 on 1 October and reaches 1.0 once the year is over; it is clamped
    outside the year so callers can pass any instant.
    """
    first, last = fiscal_year_bounds(fy)
    total_days = (last - first).days + 1
    elapsed = (bangkok_day(now) - first).days
    return min(max(elapsed, 0), total_days) / total_days


def _fy_end_gregorian_year(fy: int) -> int:
    fy = _require_int(fy, "fy")
    if fy <= _BE_THRESHOLD:
        # Catch the common mistake of passing a Gregorian year.
        raise ValueError(f"fiscal year {fy} must be a Buddhist-era year (e.g. 2569)")
    end_year = fy - BE_OFFSET
    if not 2 <= end_year <= 9999:
        raise ValueError(f"fiscal year {fy} out of supported range")
    return end_year


# --------------------------------------------------------------------------
# National ID


_ID_SEPARATORS_RE = re.compile(r"[\s-]")
_ID_RE = re.compile(r"[1-9][0-9]{12}")


def is_valid_thai_national_id(s: str) -> bool:
    """Validate a 13-digit Thai national ID (เลขประจำตัวประชาชน).

    Dashes, whitespace and Thai digits are tolerated in the input. The check
    digit is (11 - sum(d_i * (14 - i) for i in 1..12) mod 11) mod 10, and the
    first digit (person category) is never 0.
    """
    if not isinstance(s, str):
        return False
    digits = _ID_SEPARATORS_RE.sub("", thai_digits_to_ascii(s))
    # fullmatch on an explicit ASCII class: str.isdigit() would accept other
    # scripts' digits, which int() then silently converts.
    if not _ID_RE.fullmatch(digits):
        return False
    total = sum(int(digits[i]) * (13 - i) for i in range(12))
    return (11 - total % 11) % 10 == int(digits[12])


# --------------------------------------------------------------------------
# Internal checks


def _require_int(value: object, name: str) -> int:
    # bool is an int subclass; True as a year is never intended.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def _require_aware(dt: datetime) -> datetime:
    if not isinstance(dt, datetime):
        raise TypeError(f"expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} rejected: attach a timezone")
    return dt


def _as_bangkok_date(value: date | datetime) -> date:
    if isinstance(value, datetime):
        return bangkok_day(value)
    if isinstance(value, date):
        return value
    raise TypeError(f"expected a date or datetime, got {type(value).__name__}")
