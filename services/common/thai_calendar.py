"""Moved to services/contracts/thai_calendar.py (pure, importable by contracts without importing common).

Only a forwarding name for work in flight that still imports it here; delete once nothing does.
"""

from services.contracts.thai_calendar import *  # noqa: F403
from services.contracts.thai_calendar import __all__  # noqa: F401
