"""Issue 17 point 1: one date rule on the wire (Gregorian years, plausible windows), as property tests over the
boundaries, per model, and as a guard that every date field of every event model carries the rule by its type."""

from __future__ import annotations

import typing
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.settings import ServiceSettings
from services.contracts import dates
from services.contracts.dates import DateWindow, check_event_dates, date_refusal
from services.contracts.envelope import EventError, make_event, validate_attributes
from services.contracts.events import EVENT_TYPES
from services.contracts.thai_calendar import BANGKOK, fiscal_year_bounds, fiscal_year_of
from services.training.domain import parse_csv_row

WINDOW = DateWindow()
NOW = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)
SRC = "/agencies/dga/test"


def attrs(type_: str, *, time_: str | None = None, id_: str = "e-1") -> dict:
    a = {"specversion": "1.0", "id": id_, "source": SRC, "type": type_, "agency": "dga"}
    a["time"] = time_ or NOW.isoformat()
    return a


def plan(due: date | str) -> dict:
    return {"milestone_id": "M-1", "title_en": "x", "workstream": "technology_access", "owner_agency": "dga",
            "due_date": due if isinstance(due, str) else due.isoformat()}


def completion(on: date | str) -> dict:
    return {"agency": "dga", "learner_ref": "emp-1", "course_id": "c1", "competency": "mindset", "hours": 1,
            "completed_on": on if isinstance(on, str) else on.isoformat(), "passed": True}


def response(submitted_at: datetime) -> dict:
    return {"agency": "dga", "service_name": "s", "channel": "walk_in", "age_group": "25_34", "satisfaction": 4,
            "tech_difficulty": "none", "aware_of_digital_channels": True, "submitted_at": submitted_at.isoformat()}


def refusal(type_: str, data: dict, *, now: datetime = NOW, window: DateWindow = WINDOW,
            time_: str | None = None) -> str | None:
    """The reason an event is refused for (static rule, then the windows), or None: what the intake answers."""
    try:
        event = validate_attributes(attrs(type_, time_=time_), data)
    except EventError as err:
        return err.reason
    err = check_event_dates(event, now, window)
    return err.reason if err else None


# --- the static rule: Gregorian years ----------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2400, max_value=2799), st.integers(1, 12), st.integers(1, 28))
def test_a_buddhist_era_year_is_refused_with_the_gregorian_hint(year, month, day):
    value = date(year, month, day).isoformat()
    with pytest.raises(EventError) as err:
        validate_attributes(attrs("roadmap.milestone.planned"), plan(value))
    assert err.value.reason == "buddhist_era_date"
    assert f"{year} BE = {year - 543} CE" in err.value.detail and "due_date" in err.value.detail


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=2800, max_value=9999))
def test_a_year_beyond_any_buddhist_era_slip_is_out_of_range(year):
    assert refusal("roadmap.milestone.planned", plan(date(year, 12, 31))) == "date_out_of_range"


def test_year_2399_passes_the_static_rule_and_2400_does_not():
    assert dates.be_year_refusal(2399) is None
    assert dates.be_year_refusal(2400)[0] == "buddhist_era_date"
    assert dates.be_year_refusal(2799)[0] == "buddhist_era_date"
    assert dates.be_year_refusal(2800)[0] == "date_out_of_range"


def test_the_event_time_has_the_same_year_rule():
    with pytest.raises(EventError) as err:
        validate_attributes(attrs("roadmap.milestone.cancelled", time_="2569-11-29T10:00:00+07:00"),
                            {"milestone_id": "M-1", "reason": "r"})
    assert err.value.reason == "buddhist_era_date" and "2569 BE = 2026 CE" in err.value.detail


def _date_fields(model) -> list[tuple[str, type]]:
    out = []
    for name, info in model.model_fields.items():
        args = typing.get_args(info.annotation) or (info.annotation,)
        for arg in args:
            if arg in (date, datetime):
                out.append((name, arg))
    return out


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_date_field_of_every_event_model_refuses_a_buddhist_era_year(type_name):
    """The guard of the class: a new date field typed `date`/`datetime` instead of the contracts' types fails here."""
    model = EVENT_TYPES[type_name].model
    exempt = {("roadmap.milestone.at_risk", "projected_finish"), ("roadmap.milestone.missed", "projected_finish"),
              ("roadmap.milestone.recovered", "projected_finish"),
              ("roadmap.milestone.rebaselined", "projected_finish")}  # a forecast, not a date anyone sends
    for name, kind in _date_fields(model):
        if (type_name, name) in exempt:
            continue
        validator = model.__pydantic_validator__
        value = "2569-09-30" if kind is date else "2569-09-30T10:00:00+07:00"
        errors = []
        try:
            validator.validate_assignment(model.model_construct(), name, value)
        except Exception as exc:  # a ValidationError naming the field's own error type
            errors = [e["type"] for e in getattr(exc, "errors", list)() if tuple(e["loc"]) == (name,)]
        assert "buddhist_era_date" in errors, f"{type_name}.{name} does not carry the Gregorian rule"


