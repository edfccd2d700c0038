"""One write path: store a batch of records once, and apply what they add to the counters exactly once.

Every consuming service writes the same way: what differs is only which records a batch holds and what they add up
to. The vocabulary:

- **record**: an immutable document with a unique `_id` (an event's audit record, a completion, a retraction). The
  first writer wins; a record belongs for ever to the write that stored it first (its token field). A ledger may
  keep several kinds of records, one collection each (training: completions and retractions).
- **book**: a collection of counter documents. The ledger's `count` rule says, purely, what a set of new records of
  one kind adds to which documents of which books (a `Delta`: counters by dotted path, and identity fields).
- **contribution**: what one counter document adds to the books after it (`Book.contributes`, pure). When a write
  changes a document, its contribution's change flows on, in the same write, to the later books: training's
  per-completion state (stored, voided) contributes to its learner's live passes and to the readiness rollup only
  while it is live; a learner contributes one ready learner while it has a live pass. Counting distinct things
  and taking things back out are additions too.
- **token**: one per write. A journal entry names it before anything is stored. Every counter document keeps the
  last `keep` tokens applied to it (`applied`), so applying a token twice changes nothing, and, where it contributes
  to later books, what that application passed on (`effects`), so that a write interrupted half-way passes on the
  very same changes when it is finished.

The steps of `Ledger.write`, each one idempotent call (a crash may come between any two):

1. open: journal entry {_id: token, at, kind, ids} (finishing it later needs no index);
2. insert the records, each carrying the token: the newly stored ones are this write's;
3. for each book in order: read the documents this write's deltas (and the contributions passed on by the books
   before) touch, add the deltas in memory, write each back with a compare-and-set on its revision (`rev`) that
   appends the token; a document that lists the token is skipped, and what it passed on then is read back;
4. close: delete the journal entry.

Recovery, one for every service: an entry still open is finished by repeating 3-4 with the records that carry its
token. The same process finishes its own failed writes at its next write; any replica finishes an entry once it
is older than the grace period (`sweep`; a live replica's write in flight is left alone). A write never goes on
past its lease (`WriteExpired` before its next call; the lease is under the grace period), so a sweep never races
a live writer (one that read the records while they were still being inserted would count a part of them).
A document keeps its last `keep` tokens and, beyond them, every token whose journal entry is still open (read from
the journal when a document is full): under load a hot rollup sees hundreds of writes within a grace period, and
an interrupted write must still be recognised where it had applied. (A write that opened after that read is among
the last `keep` unless `keep` writes began before it and applied after it: keep exceeds the writes in flight.)

Why read and replace rather than `$inc`: SecantusDB applies an update path by path, and one batch may touch
hundreds of counters of one document; reading and replacing it costs a fraction (bench/results/feedback_pipeline),
and only a replace can see the document before and after, which contributions need.

The store is a Protocol (`LedgerStore`): `services.common.ledger_mongo` for MongoDB, `tests/ledger_fakes.py` in
memory; tests inject crashes by wrapping a store, never through hooks here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from services.common.clock import Clock, utc_now
from services.common.counters import Delta, counters, difference, last, merge, with_delta
from services.common.mongo import WriteAbandoned, as_stored, retry_transient

log = logging.getLogger(__name__)
T = TypeVar("T")
TOKEN = "ledger_token"  # the field of a record naming the write that stored it
# The fields the ledger keeps in a derived document for its own writes (revision, tokens applied, what each passed
# on): never part of what the document says, so a comparison of two states leaves them out.
BOOKKEEPING = frozenset({"rev", "applied", "effects"})
CAS_ROUNDS = 100  # compare-and-set rounds of one book before the write gives up (the batch is then redelivered)
PAUSE_POLL_SECONDS = 0.5  # how often a paused writer, or a rebuild waiting for writes in flight, looks again


class WriteExpired(WriteAbandoned):
    """A write outlived its lease (a long database outage): it stops before its next step, so that a sweep finishing
    it after the grace period never races it. The batch is redelivered; the entry is finished by a recovery."""

class WriteContended(WriteAbandoned):
    """Other writers changed a write's documents `CAS_ROUNDS` times running: it gives up, and its batch comes again."""


