"""The one date rule of the wire: ISO 8601 Gregorian dates, each in a documented plausible window.

Two layers, both declared by a field's type so a new field gets its rule by being typed, not by a call site:

* static (no clock), checked by pydantic when `data` is validated: a year 2400..2799 is a Buddhist-era year
  sent by mistake (`buddhist_era_date`, with the Gregorian year in the hint), a year from 2800 on is no date
  of this programme (`date_out_of_range`). Importers convert Buddhist-era text *before* building an event.
* windows that need the receiving clock and the settings (`DateWindow`): `check_event_dates` is the one
  function the HTTP intake and the Kafka consumer both call, with the service's injected Clock.

The table of fields, windows and reason codes is in docs/platform.md ("Dates").
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from services.contracts.common_types import SchemaKeywords, _aware
from services.contracts.thai_calendar import BE_OFFSET, bangkok_day, bangkok_today, fiscal_year_bounds

if TYPE_CHECKING:
    from services.contracts.common_types import EventData
    from services.contracts.envelope import Event, EventError

BUDDHIST_ERA_DATE = "buddhist_era_date"
DATE_OUT_OF_RANGE = "date_out_of_range"
TIME_IN_FUTURE = "time_in_future"
DATE_IN_FUTURE = "date_in_future"
# Reasons a field's type raises as its pydantic error type: the envelope answers them as the event's reason.
STATIC_REASONS = frozenset({BUDDHIST_ERA_DATE, DATE_OUT_OF_RANGE})

BE_FIRST_YEAR = 2400  # BE 2400 = 1857 CE: no date of this programme is that early, so 2400+ is never Gregorian here
BE_LAST_YEAR = 2799  # beyond it (9999-12-31 and the like) the value is no Buddhist-era slip either: out of range

# The fiscal years the training readiness API can show (GET /v1/readiness?fiscal_year=2560..2600): a completion
# dated outside them would be counted where no read API shows it.
READABLE_FISCAL_YEARS = (2560, 2600)

# Defaults of the settings (services/common/settings.py), repeated here for pure callers and tests.
DEFAULT_HORIZON = (date(2020, 1, 1), date(2040, 12, 31))
DEFAULT_FUTURE_TOLERANCE = timedelta(minutes=5)


def gregorian_year(year: int) -> None:
    """The wire's one rule for a year, wherever a date comes (a field of an event, a query parameter): a
    Buddhist-era year is refused with its conversion (`buddhist_era_date`), one past BE_LAST_YEAR as out of range
    (`date_out_of_range`); PydanticCustomError, which a validator reports under its own type."""
    if BE_FIRST_YEAR <= year <= BE_LAST_YEAR:
        raise PydanticCustomError(
            BUDDHIST_ERA_DATE,
            "looks like a Buddhist-era year; send Gregorian (ISO 8601): {be} BE = {ce} CE",
            {"be": year, "ce": year - BE_OFFSET})
    if year > BE_LAST_YEAR:
        raise PydanticCustomError(DATE_OUT_OF_RANGE, "is not a plausible date of the programme (ISO 8601 Gregorian)")


def _gregorian_date(value: date) -> date:
    gregorian_year(value.year)
    return value


def utc_representable(value: datetime) -> bool:
    """Whether an aware instant exists in UTC: year 1 at +14:00 is before year 1 there, 9999-12-31 at -12:00 after
    year 9999, and no comparison, date arithmetic or BSON encoding survives either."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        return False
    return True


def _gregorian_datetime(value: datetime) -> datetime:
    gregorian_year(value.year)
    if not utc_representable(value):
        raise PydanticCustomError(DATE_OUT_OF_RANGE, "is out of range once converted to UTC")
    return value


def be_year_refusal(year: int) -> tuple[str, str] | None:
    """(reason, detail) for a year the static rule refuses (the envelope's `time`, which is no pydantic field)."""
    try:
        gregorian_year(year)
    except PydanticCustomError as err:
        return err.type, err.message()
    return None


def _schema_note(text: str) -> SchemaKeywords:
    return SchemaKeywords(lambda: {"description": text})


class Window(enum.Enum):
    """A field's plausible window against the receiving clock (Annotated metadata read by check_event_dates)."""

    observed = "an instant observed by the sender: from the horizon start to now + the tolerance"
    horizon = "a planned date: within the programme horizon"
    done = "a day something was done: from the horizon start to today (Bangkok)"
    done_readable_fy = "a day something was done: in a fiscal year the readiness API shows, up to today (Bangkok)"


# --- the types every event model uses for its dates ------------------------------------------------
GregorianDate = Annotated[date, AfterValidator(_gregorian_date),
                          _schema_note("ISO 8601 Gregorian date; a year 2400-2799 is refused as buddhist_era_date")]