# --- windows -----------------------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2399, 12, 31)))
def test_due_dates_are_refused_outside_the_horizon_only(due):
    reason = refusal("roadmap.milestone.planned", plan(due))
    inside = WINDOW.horizon_start <= due <= WINDOW.horizon_end
    assert reason == (None if inside else "date_out_of_range")
    resched = {"milestone_id": "M-1", "new_due_date": due.isoformat(), "reason": "r"}
    assert refusal("roadmap.milestone.rescheduled", resched) == (None if inside else "date_out_of_range")


@settings(max_examples=40, deadline=None)
@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2026, 11, 1)), st.integers(1, 30000))
def test_horizon_edges_follow_the_settings(start, days):
    window = DateWindow(start, start + timedelta(days=days))
    assert refusal("roadmap.milestone.planned", plan(window.horizon_start), window=window) is None
    assert refusal("roadmap.milestone.planned", plan(window.horizon_end), window=window) is None
    assert refusal("roadmap.milestone.planned", plan(start - timedelta(days=1)), window=window) == "date_out_of_range"
    assert refusal("roadmap.milestone.planned", plan(window.horizon_end + timedelta(days=1)),
                   window=window) == "date_out_of_range"


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(2039, 1, 1), timezones=st.just(UTC)),
       st.integers(0, 3600))
def test_observed_instants_at_most_the_tolerance_ahead(now, tolerance):
    window = DateWindow(future_tolerance=timedelta(seconds=tolerance))
    edge, late = now + window.future_tolerance, now + window.future_tolerance + timedelta(seconds=1)
    progress = {"milestone_id": "M-1", "percent_complete": 10}
    assert refusal("roadmap.milestone.progressed", {**progress, "as_of": edge.isoformat()}, now=now,
                   window=window, time_=now.isoformat()) is None
    assert refusal("roadmap.milestone.progressed", {**progress, "as_of": late.isoformat()}, now=now,
                   window=window, time_=now.isoformat()) == "time_in_future"
    # The event's own time: the same window.
    assert refusal("roadmap.milestone.progressed", {**progress, "as_of": now.isoformat()}, now=now,
                   window=window, time_=edge.isoformat()) is None
    assert refusal("roadmap.milestone.progressed", {**progress, "as_of": now.isoformat()}, now=now,
                   window=window, time_=late.isoformat()) == "time_in_future"
    assert refusal("feedback.response.submitted", response(late), now=now, window=window,
                   time_=now.isoformat()) == "time_in_future"
    assert refusal("feedback.response.submitted", response(edge), now=now, window=window,
                   time_=now.isoformat()) is None


@settings(max_examples=80, deadline=None)
@given(st.dates(min_value=date(2021, 1, 1), max_value=date(2039, 1, 1)), st.integers(-3600, 3600))
def test_done_days_are_judged_by_the_bangkok_day_of_the_receiving_clock(day, seconds):
    """Around Bangkok midnight: completing "today" is fine, "tomorrow" is date_in_future, whatever UTC says."""
    midnight = datetime.combine(day, time(0), tzinfo=BANGKOK)
    now = (midnight + timedelta(seconds=seconds)).astimezone(UTC)
    today = now.astimezone(BANGKOK).date()
    done = {"milestone_id": "M-1"}
    assert refusal("roadmap.milestone.completed", {**done, "completed_on": today.isoformat()}, now=now,
                   time_=now.isoformat()) is None
    assert refusal("roadmap.milestone.completed", {**done, "completed_on": (today + timedelta(days=1)).isoformat()},
                   now=now, time_=now.isoformat()) == "date_in_future"
    assert refusal("training.course.completed", completion(today), now=now, time_=now.isoformat()) is None
    assert refusal("training.course.completed", completion(today + timedelta(days=1)), now=now,
                   time_=now.isoformat()) == "date_in_future"


@settings(max_examples=60, deadline=None)
@given(st.dates(min_value=date(1990, 1, 1), max_value=NOW.date()))
def test_a_stored_training_completion_is_in_a_fiscal_year_the_readiness_api_shows(on):
    first_fy, last_fy = dates.READABLE_FISCAL_YEARS
    reason = refusal("training.course.completed", completion(on))
    if reason is None:
        assert first_fy <= fiscal_year_of(on) <= last_fy
    else:
        assert reason == "date_out_of_range" and on < fiscal_year_bounds(first_fy)[0]


