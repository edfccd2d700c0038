"""One write path: store a batch of records once, and apply the counters they add exactly once.

Every consuming service writes the same way (roadmap, training, feedback): what differs is only which records a
batch holds and what they add up to. The vocabulary:

- **record**: an immutable document with a unique `_id` (an event's audit record, a completion, a learner's first
  pass). The first writer wins; a record belongs for ever to the write that stored it first (its `token` field).
- **stage**: a collection of records. Stage 0 holds the batch's own records; each later stage's records are derived,
  by a pure function, from the records the write stored new in the stage before (training: one learner x
  competency document per first pass, so that a learner is counted once however many courses they pass).
- **book**: a collection of counter documents (rollups). The ledger's `count` rule says, purely, what a set of new
  records adds to which documents of which book. It must be additive (the records' contributions summed one by
  one), so that a full recount can read the records in chunks.
- **token**: one per write. A journal entry names it before anything is stored; every counter document keeps the
  last `keep` tokens applied to it (`applied`), so applying a token twice changes nothing.

The steps of `Ledger.write`, each one idempotent call (a crash may come between any two):

1. open: journal entry {_id: token, at, ids} (the stage-0 ids: finishing it later needs no index);
2. insert the stage-0 records, each carrying the token: the newly stored ones are this write's;
3. for each later stage, derive from this write's new records, insert (carrying the token);
4. for each book: read the documents the deltas touch, add the deltas in memory, write each back with a
   compare-and-set on its revision (`rev`) that appends the token; a document that lists the token is skipped;
5. close: delete the journal entry.

Recovery, one sweep for every service: an entry still open is finished by repeating 3-5 with the records that carry
its token (stage 0: those of the listed ids; later stages: those of the ids derived from them). The same process
finishes its own interrupted writes at its next write; any replica finishes an entry once it is older than the
grace period (a live replica's write in flight is left alone). The one bound: a token is recognised while it is
among the last `keep` applied to a document, so an interrupted write must be finished before `keep` later writes
touched the same document (the sweep runs long before).

Why read and replace rather than `$inc`: SecantusDB applies an update path by path, and one batch may touch
hundreds of counters of one document; reading and replacing it costs a fraction (bench/results/feedback_pipeline).

The store is a Protocol (`LedgerStore`): `services.common.ledger_mongo` for MongoDB, `tests/ledger_fakes.py` in
memory, and tests inject crashes by wrapping a store, never through hooks here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from services.common.clock import Clock, utc_now
from services.common.counters import Delta, counters, merge, with_delta
from services.common.mongo import retry_transient

log = logging.getLogger(__name__)
T = TypeVar("T")
TOKEN = "ledger_token"  # the field of a record naming the write that stored it
CAS_ROUNDS = 100  # compare-and-set rounds of one book before the write gives up (the batch is then redelivered)


NewRecords = Sequence[Sequence[Mapping[str, Any]]]  # per stage, the records a write stored new


@dataclass(frozen=True)
class Stage:
    """A collection of records; `derive` (not for stage 0) makes its candidates from the previous stage's new ones."""

    collection: str
    derive: Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]] | None = None
    # What a recount reads of it: its records among the collection's documents (the audit trail holds other
    # services' events too), and only the fields the books count.
    select: Mapping[str, Any] = field(default_factory=dict)
    projection: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Book:
    """A collection of counter documents (what they count is the ledger's `count` rule)."""

    collection: str
    digits: int | None = None  # float counters are rounded to this many digits after each addition
    # Top-level fields of its documents that are not counters of this book (training's targets): a recount
    # keeps them, and comparing with a recount ignores them.
    kept: tuple[str, ...] = ()


