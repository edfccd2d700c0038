"""The one clock: every read of "now" in a service goes through a `Clock` injected at the composition root.

Tests pass a movable clock (tests/support.MovableClock) instead of patching time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# Returns an aware UTC datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_millisecond(value: datetime) -> datetime:
    """An aware datetime in UTC to the millisecond, as MongoDB keeps it (naive: taken as UTC)."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
