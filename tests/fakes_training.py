"""In-memory `services.training.adapters.ReadinessStore` and `StatementStore`, and a publisher, that fail on demand
(the training service layer and the xAPI intake without servers).

The counting runs on the service's own write path (`counting_ledger`) over `MemoryLedgerStore`, wrapped in a
`CrashingStore`: `crash_at` crashes the ledger's call of that number; `fail_next` makes the next repository call (or,
with `fail_on`, the next call of that method) raise before it does anything (the database unreachable).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fail_on_demand import FailOnDemand
from ledger_fakes import CrashingStore, MemoryLedgerStore

from services.common.clock import Clock
from services.contracts.envelope import Event, make_event
from services.contracts.events import TRAINING_COURSE_COMPLETED
from services.contracts.training import TrainingCourseCompleted
from services.training import domain, xapi
from services.training.adapters import JOURNAL, counting_ledger, set_target


def completion_record(source: str, event_id: str, data: TrainingCourseCompleted, learner: str | None = None,
                      time: datetime = datetime(2026, 3, 1, tzinfo=UTC)) -> dict[str, Any]:
    """A completion as the consumer hands it to the repository: its event's audit record, with `learner` (the
    keyed hash) as its learner_ref."""
    if learner is not None:
        data = data.model_copy(update={"learner_ref": learner})
    return make_event(TRAINING_COURSE_COMPLETED, data, agency=data.agency, source=source, id=event_id,
                      time=time).to_document()


class MemoryTrainingRepository(FailOnDemand):
    def __init__(self, clock: Clock, memory: MemoryLedgerStore | None = None, crash_at: int | None = None,
                 crash_after: bool = False):
        self.clock = clock
        self.memory = memory or MemoryLedgerStore()
        self.crashing = CrashingStore(self.memory, at=crash_at, after=crash_after)
        self.ledger = counting_ledger(self.crashing, clock)
        self.statements: dict[str, dict[str, Any]] = {}  # the LRS's statement docs by `_id`

    # --- ReadinessStore: as `TrainingRepository` does it, over the memory store ----------------------------------
    async def add_completions(self, records: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
        self._call("add_completions")
        return {(d["source"], d["id"]) for d in await self.ledger.write(records, domain.COMPLETIONS)}

    async def void_completions(self, refs: Sequence[tuple[str, str]]) -> int:
        self._call("void_completions")
        if not refs:
            return 0
        return len(await self.ledger.write([domain.void_doc(cid, by, self.clock()) for cid, by in refs], domain.VOIDS))

    async def set_target(self, fy: int, agency: str, competency: str, headcount: int, time: datetime,
                         event_id: str) -> None:
        self._call("set_target")
        await set_target(self.ledger, fy, agency, competency, headcount, time, event_id)

    async def rollup_docs(self, fiscal_years: Sequence[int], agency: str | None = None,
                          competency: str | None = None) -> list[dict[str, Any]]:
        self._call("rollup_docs")
        docs = [{k: v for k, v in d.items() if k != "applied"} for d in self.memory.docs(domain.ROLLUPS)
                if d.get("fiscal_year") in fiscal_years and (not agency or d.get("agency") == agency)
                and (not competency or d.get("competency") == competency)]
        return sorted(docs, key=lambda d: (d["agency"], d["competency"]))

    # --- StatementStore --------------------------------------------------------------------------------------
    async def reserve_statements(self, docs: Sequence[dict[str, Any]]) -> list[int]:
        self._call("reserve_statements")
        inserted = []
        for i, doc in enumerate(docs):
            if doc["_id"] not in self.statements:
                self.statements[doc["_id"]] = copy.deepcopy(doc)
                inserted.append(i)
        return inserted

    async def statement_docs(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self._call("statement_docs")
        return {i: copy.deepcopy(self.statements[i]) for i in ids if i in self.statements}

    async def release_statements(self, ids: Sequence[str], token: str) -> None:
        self._call("release_statements")
        for i in ids:
            doc = self.statements.get(i)
            if doc is not None and doc.get("token") == token and doc.get("state") == "pending":
                del self.statements[i]

    async def mark_stored(self, ids: Sequence[str]) -> None:
        self._call("mark_stored")
        for i in ids:
            if i in self.statements and self.statements[i].get("state") == "pending":
                self.statements[i]["state"] = "stored"

    async def mark_voided(self, ids: Sequence[str]) -> None:
        self._call("mark_voided")
        for i in ids:
            if i in self.statements and not self.statements[i].get("voiding"):
                self.statements[i]["voided"] = True

    async def voided_among(self, ids: Sequence[str]) -> list[str]:
        self._call("voided_among")
        return [d["voids"] for d in self.statements.values() if d.get("voids") in ids and d.get("state") == "stored"]

    async def add_ref_keys(self, ids: Sequence[str], keys: Sequence[str]) -> None:
        self._call("add_ref_keys")
        for i in ids if keys else ():
            if i in self.statements:
                held = self.statements[i].setdefault("ref_keys", [])
                held += [k for k in dict.fromkeys(keys) if k not in held]

    async def referrers(self, ids: Sequence[str], agency: str) -> list[dict[str, Any]]:
        self._call("referrers")
        return [{"_id": d["_id"], "ref": d["ref"]} for d in self.statements.values()
                if d.get("ref") in ids and d["agency"] == agency]

    async def stored_statements(self, agency: str | None, conditions: Mapping[str, list[str]], *,
                                since: datetime | None, until: datetime | None, after: tuple[datetime, str] | None,
                                ascending: bool, limit: int) -> list[dict[str, Any]]:
        self._call("stored_statements")

        def readable(d: dict[str, Any]) -> bool:
            return d.get("state") == "stored" and "statement" in d and not d.get("voided") \
                and (agency is None or d["agency"] == agency)

        def in_range(d: dict[str, Any]) -> bool:
            key = (d["stored"], d["_id"])
            return (since is None or d["stored"] > since) and (until is None or d["stored"] <= until) \
                and (after is None or (key > after if ascending else key < after))

        docs = [d for d in self.statements.values() if readable(d) and in_range(d) and _meets(d, conditions)]
        docs.sort(key=lambda d: (d["stored"], d["_id"]), reverse=not ascending)
        return copy.deepcopy(docs[:limit])

    # --- for assertions --------------------------------------------------------------------------------------
    def rollup(self, fy: int, agency: str, competency: str) -> dict[str, Any]:
        rid = domain.rollup_id(fy, agency, competency)
        return next((d for d in self.memory.docs(domain.ROLLUPS) if d["_id"] == rid), {})

    def open_entries(self) -> list[dict[str, Any]]:
        return self.memory.docs(JOURNAL)

    def completions(self) -> list[dict[str, Any]]:
        return self.memory.docs(domain.COMPLETIONS)

    async def differences(self) -> list[str]:
        """Books against a recount of the stored records (read straight from memory, never crashing)."""
        return await counting_ledger(self.memory, self.clock).differences()


def _meets(doc: Mapping[str, Any], conditions: Mapping[str, list[str]]) -> bool:
    """The statement meets every condition itself, or through the keys of the statements it targets
    (`xapi.ref_keys` at each depth), as `xapi.filter_through` asks of MongoDB (a list field matches any element)."""
    if not conditions:
        return True

    def own(name: str, values: list[str]) -> bool:
        held = doc.get(name)
        return any(v in values for v in held) if isinstance(held, list) else held in values

    keys = set(doc.get("ref_keys") or ())
    return all(own(n, v) for n, v in conditions.items()) or any(
        all(any(f"{depth}|{n}|{x}" in keys for x in v) for n, v in conditions.items())
        for depth in range(1, xapi.MAX_REF_DEPTH + 1))


class MemoryPublisher:
    """`EventPublisher.publish_many` into a list; `fail_next`: the next call's events all fail (Kafka down)."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.fail_next: Exception | None = None

    async def publish_many(self, events: Sequence[Event], topic: str | None = None) -> list[Exception | None]:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            return [error] * len(events)
        self.published += events
        return [None] * len(events)
