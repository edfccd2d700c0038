"""Thai public holidays and working-day arithmetic for notification scheduling.

Reminders to agencies should land at the start of a working day, not on a
Sunday or during Songkran, so the notifier defers anything outside working
hours to :func:`next_working_morning`.
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path

from services.contracts.thai_calendar import BANGKOK

__all__ = [
    "DEFAULT_HOLIDAYS_FILE",
    "Holiday",
    "HolidayDataError",
    "is_working_day",
    "load_holidays",
    "next_working_morning",
    "add_working_hours",
    "WORKDAY_START",
    "WORKDAY_END",
]

DEFAULT_HOLIDAYS_FILE = Path(__file__).parent / "data" / "thai_public_holidays.json"

# Longest run of consecutive non-working days we accept before concluding the
# holiday table is broken (Songkran + weekends + bridge days is ~10 days).
_MAX_SEARCH_DAYS = 60


class HolidayDataError(ValueError):
    """The holiday file is malformed (bad date, duplicate date, missing name)."""


@dataclass(frozen=True)
class Holiday:
    date: date
    name_th: str
    name_en: str


@lru_cache(maxsize=8)
def _load_cached(path: Path) -> tuple[Holiday, ...]:
    with path.open(encoding="utf-8") as fh:
        doc = json.load(fh)
    records = doc.get("holidays") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise HolidayDataError(f"{path}: expected an object with a 'holidays' list")

    seen: set[date] = set()
    holidays: list[Holiday] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise HolidayDataError(f"{path}: holiday #{i} is not an object")
        try:
            day = date.fromisoformat(rec["date"])
            name_th, name_en = rec["name_th"], rec["name_en"]
        except (KeyError, TypeError, ValueError) as exc:
            raise HolidayDataError(f"{path}: holiday #{i} is invalid: {exc!r}") from None
        if not (isinstance(name_th, str) and name_th.strip() and isinstance(name_en, str) and name_en.strip()):
            raise HolidayDataError(f"{path}: holiday {day} needs non-empty name_th and name_en")
        # Two entries for one day usually means a copy-paste error in the
        # yearly update; fail loudly rather than keep whichever came last.
        if day in seen:
            raise HolidayDataError(f"{path}: duplicate holiday date {day}")
        seen.add(day)
        holidays.append(Holiday(day, name_th, name_en))
    return tuple(sorted(holidays, key=lambda h: h.date))


def load_holidays(path: Path | str | None = None) -> dict[date, Holiday]:
    """Holidays keyed by date from ``path`` (default: the bundled Thai list).

    Parsing is cached per path; each call returns a fresh dict so callers can
    add ad-hoc special holidays without affecting other callers.
    """
    resolved = Path(path).resolve() if path is not None else DEFAULT_HOLIDAYS_FILE.resolve()
    return {h.date: h for h in _load_cached(resolved)}


def is_working_day(d: date, holidays: Container[date]) -> bool:
    """Monday-Friday and not a public holiday."""
    if isinstance(d, datetime):
        # datetime is a date subclass, but hashing it never matches a date key,
        # so a holiday would silently count as a working day.
        raise TypeError("is_working_day expects a date; convert with bangkok_day(dt) first")
    return d.weekday() < 5 and d not in holidays


def next_working_morning(after: datetime, holidays: Container[date], hour: int = 8) -> datetime:
    """Earliest ``hour``:00 Bangkok time on a working day strictly after ``after``.

    A message generated at 07:30 on a working day goes out at 08:00 the same
    day; one generated at 08:00 or later waits for the next working day.
    """
    if not isinstance(after, datetime) or after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("next_working_morning requires a timezone-aware datetime")
    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        raise ValueError(f"hour must be an int in 0..23, got {hour!r}")

    local = after.astimezone(BANGKOK)
    day = local.date()
    for _ in range(_MAX_SEARCH_DAYS):
        candidate = datetime.combine(day, time(hour), tzinfo=BANGKOK)
        if candidate > local and is_working_day(day, holidays):
            return candidate
        day += timedelta(days=1)
    raise HolidayDataError(f"no working day within {_MAX_SEARCH_DAYS} days after {after.isoformat()}; check the holiday table")


# Office hours of Thai government agencies (08:30-16:30, Monday-Friday): a "working day" of waiting is
# these 8 hours. Escalation waits count only time inside them, on working days.
WORKDAY_START = time(8, 30)
WORKDAY_END = time(16, 30)


def add_working_hours(start: datetime, hours: float, holidays: Container[date]) -> datetime:
    """The instant `hours` of office time after `start` (Asia/Bangkok office hours on working days only).

    Time before 08:30, after 16:30, on weekends and on public holidays does not count: 8 working hours from
    Friday 15:00 end on the next working day at 15:00 (Monday, or Tuesday when Monday is a holiday)."""
    if start.tzinfo is None:
        raise ValueError("add_working_hours requires a timezone-aware datetime")
    if hours < 0:
        raise ValueError("hours must not be negative")
    remaining = timedelta(hours=hours)
    local = start.astimezone(BANGKOK)
    for _ in range(_MAX_SEARCH_DAYS * 60):  # bounded: ~60 days of searching per 8 hours waited is plenty
        day = local.date()
        opens = datetime.combine(day, WORKDAY_START, tzinfo=BANGKOK)
        closes = datetime.combine(day, WORKDAY_END, tzinfo=BANGKOK)
        if is_working_day(day, holidays) and local < closes:
            begin = max(local, opens)
            available = closes - begin
            if remaining <= available:
                return (begin + remaining).astimezone(start.tzinfo)
            remaining -= available
        local = datetime.combine(day + timedelta(days=1), time(0), tzinfo=BANGKOK)
    raise HolidayDataError(f"{hours} working hours after {start.isoformat()} not reached; check the holiday table")