class LedgerStore(Protocol):
    """What the write path needs of a database: each call is one idempotent operation."""

    async def open_entry(self, journal: str, entry: dict[str, Any]) -> None:
        """Insert the journal entry unless one of its `_id` is stored (an earlier attempt's)."""

    async def close_entry(self, journal: str, token: str) -> None: ...

    async def open_entries(self, journal: str, older_than: datetime, limit: int) -> list[dict[str, Any]]:
        """Journal entries written at or before `older_than`, oldest first."""

    async def insert_new(self, collection: str, docs: Sequence[dict[str, Any]]) -> list[int]:
        """Insert unordered; a duplicate `_id` is "already stored". Returns the positions newly inserted."""

    async def carrying(self, collection: str, ids: Sequence[Any], field: str, token: str) -> list[dict[str, Any]]:
        """The documents among `ids` whose `field` (the token field) is `token`."""

    async def read(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    async def write_revisions(self, collection: str, docs: Sequence[tuple[int | None, dict[str, Any]]]) -> int:
        """Write each (expected revision, document): None inserts, else replaces only the stored document of that
        revision. Returns how many were written; a lost race is not an error (the caller reads again)."""

    async def find(self, collection: str, query: Mapping[str, Any], batch_size: int,
                   projection: Mapping[str, Any] | None = None) -> Any:
        """An async iterator over the documents matching `query` (a full recount reads whole collections)."""

    async def clear_entries(self, journal: str) -> None: ...

    async def replace_all(self, collection: str, docs: Sequence[dict[str, Any]], kept: Sequence[str]) -> None:
        """Make `docs` the collection's documents (a recount's result), keeping the `kept` top-level fields of the
        stored ones (a stored document with kept fields stays, with those fields only)."""


class Ledger:
    """The write path of one service: its stages (records) and books (counters), over a store."""

    def __init__(self, store: LedgerStore, *, journal: str, stages: Sequence[Stage], books: Sequence[Book],
                 count: Callable[[NewRecords], Mapping[str, dict[str, Delta]]],
                 clock: Clock = utc_now, keep: int = 200, token_field: str = TOKEN, ids_field: str = "ids",
                 retry: Callable[[Callable[[], Awaitable[T]], str], Awaitable[T]] | None = None):
        if not stages or stages[0].derive is not None or any(s.derive is None for s in stages[1:]):
            raise ValueError("stage 0 holds the batch's records; every later stage derives its own")
        self.store = store
        self.journal = journal
        self.stages = tuple(stages)
        self.books = tuple(books)
        self.count = count  # new records per stage -> {book collection: {document id: Delta}}
        self.token_field = token_field
        self.ids_field = ids_field
        self.clock = clock
        self.keep = keep
        self._retry = retry or _retry_transient
        # Writes this process opened and did not finish (it raised, the batch will come again): nothing else
        # works on them, so the next write finishes them at once rather than after the grace period.
        self._unfinished: dict[str, list[Any]] = {}

    async def write(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Store `records` (stage 0) once and apply what the new ones add; returns the records stored new."""
        await self.finish_own()
        if not records:
            return []
        records = _unique(list(records))  # an event twice in one batch is one record
        token = uuid.uuid4().hex
        ids = [r["_id"] for r in records]
        try:
            entry = {"_id": token, "at": self.clock(), self.ids_field: ids}
            await self._step(lambda: self.store.open_entry(self.journal, entry), "open journal entry")
            stamped = [{**r, self.token_field: token} for r in records]
            new = await self._insert(self.stages[0], stamped, token, recovering=False)
            await self._finish(token, new, recovering=False)
        except BaseException:
            self._unfinished[token] = ids  # the batch will come again: this process finishes the write first
            raise
        return new

    async def finish_own(self) -> None:
        """Finish the writes this process began and that raised (not those of its other writes in flight)."""
        while self._unfinished:
            token, ids = self._unfinished.popitem()
            try:
                await self._recover(token, ids)
            except BaseException:
                self._unfinished[token] = ids
                raise

    async def sweep(self, grace: timedelta, limit: int = 1000) -> int:
        """Finish the writes that were interrupted at least `grace` ago (by any replica); returns how many."""
        entries = await self._step(lambda: self.store.open_entries(self.journal, self.clock() - grace, limit),
                                   "read journal")
        for entry in entries:
            await self._recover(entry["_id"], entry.get(self.ids_field) or [])
        if entries:
            log.info("interrupted writes finished", extra={"journal": self.journal, "writes": len(entries)})
        return len(entries)

    async def _recover(self, token: str, ids: Sequence[Any]) -> None:
        first = self.stages[0].collection
        new = await self._step(lambda: self.store.carrying(first, ids, self.token_field, token), "read records")
        await self._finish(token, new, recovering=True)

    async def _finish(self, token: str, new0: list[dict[str, Any]], recovering: bool) -> None:
        new: list[list[dict[str, Any]]] = [new0]
        for stage in self.stages[1:]:
            assert stage.derive is not None
            candidates = _unique([{**d, self.token_field: token} for d in stage.derive(new[-1])])
            new.append(await self._insert(stage, candidates, token, recovering))
        counted = self.count(new)
        for book in self.books:
            if deltas := counted.get(book.collection):
                await self._apply(book, token, deltas)
        await self._step(lambda: self.store.close_entry(self.journal, token), "close journal entry")

    async def _insert(self, stage: Stage, docs: list[dict[str, Any]], token: str,
                      recovering: bool) -> list[dict[str, Any]]:
        """Insert and return the docs this token owns: those inserted now, and, after an earlier attempt (a crash,
        a lost answer), those the database says carry it."""
        if not docs:
            return []
        attempts = 0

        async def insert() -> list[int]:
            nonlocal attempts
            attempts += 1
            return await self.store.insert_new(stage.collection, docs)

        positions = await self._step(insert, f"insert into {stage.collection}")
        if attempts == 1 and not recovering:
            return [docs[i] for i in positions]  # the common case: the answer is exact
        # A retried insert, or a recovery: an earlier attempt of this very token may have stored some of them,
        # which now read as duplicates. Only the database knows which carry this token.
        ids = [d["_id"] for d in docs]
        return await self._step(lambda: self.store.carrying(stage.collection, ids, self.token_field, token),
                                f"read {stage.collection}")

    async def _apply(self, book: Book, token: str, deltas: dict[str, Delta]) -> None:
        pending = dict(deltas)
        for _ in range(CAS_ROUNDS):
            found = await self._step(lambda: self.store.read(book.collection, list(pending)),
                                     f"read {book.collection}")
            writes: list[tuple[int | None, dict[str, Any]]] = []
            for doc_id, delta in list(pending.items()):
                doc = found.get(doc_id)
                if doc is not None and token in doc.get("applied", ()):
                    del pending[doc_id]  # already applied (an earlier attempt, or a recovery)
                    continue
                expected = None if doc is None else doc.get("rev", 0)
                writes.append((expected, with_delta(doc, doc_id, delta, token, self.keep, book.digits)))
            if not writes:
                return
            written = await self._step(partial(self.store.write_revisions, book.collection, writes),
                                       f"write {book.collection}")
            if written == len(writes):
                return
            # Another writer changed or created some first: read again; the ones written now list the token.
        raise RuntimeError(f"{book.collection}: counter documents kept changing under this write")

    async def _step(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        return await self._retry(operation, what)

    # --- recount ---------------------------------------------------------------------------------------
    async def recount_deltas(self, chunk: int = 10_000) -> dict[str, dict[str, Delta]]:
        """Every book's counters computed afresh from every stored record (streamed, chunk by chunk)."""
        out: dict[str, dict[str, Delta]] = {book.collection: {} for book in self.books}
        for i, stage in enumerate(self.stages):
            batch: list[dict[str, Any]] = []
            async for doc in await self.store.find(stage.collection, stage.select, chunk, stage.projection):
                batch.append(doc)
                if len(batch) >= chunk:
                    self._count_into(out, i, batch)
                    batch = []
            self._count_into(out, i, batch)
        return out

    def _count_into(self, out: dict[str, dict[str, Delta]], stage: int, records: list[dict[str, Any]]) -> None:
        per_stage: list[Sequence[Mapping[str, Any]]] = [[] for _ in self.stages]
        per_stage[stage] = records
        for collection, deltas in self.count(per_stage).items():
            merge(out[collection], deltas)

    async def recount(self, computed: Mapping[str, dict[str, Delta]] | None = None) -> dict[str, int]:
        """Rebuild every book from the records (`computed`: `recount_deltas()` already read); returns how many documents
        each book has. Run while no write is in flight."""
        computed = computed if computed is not None else await self.recount_deltas()
        # Interrupted writes are counted by the recount: finishing them afterwards would count them twice. First,
        # so that a recount that dies half-way never leaves them to be applied again (run it again instead).
        await self.store.clear_entries(self.journal)
        for book in self.books:
            docs = [with_delta(None, doc_id, d, None, self.keep, book.digits)
                    for doc_id, d in computed[book.collection].items()]
            await self.store.replace_all(book.collection, docs, book.kept)
        return {collection: len(deltas) for collection, deltas in computed.items()}

    async def differences(self) -> list[str]:
        """Counter documents that differ from a full recount (empty: exact). A zero counter counts as absent."""
        computed = await self.recount_deltas()
        diffs: list[str] = []
        for book in self.books:
            want_all = computed[book.collection]
            have_all = {d["_id"]: d async for d in await self.store.find(book.collection, {}, 5000)}
            for doc_id in sorted(set(have_all) | set(want_all), key=str):
                want = with_delta(None, doc_id, want_all[doc_id], None, digits=book.digits) if doc_id in want_all else {}
                have = have_all.get(doc_id, {})
                if _figures(have, book) != _figures(want, book):
                    diffs.append(f"{book.collection}/{doc_id}: stored {_figures(have, book)} != recount "
                                 f"{_figures(want, book)}")
        return diffs


def _figures(doc: Mapping[str, Any], book: Book) -> dict[str, int | float]:
    """The book's non-zero counters of a document (kept fields left out; floats to the book's digits)."""
    out = {}
    for path, value in counters({k: v for k, v in doc.items() if k not in book.kept}).items():
        if book.digits is not None and isinstance(value, float):
            value = round(value, book.digits)
        if value:
            out[path] = value
    return out


def _unique(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first candidate of each `_id` (two new records may derive the same one)."""
    seen: set[str] = set()
    out = []
    for d in docs:
        key = repr(d["_id"])
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


async def _retry_transient(operation: Callable[[], Awaitable[T]], what: str) -> T:
    return await retry_transient(operation, what=what)
