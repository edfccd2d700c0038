"""An in-memory `LedgerStore` and a wrapper that crashes it on demand (tests of the write path without servers)."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any


async def interleave() -> None:
    """One turn of the event loop where a real store would await the network, so that racing writers interleave.
    No time passes: the loop's ready queue runs, then this coroutine goes on."""
    await asyncio.sleep(0)


def _key(value: Any) -> str:
    return repr(sorted(value.items())) if isinstance(value, Mapping) else repr(value)


class MemoryLedgerStore:
    """Collections as dicts by `_id`. Every call yields to the event loop first, so concurrent writers interleave."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, dict[str, Any]]] = {}
        self.pauses: dict[str, datetime] = {}
        self.pause_reads = 0  # how often a paused writer looked again (it is waiting, not finished)

    def docs(self, collection: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self.collections.get(collection, {}).values()]

    def _coll(self, name: str) -> dict[str, dict[str, Any]]:
        return self.collections.setdefault(name, {})

    async def open_entry(self, journal: str, entry: dict[str, Any]) -> datetime | None:
        await interleave()
        self._coll(journal).setdefault(_key(entry["_id"]), copy.deepcopy(entry))
        return self.pauses.get(journal)

    async def pause_until(self, journal: str) -> datetime | None:
        await interleave()
        self.pause_reads += 1
        return self.pauses.get(journal)

    async def set_pause(self, journal: str, until: datetime | None) -> None:
        await interleave()
        if until is None:
            self.pauses.pop(journal, None)
        else:
            self.pauses[journal] = until

    async def close_entry(self, journal: str, token: str) -> None:
        await interleave()
        self._coll(journal).pop(_key(token), None)

    async def open_entries(self, journal: str, older_than: datetime, limit: int) -> list[dict[str, Any]]:
        await interleave()
        entries = [copy.deepcopy(e) for e in self._coll(journal).values() if e["at"] <= older_than]
        return sorted(entries, key=lambda e: e["at"])[:limit]

    async def open_tokens(self, journal: str) -> set[str]:
        await interleave()
        return {e["_id"] for e in self._coll(journal).values()}

    async def insert_new(self, collection: str, docs: Sequence[dict[str, Any]]) -> list[int]:
        await interleave()
        coll = self._coll(collection)
        inserted = []
        for i, doc in enumerate(docs):
            key = _key(doc["_id"])
            if key not in coll:
                coll[key] = copy.deepcopy(doc)
                inserted.append(i)
        return inserted

    async def carrying(self, collection: str, ids: Sequence[Any], field: str, token: str) -> list[dict[str, Any]]:
        await interleave()
        coll = self._coll(collection)
        found = (coll.get(k) for k in dict.fromkeys(_key(i) for i in ids))  # as `$in`: each document once
        return [copy.deepcopy(d) for d in found if d is not None and d.get(field) == token]

    async def read(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        await interleave()
        coll = self._coll(collection)
        return {i: copy.deepcopy(coll[_key(i)]) for i in ids if _key(i) in coll}

    async def write_revisions(self, collection: str, docs: Sequence[tuple[int | None, dict[str, Any]]]) -> list[int]:
        await interleave()
        coll = self._coll(collection)
        written = []
        for i, (expected, doc) in enumerate(docs):
            key = _key(doc["_id"])
            stored = coll.get(key)
            if stored is None or (expected is not None and stored.get("rev", 0) == expected):
                coll[key] = copy.deepcopy(doc)
                written.append(i)
        return written

    async def find(self, collection: str, query: Mapping[str, Any], batch_size: int,
                   projection: Mapping[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        # Equality on top-level fields is all the write path asks; a projection is not needed to be exact. Like a
        # cursor, it reads as it goes (other writers interleave: what they store meanwhile may or may not be seen).
        coll = self._coll(collection)

        async def iterate() -> AsyncIterator[dict[str, Any]]:
            for key in list(coll):
                await interleave()
                d = coll.get(key)
                if d is not None and all(d.get(k) == v for k, v in query.items()):
                    yield copy.deepcopy(d)
        return iterate()

    async def clear_entries(self, journal: str) -> None:
        await interleave()
        self.collections[journal] = {}

    async def replace_all(self, collection: str, docs: Sequence[dict[str, Any]]) -> None:
        await interleave()
        self.collections[collection] = {_key(d["_id"]): copy.deepcopy(d) for d in docs}

    async def patch(self, collection: str, docs: Sequence[dict[str, Any]], removed: Sequence[Any]) -> None:
        await interleave()
        coll = self._coll(collection)
        for doc in docs:
            coll[_key(doc["_id"])] = copy.deepcopy(doc)
        for doc_id in removed:
            coll.pop(_key(doc_id), None)


class Crash(RuntimeError):
    """A simulated process death between two writes."""


class CrashingStore:
    """Wraps a store; the call numbered `at` (0-based, counting every call) crashes: before it runs, or after it
    ran (`after=True`: the write landed but its answer was lost). `random_crashes(p, rng)` crashes calls at random."""

    def __init__(self, store: Any, at: int | None = None, after: bool = False,
                 chance: float = 0.0, rng: random.Random | None = None):
        self.store = store
        self.at = at
        self.after = after
        self.chance = chance
        self.rng = rng or random.Random(0)
        self.calls = 0
        self.crashes = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            n = self.calls
            self.calls += 1
            crash_now = n == self.at or (self.chance and self.rng.random() < self.chance)
            after = self.after if n == self.at else self.rng.random() < 0.5
            if crash_now and not after:
                self.crashes += 1
                raise Crash(f"{name}: before call {n}")
            result = await method(*args, **kwargs)
            if crash_now:
                self.crashes += 1
                raise Crash(f"{name}: after call {n}")
            return result
        return call
