"""MongoDB access through PyMongo's async API, plus the idempotent-write helpers."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)

from services.common.clock import to_millisecond
from services.common.settings import ServiceSettings
from services.contracts.envelope import legacy_document_id

log = logging.getLogger(__name__)
T = TypeVar("T")
DUPLICATE_KEY = 11000
# Errors that mean "the database is not reachable right now": wait and try again, skip nothing.
TRANSIENT_ERRORS = (AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError)


class WriteAbandoned(RuntimeError):
    """A write that stopped for the database's sake, not the data's (it outlived its lease in an outage, or other
    writers kept changing its documents): the same events succeed when they come again."""


# What makes a consumer redeliver its whole batch, never dead-letter an event: the database, not the events.
REDELIVER_ERRORS = (*TRANSIENT_ERRORS, WriteAbandoned)


def as_stored(value: Any) -> Any:
    """`value` as it reads back from MongoDB (to compare a computed document with a stored one): datetimes aware, in
    UTC, to the millisecond; tuples as lists."""
    if isinstance(value, datetime):
        return to_millisecond(value)
    if isinstance(value, list | tuple):
        return [as_stored(v) for v in value]
    if isinstance(value, dict):
        return {k: as_stored(v) for k, v in value.items()}
    return value


def make_client(settings: ServiceSettings) -> AsyncMongoClient:
    return AsyncMongoClient(
        settings.mongo_uri.get_secret_value(),
        serverSelectionTimeoutMS=settings.mongo_server_selection_timeout_ms,
        tz_aware=True,
        appname=settings.service_name,
    )


def run_on_database(settings: ServiceSettings, work: Callable[[AsyncDatabase], Awaitable[T]]) -> T:
    """Run `work(db)` once on a client of its own and close the client whatever happens: the command-line tools'
    way in (`newnormal keys`, `recount`, `verify`, ...)."""

    async def run() -> T:
        client = make_client(settings)
        try:
            return await work(client[settings.mongo_db])
        finally:
            await client.close()

    return asyncio.run(run())


class Progress:
    """Records read so far by a long command (`recount`), on stderr: one rewritten line on a terminal, a line per
    `every` records in a log. Call it with how many more were read; `done()` ends the line."""

    def __init__(self, what: str, every: int = 100_000):
        self.what, self.every, self.read, self._shown = what, every, 0, 0
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def __call__(self, more: int) -> None:
        self.read += more
        if self.tty or self.read - self._shown >= self.every:
            self._shown = self.read
            rate = self.read / max(1e-9, time.monotonic() - self.started)
            line = f"{self.what}: {self.read:,} records read ({rate:,.0f}/s)"
            print("\r" + line if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and self.read:
            print(file=sys.stderr)


def report_differences(differences: Sequence[str], shown: int = 50) -> int:
    """Print a `verify` result (the first `shown` differences, then their count as JSON); exit status 1 on any."""
    for line in differences[:shown]:
        print(line)
    print(json.dumps({"differences": len(differences)}))
    return 1 if differences else 0


async def ensure_platform_indexes(db: AsyncDatabase) -> None:
    # The `events` audit trail needs no index of its own: `_id` is the (source, id) key. Every secondary
    # index on this write-heavy collection would cost throughput for a query nobody runs on the hot path.
    await db.api_keys.create_index([("agency", ASCENDING)], name="agency")
    await rekey_documents(db.events, legacy_document_id)


REKEY_BATCH = 500


async def rekey_documents(collection: AsyncCollection, new_id: Callable[[Any], Any]) -> int:
    """Give the documents whose `_id` is a document the `_id` that `new_id` makes of it (an `_id` cannot be
    changed in place: a copy under the new key is inserted, then the old one deleted). Safe to repeat and to run
    from several replicas at once: a copy already there is a duplicate, a deleted original is gone. Run at start,
    before the consumers (a record redelivered while its old key still stands would be stored twice). Returns
    how many documents it moved."""
    moved = 0
    while True:
        docs = await collection.find({"_id": {"$type": "object"}}).limit(REKEY_BATCH).to_list(None)
        docs = [d for d in docs if new_id(d["_id"]) != d["_id"]]
        if not docs:
            break
        await insert_new(collection, [{**d, "_id": new_id(d["_id"])} for d in docs])
        await collection.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        moved += len(docs)
    if moved:
        log.warning("documents moved to their new key", extra={"collection": collection.name, "documents": moved})
    return moved


# Write errors that are one document's fault (the server refuses its content), never the database's state:
# BadValue, DollarPrefixedFieldName, EmptyFieldName, DocumentValidationFailure, BSONObjectTooLarge, DocumentTooLarge.
DOCUMENT_REFUSED = frozenset({2, 52, 56, 121, 10334, 17419, 17420})


# SecantusDB matches an `$in` list in time quadratic in its length (500 ids: ~300 ms; 10 lists of 50: ~50 ms, at any
# collection size; measured on this machine), so every lookup of many keys goes in lists of this many.
IN_CHUNK = 50


async def find_in(collection: AsyncCollection, field: str, values: Iterable[Any],
                  projection: Mapping[str, Any] | None = None, where: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The documents whose `field` is one of `values` (and that match `where`), looked up `IN_CHUNK` values at a
    time. Each document once when `field` is `_id` (values are deduplicated)."""
    unique = list({repr(v): v for v in values}.values())
    out: list[dict[str, Any]] = []
    for start in range(0, len(unique), IN_CHUNK):
        query = {field: {"$in": unique[start:start + IN_CHUNK]}, **(where or {})}
        out += [d async for d in collection.find(query, dict(projection) if projection is not None else None)]
    return out


