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