PlausibleDatetime = Annotated[datetime, AfterValidator(_aware), AfterValidator(_gregorian_datetime),
                              _schema_note("RFC 3339 date-time with an offset, Gregorian year")]
DueDate = Annotated[GregorianDate, Window.horizon, _schema_note(
    "ISO 8601 Gregorian date within the programme horizon (default 2020-01-01..2040-12-31): else date_out_of_range; "
    "a year 2400-2799 is buddhist_era_date")]
DoneOn = Annotated[GregorianDate, Window.done, _schema_note(
    "ISO 8601 Gregorian date from the programme horizon's start to today in Asia/Bangkok: later is date_in_future, "
    "earlier date_out_of_range; a year 2400-2799 is buddhist_era_date")]
CompletedOnReadable = Annotated[GregorianDate, Window.done_readable_fy, _schema_note(
    "ISO 8601 Gregorian date from 2016-10-01 (fiscal year 2560) to today in Asia/Bangkok: later is date_in_future, "
    "earlier date_out_of_range; a year 2400-2799 is buddhist_era_date")]
ObservedAt = Annotated[PlausibleDatetime, Window.observed, _schema_note(
    "RFC 3339 date-time with an offset, at most a few minutes (default 5) ahead of the receiving clock "
    "(else time_in_future) and not before the programme horizon's start (else date_out_of_range)")]


@dataclass(frozen=True)
class DateWindow:
    """The settings of the windows: NEWNORMAL_PROGRAMME_HORIZON_START/END, NEWNORMAL_EVENT_TIME_TOLERANCE_SECONDS."""

    horizon_start: date = DEFAULT_HORIZON[0]
    horizon_end: date = DEFAULT_HORIZON[1]
    future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE


def _window_of(annotation: Any) -> Window | None:
    """The Window in a field's annotation, looking through Optional/Union."""
    if typing.get_origin(annotation) is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, Window):
                return meta
        return _window_of(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (found := _window_of(arg)) is not None:
                return found
    return None


@functools.cache
def windowed_fields(model: type[EventData]) -> tuple[tuple[str, Window], ...]:
    found = []
    for name, info in model.model_fields.items():
        window = next((m for m in info.metadata if isinstance(m, Window)), None) or _window_of(info.annotation)
        if window is not None:
            found.append((name, window))
    return tuple(found)


def _instant_refusal(name: str, value: datetime, now: datetime, window: DateWindow) -> tuple[str, str] | None:
    latest = now + window.future_tolerance
    if value > latest:
        seconds = int(window.future_tolerance.total_seconds())
        return TIME_IN_FUTURE, (f"{name} is in the future: at most {seconds} s ahead of the receiving clock "
                                f"({latest.isoformat(timespec='seconds')}) is accepted")
    if bangkok_day(value) < window.horizon_start:
        return DATE_OUT_OF_RANGE, f"{name} is before the programme horizon ({window.horizon_start.isoformat()})"
    return None


def _date_refusal(name: str, value: date, kind: Window, now: datetime, window: DateWindow) -> tuple[str, str] | None:
    if kind is Window.horizon:
        first, last = window.horizon_start, window.horizon_end
    elif kind is Window.done:
        first, last = window.horizon_start, bangkok_today(now)
    else:
        first, last = fiscal_year_bounds(READABLE_FISCAL_YEARS[0])[0], bangkok_today(now)
    if value > last and kind is not Window.horizon:
        return DATE_IN_FUTURE, f"{name} is after today ({last.isoformat()}, Asia/Bangkok)"
    if not first <= value <= last:
        what = ("the fiscal years the readiness API shows" if kind is Window.done_readable_fy
                else "the programme horizon")
        return DATE_OUT_OF_RANGE, f"{name} must be within {what}: {first.isoformat()} .. {last.isoformat()}"
    return None


def date_refusal(time: datetime, data: EventData, now: datetime, window: DateWindow) -> tuple[str, str] | None:
    """The first (reason, detail) of the windows an event's `time` and `data` break, else None. Pure."""
    refused = _instant_refusal("time", time, now, window)
    if refused is not None:
        return refused
    for name, kind in windowed_fields(type(data)):
        value = getattr(data, name)
        if value is None:
            continue
        if kind is Window.observed:
            refused = _instant_refusal(f"data.{name}", value, now, window)
        else:
            refused = _date_refusal(f"data.{name}", value, kind, now, window)
        if refused is not None:
            return refused
    return None


def check_event_dates(event: Event, now: datetime, window: DateWindow) -> EventError | None:
    """The refusal of an agency event whose dates fall outside their windows (HTTP intake and consumer alike).

    Derived events (alerts, reports) are stamped by our own services' clocks and are not judged again."""
    from services.contracts.envelope import EventError

    if event.event_type.derived:
        return None
    refused = date_refusal(event.time, event.data, now, window)
    if refused is None:
        return None
    return EventError(refused[0], refused[1], event_id=event.id, source=event.source)