async def insert_new(collection: AsyncCollection, docs: Sequence[dict[str, Any]]) -> list[int]:
    """Insert documents unordered; a duplicate key means "already stored", not an error.

    Returns the positions of the documents that were newly inserted. Several times faster than
    an upsert per document, and safe under redelivery when the collection has a unique key.
    """
    inserted, _ = await insert_new_or_refused(collection, docs, refusable=frozenset())
    return inserted


async def insert_new_or_refused(collection: AsyncCollection, docs: Sequence[dict[str, Any]],
                                refusable: frozenset[int] = DOCUMENT_REFUSED) -> tuple[list[int], dict[int, int]]:
    """`insert_new`, also reporting documents the server refused for their content (a `refusable` error code):
    (positions newly inserted, {position: error code} refused). Any other write error raises BulkWriteError."""
    if not docs:
        return [], {}
    try:
        await collection.insert_many(list(docs), ordered=False)
        return list(range(len(docs))), {}
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY and e.get("code") not in refusable for e in errors):
            raise
        refused = {e["index"]: e["code"] for e in errors if e.get("code") != DUPLICATE_KEY}
        failed = {e["index"] for e in errors}
        return [i for i in range(len(docs)) if i not in failed], refused


async def insert_if_new(collection: AsyncCollection, doc: dict[str, Any]) -> bool:
    """Insert one document; False when its key is already stored (by a redelivery, an earlier attempt whose
    answer was lost, or another replica that got there first)."""
    try:
        await collection.insert_one(doc)
        return True
    except DuplicateKeyError:
        return False


async def bulk_write_or_duplicates(collection: AsyncCollection, ops: Sequence[Any]) -> tuple[int, set[int]]:
    """Unordered bulk write in which a duplicate key means "another writer got there first", not an error:
    (documents inserted, matched or upserted, positions of the operations that hit a duplicate key).
    Any other write error raises BulkWriteError."""
    if not ops:
        return 0, set()
    try:
        result = await collection.bulk_write(list(ops), ordered=False)
        return result.inserted_count + result.matched_count + result.upserted_count, set()
    except BulkWriteError as exc:
        details = exc.details
        errors = details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        written = details.get("nInserted", 0) + details.get("nMatched", 0) + details.get("nUpserted", 0)
        return written, {e["index"] for e in errors}


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    on_retry: Callable[[], None] | None = None,
    initial_delay: float = 0.2,
    max_delay: float = 10.0,
    stop: asyncio.Event | None = None,
) -> T:
    """Run `operation` until it succeeds, backing off while the database is unreachable."""
    delay = initial_delay
    while True:
        try:
            return await operation()
        except TRANSIENT_ERRORS as exc:
            if stop is not None and stop.is_set():
                raise
            if on_retry:
                on_retry()
            log.warning("database unavailable, retrying", extra={"operation": what, "error": type(exc).__name__,
                                                                  "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(max_delay, delay * 2)