Deltas = dict[str, dict[str, Delta]]  # book collection -> document id -> Delta


@dataclass(frozen=True)
class Records:
    """A kind of record: its collection, and what a recount reads of it (its records among the collection's
    documents, e.g. one event type of the audit trail; only the fields `count` reads)."""

    collection: str
    select: Mapping[str, Any] = field(default_factory=dict)
    projection: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Book:
    """A collection of counter documents. `contributes(doc)`: what the document adds to the books after it."""

    collection: str
    contributes: Callable[[Mapping[str, Any]], Deltas] | None = None
    digits: int | None = None  # float counters are rounded to this many digits after each addition
    # Top-level fields of its documents that are not this book's counters (training's targets): a recount keeps
    # them, and comparing with a recount ignores them.
    kept: tuple[str, ...] = ()
    # Numeric fields that identify a document rather than count (a fiscal year): not compared with a recount.
    identity: tuple[str, ...] = ()
    # Most writes create its documents (one per record): try inserting them before reading anything; the ones
    # that exist already are then read and changed as usual.
    insert_first: bool = False


class LedgerStore(Protocol):
    """What the write path needs of a database: each call is one idempotent operation."""

    async def open_entry(self, journal: str, entry: dict[str, Any]) -> datetime | None:
        """Insert the journal entry unless one of its `_id` is stored (an earlier attempt's); then say until when
        writes are paused (a rebuild), None when they are not. The pause is read after the entry is stored: a
        rebuild that paused writes sees every entry opened before, and every later one sees the pause."""

    async def pause_until(self, journal: str) -> datetime | None:
        """Until when writes are paused, None when they are not."""

    async def set_pause(self, journal: str, until: datetime | None) -> None: ...

    async def close_entry(self, journal: str, token: str) -> None: ...

    async def open_entries(self, journal: str, older_than: datetime, limit: int) -> list[dict[str, Any]]:
        """Journal entries written at or before `older_than`, oldest first."""

    async def clear_entries(self, journal: str) -> None: ...

    async def insert_new(self, collection: str, docs: Sequence[dict[str, Any]]) -> list[int]:
        """Insert unordered; a duplicate `_id` is "already stored". Returns the positions newly inserted."""

    async def carrying(self, collection: str, ids: Sequence[Any], field: str, token: str) -> list[dict[str, Any]]:
        """The documents among `ids` whose `field` (the token field) is `token`."""

    async def read(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    async def open_tokens(self, journal: str) -> set[str]:
        """The tokens of every journal entry still open (the writes in flight or interrupted: a handful)."""

    async def write_revisions(self, collection: str, docs: Sequence[tuple[int | None, dict[str, Any]]]) -> list[int]:
        """Write each (expected revision, document): None inserts, else replaces only the stored document of that
        revision (or inserts it where none is stored). Returns the positions written; a lost race (another
        revision stored) is not an error: the caller reads that document again."""

    async def find(self, collection: str, query: Mapping[str, Any], batch_size: int,
                   projection: Mapping[str, Any] | None = None) -> Any:
        """An async iterator over the documents matching `query` (a recount reads whole collections)."""

    async def replace_all(self, collection: str, docs: Sequence[dict[str, Any]]) -> None:
        """Make `docs` the collection's documents, built apart and swapped in: readers see the old documents or
        the new ones, never a half-built collection."""

    async def patch(self, collection: str, docs: Sequence[dict[str, Any]], removed: Sequence[Any]) -> None:
        """Replace (or insert) each of `docs` by `_id` and delete the documents `removed`, in place: each document
        read is its old or its new version. Only while writes are paused (no compare-and-set)."""


# A rebuild writes in place when at most this share of a book's documents differ from the recount, else it builds
# the book apart and swaps it in. On SecantusDB replacing one document costs 1-2.6 ms (every index entry rewritten)
# against 0.04 ms to insert one, and a swap (rename) copies the whole collection again: about 0.1 ms a document.
PATCH_SHARE = 0.05


def stored_state(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a document says, without the bookkeeping of the writes that made it."""
    return {k: v for k, v in doc.items() if k not in BOOKKEEPING}


def _says_the_same(stored: Any, computed: Any) -> bool:
    # Mostly equal as they are (a quick comparison); else equal once the computed one is as the database keeps it
    # (datetimes to the millisecond, tuples as lists).
    return stored == computed or as_stored(stored) == as_stored(computed)


async def read_all(store: LedgerStore, collection: str,
                   projection: Mapping[str, Any] | None = None) -> dict[Any, dict[str, Any]]:
    """Every document of a collection, by `_id`."""
    return {d["_id"]: d async for d in await store.find(collection, {}, 10_000, projection)}


_WITHOUT_PAST_WRITES = dict.fromkeys(BOOKKEEPING - {"rev"}, 0)  # the revision stays: a rewrite follows it


async def reconcile(store: LedgerStore, collection: str, docs: Sequence[dict[str, Any]], kept: Sequence[str] = (),
                    state: Callable[[Mapping[str, Any]], Any] = stored_state,
                    stored: Mapping[Any, dict[str, Any]] | None = None) -> dict[str, int]:
    """Make `docs` (a recount's result) the collection's documents, keeping the `kept` top-level fields of the
    stored ones (a stored document with kept fields stays, with those fields only). Run while writes are paused.
    A stored document whose `state` equals its recount stays as it is (with its bookkeeping): a rebuild that finds
    the books right writes nothing. A differing one is written with the next revision of the stored one: in place
    when few differ, else the whole collection is built apart and swapped in (`PATCH_SHARE`). Returns the
    documents that differed (`changed`, `removed`) and how they were written (`swapped`: 1 when swapped in).
    `stored`: the collection's documents by `_id`, when the caller has read them already."""
    if stored is None:
        stored = await read_all(store, collection)
    target: dict[Any, dict[str, Any]] = {}
    for doc in docs:
        held = stored.get(doc["_id"], {})
        target[doc["_id"]] = {**doc, **{k: held[k] for k in kept if k in held}}
    for doc_id, doc in stored.items():  # kept fields of documents that count nothing now
        if doc_id not in target and any(k in doc for k in kept):
            target[doc_id] = {"_id": doc_id, **{k: doc[k] for k in kept if k in doc}}
    changed: list[dict[str, Any]] = []
    for doc_id, doc in target.items():
        if doc_id in stored and _says_the_same(state(stored[doc_id]), state(doc)):
            target[doc_id] = stored[doc_id]  # says the same: left as it is, bookkeeping and all
        else:
            doc["rev"] = stored.get(doc_id, {}).get("rev", 0) + 1
            changed.append(doc)
    removed = [doc_id for doc_id in stored if doc_id not in target]
    swapped = len(changed) + len(removed) > PATCH_SHARE * max(len(target), len(stored))
    if swapped:
        await store.replace_all(collection, list(target.values()))
    elif changed or removed:
        await store.patch(collection, changed, removed)
    return {"changed": len(changed), "removed": len(removed), "swapped": int(swapped)}


Derive = Callable[[dict[str, dict[str, Any] | None]], Awaitable[Mapping[str, dict[str, Any] | None]]]
Step = Callable[[Callable[[], Awaitable[T]], str], Awaitable[T]]


async def rewrite(store: LedgerStore, collection: str, ids: Sequence[str], derive: Derive, *, step: Step | None = None,
                  assume_absent: bool = False) -> list[dict[str, Any]]:
    """The one compare-and-set write of documents derived from the stored ones, for every book and projection:
    read the documents `ids`, `derive` the next version of each ({id: document, or None to leave it}; a missing
    document is given as None), write them with a compare-and-set on `rev` (a derived document gets the read one's
    `rev` plus one), and derive again, from what is stored now, the ones another writer changed first. Returns the
    documents written, each as of its last derivation. `assume_absent`: the first round derives from nothing
    without reading (most of the documents are new; an existing one makes its insert lose and is read after).
    `step` runs each store call (the ledger's retries while the database is unreachable; by default none: the
    error reaches the caller, whose batch is redelivered)."""
    step = step or _direct
    pending = list(dict.fromkeys(ids))
    written: list[dict[str, Any]] = []
    for round_ in range(CAS_ROUNDS):
        if round_ == 0 and assume_absent:
            found: dict[str, dict[str, Any]] = {}
        else:
            found = await step(partial(store.read, collection, pending), f"read {collection}")
        revisions = {doc_id: doc.get("rev", 0) for doc_id, doc in found.items()}  # before `derive` (it may edit)
        derived = await derive({doc_id: found.get(doc_id) for doc_id in pending})
        writes: list[tuple[int | None, dict[str, Any]]] = []
        for doc_id in pending:
            doc = derived.get(doc_id)
            if doc is not None:
                expected = revisions.get(doc_id)
                writes.append((expected, {**doc, "_id": doc_id, "rev": (expected or 0) + 1}))
        if not writes:
            return written
        landed = set(await step(partial(store.write_revisions, collection, writes), f"write {collection}"))
        written.extend(doc for i, (_, doc) in enumerate(writes) if i in landed)
        pending = [doc["_id"] for i, (_, doc) in enumerate(writes) if i not in landed]
        if not pending:
            return written
    raise WriteContended(f"{collection}: documents kept changing under this write")


class Ledger:
    """The write path of one service: its kinds of records and its books, over a store."""

    def __init__(self, store: LedgerStore, *, journal: str, records: Sequence[Records], books: Sequence[Book],
                 count: Callable[[str, Sequence[Mapping[str, Any]]], Deltas],
                 clock: Clock = utc_now, keep: int = 200, token_field: str = TOKEN, ids_field: str = "ids",
                 lease: timedelta | None = None, timer: Callable[[], float] = time.monotonic,
                 retry: Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]] | None = None):
        if not records:
            raise ValueError("a ledger keeps at least one kind of record")
        self.store = store
        self.journal = journal
        self.records = {r.collection: r for r in records}
        self.default_kind = records[0].collection
        self.books = tuple(books)
        self.count = count  # (kind, new records) -> {book collection: {document id: Delta}}
        self.token_field = token_field
        self.ids_field = ids_field
        self.clock = clock
        self.keep = keep
        self._retry = retry or _retry_transient
        # How long a write may go on after opening its entry: under the sweep's grace period (half of it, say), so
        # that a sweep never finishes an entry whose writer still works on it. None: no limit (tests, one process).
        self.lease = lease.total_seconds() if lease is not None else None
        self.timer = timer
        # Writes this process began that raised (their batch will come again): nothing else works on them, so the
        # next write finishes them at once rather than after the grace period.
        self._unfinished: dict[str, tuple[str, list[Any]]] = {}

    # --- writing ---------------------------------------------------------------------------------------
    async def write(self, records: Sequence[Mapping[str, Any]], kind: str | None = None) -> list[dict[str, Any]]:
        """Store `records` (of `kind`, by default the first) once and apply what the new ones add; returns the
        records stored new."""
        kind = kind or self.default_kind
        if self._unfinished:  # before this write's lease starts: a recovery may wait out an outage
            async with self.writing():  # a rebuild waits for the recoveries too, and they for a rebuild
                await self.finish_own()
        if not records:
            return []
        records = _unique(list(records))  # an event twice in one batch is one record
        ids = [r["_id"] for r in records]
        while True:
            token = uuid.uuid4().hex
            deadline = self.timer() + self.lease if self.lease is not None else None
            try:
                if not await self._open(token, kind, ids, deadline):
                    continue  # a rebuild paused the writes while this one waited: begin again
                new = await self._insert(kind, [{**r, self.token_field: token} for r in records], token, deadline)
                await self._finish(token, kind, new, deadline)
            except BaseException:
                self._unfinished[token] = (kind, ids)  # the batch comes again: this process finishes the write first
                raise
            return new

    async def _open(self, token: str, kind: str, ids: list[Any], deadline: float | None) -> bool:
        """Open the write's journal entry; False (entry withdrawn, after waiting for the pause to end) when writes
        are paused by a rebuild."""
        entry = {"_id": token, "at": self.clock(), "kind": kind, self.ids_field: ids}
        paused = await self._step(partial(self.store.open_entry, self.journal, entry), "open journal entry", deadline)
        if paused is None or paused <= self.clock():
            return True
        await self._step(partial(self.store.close_entry, self.journal, token), "close journal entry", deadline)
        log.info("writes paused by a rebuild: waiting", extra={"journal": self.journal})
        while paused is not None and paused > self.clock():
            await asyncio.sleep(PAUSE_POLL_SECONDS)
            paused = await self._step(partial(self.store.pause_until, self.journal), "read pause")
        return False

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[str]:
        """Hold the journal for a write outside the books' path (training's targets, kept in a book's documents):
        a rebuild waits for it, and it waits for a rebuild, like any write of the ledger. Yields the entry's token."""
        token = uuid.uuid4().hex
        try:
            while not await self._open(token, self.default_kind, [], None):
                token = uuid.uuid4().hex
            try:
                yield token
            finally:
                await self._step(partial(self.store.close_entry, self.journal, token), "close journal entry")
        except BaseException:
            # Its entry may be stored (an answer lost, a close that failed): the next write closes it.
            self._unfinished[token] = (self.default_kind, [])
            raise

    async def finish_own(self) -> None:
        """Finish the writes this process began that raised (not its other writes still in flight), unless their
        journal entry is gone: a sweep finished the write, or a rebuild counted its records (finishing it again
        would count them twice). A write whose entry never landed stored nothing."""
        still_open = await self._step(partial(self.store.open_tokens, self.journal), "read journal")
        while self._unfinished:
            token, (kind, ids) = self._unfinished.popitem()
            if token not in still_open:
                continue
            try:
                await self._recover(token, kind, ids)
            except BaseException:
                self._unfinished[token] = (kind, ids)
                raise

    async def sweep(self, grace: timedelta, limit: int = 1000) -> int:
        """Finish the writes that were interrupted at least `grace` ago (by any replica); returns how many."""
        async with self.writing() as own:  # not while a rebuild recounts (it counts these records itself)
            entries = await self._step(partial(self.store.open_entries, self.journal, self.clock() - grace, limit),
                                       "read journal")
            entries = [e for e in entries if e["_id"] != own]
            for entry in entries:
                await self._recover(entry["_id"], entry.get("kind") or self.default_kind, entry.get(self.ids_field) or [])
        if entries:
            log.info("interrupted writes finished", extra={"journal": self.journal, "writes": len(entries)})
        return len(entries)

    async def _recover(self, token: str, kind: str, ids: Sequence[Any]) -> None:
        new = await self._step(partial(self.store.carrying, kind, ids, self.token_field, token), f"read {kind}")
        await self._finish(token, kind, new)

    async def _finish(self, token: str, kind: str, new: list[dict[str, Any]], deadline: float | None = None) -> None:
        protect = _OpenTokens(partial(self._step, partial(self.store.open_tokens, self.journal), "read journal", deadline))
        pending: Deltas = {}
        for collection, deltas in self.count(kind, new).items():  # a count's result is new: taken, not copied
            if collection in pending:
                merge(pending[collection], deltas)
            else:
                pending[collection] = deltas
        for i, book in enumerate(self.books):
            deltas = pending.pop(book.collection, None)
            if deltas:
                for collection, passed_on in (await self._apply(book, token, deltas, deadline, protect)).items():
                    if collection not in {b.collection for b in self.books[i + 1:]}:
                        raise ValueError(f"{book.collection} contributes to {collection}, which is not a later book")
                    merge(pending.setdefault(collection, {}), passed_on)
        if pending:
            raise ValueError(f"deltas for collections that are no book of this ledger: {sorted(pending)}")
        await self._step(partial(self.store.close_entry, self.journal, token), "close journal entry", deadline)

    async def _insert(self, kind: str, docs: list[dict[str, Any]], token: str,
                      deadline: float | None) -> list[dict[str, Any]]:
        """Insert and return the records this token owns: those inserted now, or, after a retried insert (its first
        answer lost), those the database says carry the token."""
        attempts = 0

        async def insert() -> list[int]:
            nonlocal attempts
            attempts += 1
            return await self.store.insert_new(kind, docs)

        positions = await self._step(insert, f"insert into {kind}", deadline)
        if attempts == 1:
            return [docs[i] for i in positions]  # the common case: the answer is exact
        ids = [d["_id"] for d in docs]
        return await self._step(partial(self.store.carrying, kind, ids, self.token_field, token), f"read {kind}",
                                deadline)

    async def _apply(self, book: Book, token: str, deltas: dict[str, Delta], deadline: float | None,
                     protect: _OpenTokens) -> Deltas:
        """Apply `deltas` to the book's documents once for `token`; returns what the changed documents pass on to
        later books (for a document this token had changed before, what was recorded then)."""
        effects: dict[str, Deltas] = {}  # per document, what its last derivation (or earlier application) passes on

        async def derive(found: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
            # A full document drops its oldest tokens, except those of writes still open: an interrupted write is
            # recognised however many writes touched the document before a sweep finishes it.
            full = any(doc is not None and len(doc.get("applied", ())) >= self.keep for doc in found.values())
            open_tokens = await protect.get() if full else set()
            out: dict[str, dict[str, Any] | None] = {}
            for doc_id, doc in found.items():
                if doc is not None and token in doc.get("applied", ()):
                    out[doc_id] = None  # applied before (an earlier attempt, or a recovery)
                    effects[doc_id] = _recorded_effect(doc, token)
                    continue
                before = book.contributes(doc) if book.contributes and doc is not None else {}
                after_doc = with_delta(doc, doc_id, deltas[doc_id], token, self.keep, book.digits, open_tokens)
                change = _change(before, book.contributes(after_doc)) if book.contributes else {}
                if change:  # nothing recorded reads back as nothing passed on
                    _record_effect(after_doc, token, change, self.keep, open_tokens)
                effects[doc_id] = change
                out[doc_id] = after_doc
            return out

        await rewrite(self.store, book.collection, list(deltas), derive, assume_absent=book.insert_first,
                      step=lambda operation, what: self._step(operation, what, deadline))
        passed_on: Deltas = {}
        for change in effects.values():
            _merge_all(passed_on, change)
        return passed_on

    async def rewrite(self, collection: str, ids: Sequence[str], derive: Derive) -> list[dict[str, Any]]:
        """`rewrite` over this ledger's store, retried while the database is unreachable, holding the journal like
        a write (a rebuild waits for it, and it for a rebuild): for a change to a book's documents beside the
        counts (training's targets)."""
        async with self.writing():
            return await rewrite(self.store, collection, ids, derive, step=self._step)

    async def _step(self, operation: Callable[[], Awaitable[T]], what: str, deadline: float | None = None) -> T:
        """One call to the store, retried while the database is unreachable; a write past its lease stops before
        each attempt (a recovery, `deadline` None, goes on)."""
        if deadline is None:
            return await self._retry(operation, what)

        async def within_lease() -> T:
            if self.timer() > deadline:
                raise WriteExpired(f"{self.journal}: write outlived its lease before: {what}")
            return await operation()

        return await self._retry(within_lease, what)

    # --- recount ---------------------------------------------------------------------------------------
    async def recount_deltas(self, chunk: int = 10_000, progress: Callable[[int], None] | None = None) -> Deltas:
        """Every book's documents computed afresh from every stored record (streamed, chunk by chunk), each book's
        contributions flowing on to the later ones. `progress(n)`: n more records read."""
        out: Deltas = {book.collection: {} for book in self.books}
        for kind, records in self.records.items():
            batch: list[dict[str, Any]] = []
            async for doc in await self.store.find(kind, records.select, chunk, records.projection):
                batch.append(doc)
                if len(batch) >= chunk:
                    _merge_all(out, self.count(kind, batch))
                    if progress is not None:
                        progress(len(batch))
                    batch = []
            _merge_all(out, self.count(kind, batch))
            if progress is not None and batch:
                progress(len(batch))
        for book in self.books:
            if book.contributes is not None:
                for doc_id, delta in out[book.collection].items():
                    _merge_all(out, book.contributes(with_delta(None, doc_id, delta, None, digits=book.digits)))
        return out

    async def recount(self, computed: Deltas | None = None,
                      stored: Mapping[str, Mapping[Any, dict[str, Any]]] | None = None) -> dict[str, int]:
        """Rebuild every book from the records (`computed`: `recount_deltas()` already read; `stored`: the books'
        documents already read, by collection); returns how many documents each book has. Run while no write is
        in flight."""
        computed = computed if computed is not None else await self.recount_deltas()
        stored = stored or {}
        # Interrupted writes are counted by the recount: finishing them afterwards would count them twice. First,
        # so that a recount that dies half-way never leaves them to be applied again (run it again instead).
        await self.store.clear_entries(self.journal)
        for book in self.books:
            docs = [with_delta(None, doc_id, d, None, self.keep, book.digits)
                    for doc_id, d in computed[book.collection].items()]
            await reconcile(self.store, book.collection, docs, book.kept, stored=stored.get(book.collection))
        return {collection: len(deltas) for collection, deltas in computed.items()}

    @contextlib.asynccontextmanager
    async def paused(self, abandoned_after: timedelta, pause_for: timedelta = timedelta(minutes=30)) -> AsyncIterator[None]:
        """Writes wait while this holds (a consumer's batch waits in `write` and goes on afterwards: nothing is
        lost, its offsets are committed later); the writes in flight when it began have finished when it yields. A
        journal entry older than `abandoned_after` (the sweep's grace) belongs to a writer that died or gave up. The
        pause ends by itself after `pause_for`, should this process die."""
        until = self.clock() + pause_for
        await self.store.set_pause(self.journal, until)
        try:
            while True:
                entries = await self.store.open_entries(self.journal, self.clock(), 10_000)
                if all(e["at"] <= self.clock() - abandoned_after for e in entries):
                    break
                if self.clock() >= until:
                    raise RuntimeError(f"{self.journal}: writes still in flight when the pause ended")
                await asyncio.sleep(PAUSE_POLL_SECONDS)
            yield
        finally:
            await self.store.set_pause(self.journal, None)

    async def rebuild(self, abandoned_after: timedelta, progress: Callable[[int], None] | None = None) -> Deltas:
        """Recount every book while the service runs (`paused`), bring the stored books to the recount (`reconcile`),
        then let writes go on. Returns what the books were rebuilt from."""
        async with self.paused(abandoned_after):
            # The books are read while the records are counted: the database reads as the counting computes.
            # Without the tokens and effects of past writes: the rebuild clears the journal, so no recovery will
            # look for them (documents left as they are keep theirs; less to send and decode).
            reads = {b.collection: asyncio.ensure_future(read_all(self.store, b.collection, _WITHOUT_PAST_WRITES))
                     for b in self.books}
            try:
                computed = await self.recount_deltas(progress=progress)
                await self.recount(computed, {collection: await read for collection, read in reads.items()})
            finally:
                for read in reads.values():
                    read.cancel()
            return computed

    async def differences(self) -> list[str]:
        """Counter documents that differ from a full recount (empty: exact). A zero counter counts as absent."""
        computed = await self.recount_deltas()
        diffs: list[str] = []
        for book in self.books:
            want_all = computed[book.collection]
            have_all = {d["_id"]: d async for d in await self.store.find(book.collection, {}, 5000)}
            for doc_id in sorted(set(have_all) | set(want_all), key=str):
                want = with_delta(None, doc_id, want_all[doc_id], None, digits=book.digits) if doc_id in want_all else {}
                have, want = _figures(have_all.get(doc_id, {}), book), _figures(want, book)
                if have != want:
                    diffs.append(f"{book.collection}/{doc_id}: stored {have} != recount {want}")
        return diffs


def _figures(doc: Mapping[str, Any], book: Book) -> dict[str, int | float]:
    """The book's non-zero counters of a document (kept fields left out; floats to the book's digits)."""
    out = {}
    for path, value in counters({k: v for k, v in doc.items() if k not in book.kept and k not in book.identity}).items():
        if book.digits is not None and isinstance(value, float):
            value = round(value, book.digits)
        if value:
            out[path] = value
    return out


def _merge_all(into: Deltas, more: Mapping[str, Mapping[str, Delta]]) -> None:
    for collection, deltas in more.items():
        merge(into.setdefault(collection, {}), deltas)


def _change(before: Deltas, after: Deltas) -> Deltas:
    """What a document's contribution changed by: after minus before, per book and document (zeros left out)."""
    out: Deltas = {}
    for collection in set(before) | set(after):
        for doc_id in set(before.get(collection, {})) | set(after.get(collection, {})):
            delta = difference(after.get(collection, {}).get(doc_id), before.get(collection, {}).get(doc_id))
            if delta is not None:
                out.setdefault(collection, {})[doc_id] = delta
    return out


# What an application passed on is kept in the document as a list (ids and dotted paths are no safe field names).
def _record_effect(doc: dict[str, Any], token: str, change: Deltas, keep: int, protect: set[str]) -> None:
    entry = {"token": token, "deltas": [[collection, doc_id, dict(d.keys), [[p, v] for p, v in d.inc.items()]]
                                        for collection, ds in change.items() for doc_id, d in ds.items()]}
    doc["effects"] = last([*doc.get("effects", ()), entry], keep, protect, key=lambda e: e["token"])


def _recorded_effect(doc: Mapping[str, Any], token: str) -> Deltas:
    for entry in doc.get("effects", ()):
        if entry["token"] == token:
            out: Deltas = {}
            for collection, doc_id, keys, inc in entry["deltas"]:
                out.setdefault(collection, {})[doc_id] = Delta(keys, {p: v for p, v in inc})
            return out
    return {}


class _OpenTokens:
    """The open journal entries' tokens, read once per write and only if a document is full (rarely: hot rollups)."""

    def __init__(self, read: Callable[[], Awaitable[set[str]]]):
        self._read = read
        self._tokens: set[str] | None = None

    async def get(self) -> set[str]:
        if self._tokens is None:
            self._tokens = set(await self._read())
        return self._tokens


def _unique(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first record of each `_id`."""
    seen: set[str] = set()
    out = []
    for d in docs:
        key = repr(d["_id"])
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


async def _direct(operation: Callable[[], Awaitable[T]], what: str) -> T:
    return await operation()


async def _retry_transient(operation: Callable[[], Awaitable[T]], what: str) -> T:
    return await retry_transient(operation, what=what)
