"""An in-memory `services.feedback.adapters.ResponseStore` that fails on demand (the service layer without servers).

The counting runs on the service's own write path (`counting_ledger`) over `MemoryLedgerStore`, wrapped in a
`CrashingStore`: `crash_at` crashes the ledger's call of that number (see `CrashingStore`); `fail_next` makes the
next repository call (or, with `fail_on`, the next call of that method) raise before it does anything (the database
unreachable for the whole call).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from fail_on_demand import FailOnDemand
from ledger_fakes import CrashingStore, MemoryLedgerStore

from services.common.clock import Clock
from services.contracts.envelope import Event
from services.feedback import domain
from services.feedback.adapters import DAILY, JOURNAL, RESPONSES, TOTALS, counting_ledger


class MemoryFeedbackRepository(FailOnDemand):
    def __init__(self, clock: Clock, memory: MemoryLedgerStore | None = None, crash_at: int | None = None,
                 crash_after: bool = False):
        self.clock = clock
        self.memory = memory or MemoryLedgerStore()
        self.crashing = CrashingStore(self.memory, at=crash_at, after=crash_after)
        self.ledger = counting_ledger(self.crashing, clock)

    # --- ResponseStore ---------------------------------------------------------------------------------------
    async def store(self, events: Sequence[Event],
                    documents: Sequence[dict[str, Any]] | None = None) -> set[tuple[str, str]]:
        self._call("store")
        now = self.clock()
        documents = documents if documents is not None else [domain.response_document(e) for e in events]
        new = await self.ledger.write([{**d, "stored_at": now} for d in documents])
        return {(d["source"], d["id"]) for d in new}

    async def daily_cells(self, start: date, end: date, agency: str | None) -> dict[tuple[str, str], dict[str, int]]:
        # As the MongoDB repository reads them once the month rollups are kept: whole months, then the edge days.
        self._call("daily_cells")
        who = agency or domain.ALL_AGENCIES
        months, runs = domain.split_range(start, end)
        ids = {domain.monthly_rollup_id(m, who) for m in months}
        docs = [d for d in self.memory.docs(DAILY) if d["_id"] in ids]
        for first, last in runs:
            docs += [d for d in self.memory.docs(DAILY) if d.get("agency") == who and "day" in d
                     and first.isoformat() <= d["day"] <= last.isoformat()]
        return domain.sum_daily_cells(docs)

    # --- for assertions --------------------------------------------------------------------------------------
    def responses(self) -> list[dict[str, Any]]:
        return self.memory.docs(RESPONSES)

    def totals(self) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in self.memory.docs(TOTALS)}

    def open_entries(self) -> list[dict[str, Any]]:
        return self.memory.docs(JOURNAL)

    async def differences(self) -> list[str]:
        """Rollups against a recount of the stored responses (read straight from memory, never crashing)."""
        return await counting_ledger(self.memory, self.clock).differences()
