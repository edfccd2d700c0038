"""Acknowledge-link tokens and the form's forecast rule (services/notifier/ack.py): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier import ack

KEY = "k" * 40
OLD = "o" * 40
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)


def test_a_token_verifies_for_its_notification_until_it_expires():
    token = ack.make_token((KEY,), "n-1", "dga-owner", LATER)
    claim = ack.verify_token((KEY,), token, "n-1", NOW)
    assert (claim.notification_id, claim.recipient, claim.expires_at) == ("n-1", "dga-owner", LATER)
    assert ack.verify_token((KEY,), token, "n-1", LATER - timedelta(seconds=1)).recipient == "dga-owner"
    with pytest.raises(ack.TokenRefused) as err:
        ack.verify_token((KEY,), token, "n-1", LATER)
    assert err.value.problem is ack.TokenProblem.expired


def test_a_genuine_token_of_another_notification_is_refused():
    token = ack.make_token((KEY,), "n-1", "dga-owner", LATER)
    with pytest.raises(ack.TokenRefused) as err:
        ack.verify_token((KEY,), token, "n-2", NOW)
    assert err.value.problem is ack.TokenProblem.other_notification


def test_another_key_forges_nothing_and_rotation_keeps_old_links_working():
    forged = ack.make_token(("x" * 40,), "n-1", "dga-owner", LATER)
    with pytest.raises(ack.TokenRefused) as err:
        ack.verify_token((KEY,), forged, "n-1", NOW)
    assert err.value.problem is ack.TokenProblem.forged
    old_link = ack.make_token((OLD,), "n-1", "dga-owner", LATER)
    assert ack.verify_token((KEY, OLD), old_link, "n-1", NOW).recipient == "dga-owner"  # rotation: new first
    assert ack.make_token((KEY, OLD), "n-1", "r", LATER) == ack.make_token((KEY,), "n-1", "r", LATER)


@pytest.mark.parametrize("token", ["", "v1", "v1..", "v2.e30.AAAA", "v1.e30", "v1.e30.!!!", "v1." + "A" * 2000 + ".A",
                                   "v1.e30.AAAA.extra", "v1.\u0e01.AAAA", "v1.e30\u0e01.AAAA", "v1.e30.AAAA\u0e01",
                                   "v1.e 30.AAAA", "v1.e30=.AAAA", "v1.e3.AAAA"])
def test_malformed_tokens_are_refused_as_such(token):
    with pytest.raises(ack.TokenRefused) as err:
        ack.verify_token((KEY,), token, "n-1", NOW)
    assert err.value.problem in (ack.TokenProblem.malformed, ack.TokenProblem.forged)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.sampled_from("AZaz09-_.="))
def test_changing_any_character_of_a_token_never_yields_an_accepted_claim(position, replacement):
    token = ack.make_token((KEY,), "n-1", "dga-owner", LATER)
    i = position % len(token)
    tampered = token[:i] + replacement + token[i + 1:]
    if tampered == token:
        return
    with pytest.raises(ack.TokenRefused):  # not even another spelling of the same bytes (base64's unused bits)
        ack.verify_token((KEY,), tampered, "n-1", NOW)


@pytest.mark.parametrize("suffix", ["!!", "==", "%3D", "\u0e01", " "])
def test_a_genuine_token_with_anything_after_it_is_not_the_token(suffix):
    """A lenient base64 decoder drops what is not of its alphabet: the token would have many texts."""
    token = ack.make_token((KEY,), "n-1", "dga-owner", LATER)
    with pytest.raises(ack.TokenRefused) as err:
        ack.verify_token((KEY,), token + suffix, "n-1", NOW)
    assert err.value.problem is ack.TokenProblem.malformed


def test_forecast_dates_follow_the_one_date_rule():
    today, horizon = date(2026, 11, 25), date(2040, 12, 31)
    assert ack.parse_forecast("", today, horizon) is None
    assert ack.parse_forecast(None, today, horizon) is None
    assert ack.parse_forecast("2026-11-25", today, horizon) == today
    assert ack.parse_forecast(" 2027-03-31 ", today, horizon) == date(2027, 3, 31)
    for text, reason in [("2026-11-24", "forecast_in_past"), ("2041-01-01", "date_out_of_range"),
                         ("2570-03-31", "buddhist_era_date"), ("31/03/2027", "forecast_invalid"),
                         ("9999-12-31", "date_out_of_range")]:
        with pytest.raises(ack.FormProblem) as err:
            ack.parse_forecast(text, today, horizon)
        assert err.value.reason == reason, text
    with pytest.raises(ack.FormProblem) as err:
        ack.parse_forecast("2570-03-31", today, horizon)
    assert "2027" in err.value.detail_th  # the hint gives the Gregorian year


def test_one_acknowledgement_per_person_and_episode():
    assert ack.acknowledgement_id("M-1", "2026-11-20", "dga-owner") != ack.acknowledgement_id("M-1", "2026-12-20",
                                                                                                "dga-owner")
    assert ack.episode_id("M-1", "2026-11-20") == "M-1|2026-11-20"


def test_the_summary_counts_episodes_answers_speed_open_ages_and_agencies():
    from services.notifier.acknowledgements import summarise

    t = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
    episodes = [{"milestone_id": m, "due_date": "2026-11-01", "agency": a, "workstream": "technology_access",
                 "created": t, "first_sent": t + timedelta(minutes=1) if m != "M4" else None}
                for m, a in (("M1", "dga"), ("M2", "dga"), ("M3", "dopa"), ("M4", "dopa"))]
    acks = [{"episode": "M1|2026-11-01", "acknowledged_at": t + timedelta(hours=2, minutes=1)},
            {"episode": "M1|2026-11-01", "acknowledged_at": t + timedelta(hours=5)},  # a second person: not counted
            {"episode": "M3|2026-11-01", "acknowledged_at": t + timedelta(hours=26, minutes=1)}]
    got = summarise(episodes, acks, {1: 2, 2: 1}, now=t + timedelta(days=4))
    assert (got["episodes"], got["acknowledged"], got["acknowledged_share"]) == (4, 2, 0.5)
    assert got["median_hours_to_acknowledge"] == 26.0 and got["p90_hours_to_acknowledge"] == 26.0
    assert got["unacknowledged"] == {"under_1d": 0, "1d_to_3d": 0, "3d_to_7d": 2, "7d_or_more": 0}
    assert got["escalations_by_level"] == {"1": 2, "2": 1}
    assert [(a["agency"], a["acknowledged"], a["median_hours_to_acknowledge"]) for a in got["agencies"]] == [
        ("dga", 1, 2.0), ("dopa", 1, 26.0)]
    assert summarise([], [], {}, now=t)["acknowledged_share"] is None
