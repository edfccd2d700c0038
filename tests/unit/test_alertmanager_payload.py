"""Alertmanager's webhook (version 4): its times are RFC 3339 date-times as Go writes them, up to nanoseconds, and
nothing else (the start is part of a notification's idempotency key and shown in messages)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.contracts import problems
from services.notifier.handlers import AlertmanagerPayload


def payload(**alert) -> dict:
    return {"version": "4", "status": "firing",
            "alerts": [{"status": "firing", "labels": {"alertname": "ConsumerLag"}, "fingerprint": "a1b2c3",
                        "startsAt": "2026-12-02T07:55:06.123456789Z", **alert}]}


@pytest.mark.parametrize("starts, ends", [
    ("2026-12-02T07:55:06.123456789Z", "0001-01-01T00:00:00Z"),  # as Alertmanager sends a firing alert
    ("2026-12-02T14:55:06+07:00", None),
    ("2026-12-02T07:55:06.5-03:30", "2026-12-02T08:00:00Z"),
])
def test_alertmanagers_times_are_accepted(starts, ends):
    alert = AlertmanagerPayload.model_validate(payload(startsAt=starts, endsAt=ends)).alerts[0]
    assert (alert.startsAt, alert.endsAt) == (starts, ends)


@pytest.mark.parametrize("starts", [
    "yesterday", "2025-11-02", "2025-11-02T07:55:06", "2025-13-02T07:55:06Z", "2025-02-30T07:55:06Z",
    "2025-11-02T07:55:06.1234567890Z", "2025-11-02T07:55:06Z ", "๒๕๖๙-11-02T07:55:06Z", "x" * 5000,
])
def test_anything_else_is_refused_in_words(starts):
    with pytest.raises(ValidationError) as caught:
        AlertmanagerPayload.model_validate(payload(startsAt=starts))
    [described] = problems.describe(caught.value.errors())
    assert described["field"] == "alerts.0.startsAt"
    assert starts[:10] not in described["detail"]
    assert described["detail"] == "must be at most 40 characters long" if len(starts) > 40 else "date" in described["detail"]


def test_a_generator_url_is_bounded():
    with pytest.raises(ValidationError):
        AlertmanagerPayload.model_validate(payload(generatorURL="http://prometheus/" + "g" * 3000))