def test_the_issue_examples():
    assert refusal("roadmap.milestone.planned", plan("2569-09-30")) == "buddhist_era_date"
    assert refusal("roadmap.milestone.planned", plan("9999-12-31")) == "date_out_of_range"
    assert refusal("training.course.completed", completion("2569-10-01")) == "buddhist_era_date"
    assert refusal("roadmap.milestone.completed", {"milestone_id": "M-1", "completed_on": "9999-12-31"}) == \
        "date_out_of_range"
    day_ahead = (NOW + timedelta(days=1)).isoformat()
    assert refusal("roadmap.milestone.progressed", {"milestone_id": "M-1", "percent_complete": 5,
                                                    "as_of": day_ahead}) == "time_in_future"
    assert refusal("roadmap.milestone.rescheduled", {"milestone_id": "M-1", "new_due_date": "2027-01-01",
                                                     "reason": "r"}, time_="2027-11-29T00:00:00Z") == "time_in_future"


def test_derived_events_are_not_judged_against_the_receiving_clock():
    alert = make_event("roadmap.milestone.missed", {
        "milestone_id": "M-1", "title_en": "x", "workstream": "technology_access", "owner_agency": "dga",
        "due_date": "2026-01-01", "detected_at": "2030-01-01T00:00:00Z"}, agency="dga", source="/services/roadmap",
        id="a-1", time=datetime(2030, 1, 1, tzinfo=UTC))
    assert check_event_dates(alert, NOW, WINDOW) is None


def test_the_refusal_names_the_event_and_the_rule():
    event = validate_attributes(attrs("roadmap.milestone.planned", id_="e-9"), plan("2041-01-01"))
    err = check_event_dates(event, NOW, WINDOW)
    assert (err.reason, err.event_id, err.source) == ("date_out_of_range", "e-9", SRC)
    assert "2020-01-01 .. 2040-12-31" in err.detail
    assert date_refusal(event.time, event.data, NOW, WINDOW)[0] == "date_out_of_range"


def test_settings_build_the_window_and_refuse_an_inverted_horizon():
    window = ServiceSettings(event_time_tolerance_seconds=60, programme_horizon_start=date(2021, 1, 1)).date_window()
    assert window == DateWindow(date(2021, 1, 1), date(2040, 12, 31), timedelta(seconds=60))
    assert ServiceSettings().date_window() == DateWindow()
    with pytest.raises(ValueError):
        ServiceSettings(programme_horizon_start=date(2041, 1, 1)).date_window()


@pytest.mark.parametrize("typed", ["2569-09-30", "30/09/2569", "30 ก.ย. 2569"])
def test_the_csv_importer_still_converts_buddhist_era_dates_people_type(typed):
    row = {"agency": "dga", "learner_ref": "emp-1", "course_id": "c1", "competency": "mindset", "hours": "1",
           "completed_on": typed, "passed": "yes"}
    assert parse_csv_row(row).data.completed_on == date(2026, 9, 30)  # roadmap's importer: test_roadmap_import


def test_the_plan_importer_converts_buddhist_era_and_refuses_rows_outside_the_horizon_by_line():
    from services.roadmap.importer import parse_text

    csv_text = ("milestone_id,title_th,workstream,owner_agency,due_date\n"
                "M-BE,แผน,roadmap_governance,opdc,30/09/2569\n"      # typed BE: converted, as before
                "M-ISO,แผน,roadmap_governance,opdc,2569-09-30\n"     # ISO text with a BE year: converted too
                "M-FAR,แผน,roadmap_governance,opdc,31/12/2588\n"     # 2045 CE: beyond the horizon
                "M-NARROW,แผน,roadmap_governance,opdc,2026-09-30\n")
    plan = parse_text(csv_text, "csv")
    dues = {e.data.milestone_id: e.data.due_date for _, e in plan.events}
    assert dues == {"M-BE": date(2026, 9, 30), "M-ISO": date(2026, 9, 30), "M-NARROW": date(2026, 9, 30)}
    assert [(e.line, e.reason) for e in plan.errors] == [(4, "date_out_of_range")]
    narrow = parse_text(csv_text, "csv", window=DateWindow(date(2020, 1, 1), date(2026, 1, 1)))
    assert sorted(e.line for e in narrow.errors) == [2, 3, 4, 5]


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "0001-01-01T05:00:00+05:01", "0001-01-01T00:00:00+00:01"])
def test_an_instant_before_year_one_in_utc_is_out_of_range_not_a_crash(value):
    # Valid ISO 8601 text whose UTC is before 0001-01-01: comparing or converting it overflows, so the static rule
    # refuses it (it was `unprocessable`, with no hint of what was wrong).
    data = {**response(NOW), "submitted_at": value}
    assert refusal("feedback.response.submitted", data) == "date_out_of_range"
