"""The consumer pattern every service reuses.

batch of records -> parse and validate (bad ones to the dead-letter topic, with the reason)
-> audit trail insert (idempotent on source+id) -> the service's own idempotent write
-> commit offsets. Offsets are committed only after everything above succeeded, so a crash
anywhere means redelivery, and redelivery changes nothing (at-least-once + idempotent writes).
Pipelined: the next batch is decoded while one is written; it is written once that one is committed, and each batch
commits exactly its own offsets (never the consumer's position, already past the batch behind it).
A database outage is waited out with backoff inside the batch: nothing is skipped.

Isolation: whatever one record raises while it is decoded, validated, prepared or encoded for MongoDB is that
record's failure (dead letter, reason `unprocessable` + `dlq-exception` header, or the EventError's own reason); a
failure that is no single record's (anything else raising out of `process`) rewinds the batch's partitions to
its first offsets, backs off and lets the batch be redelivered, so no later commit can pass over it.
Dead letters: value, key and headers scrubbed by the service's `dead_letter_scrub` (by default
`redact.scrub_payload`: every string redacted; withheld if the scrub fails), detail stripped of quoted values
and numbers; one that Kafka refuses for good, or that cannot be published within the retry budget, is kept in
the MongoDB `dead_letters` collection (one document per record and consumer group) and the partition moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import bson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import Clock, utc_now
from services.common.kafka import EventPublisher, PublishRefused, RawRecord
from services.common.metrics import PlatformMetrics
from services.common.mongo import REDELIVER_ERRORS, TRANSIENT_ERRORS, find_in, insert_new, insert_new_or_refused, retry_transient
from services.common.redact import scrub_payload
from services.common.settings import ServiceSettings
from services.contracts import topics
from services.contracts.dates import check_event_dates
from services.contracts.envelope import (
    CONTENT_HASH_FIELD,
    ID_CONFLICT,
    MAX_EVENT_BYTES,
    Event,
    EventError,
    content_hash,
    id_conflict,
    parse_kafka,
)

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What a service handler receives: the valid events of one batch, in record order."""

    events: list[Event]
    # (source, id) of the events the audit trail had not seen before (a hint; handlers stay idempotent).
    # For the types whose audit record the handler writes (`handler_audits`), it adds the keys it stored first.
    new_keys: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class Rejected:
    """An event the service refuses after validation (a domain rule): it goes to the dead-letter topic."""

    event: Event
    error: EventError
    exception: str | None = None  # class name of an unexpected exception behind the refusal


Handler = Callable[[Batch], Awaitable[Sequence[Rejected] | None]]
Prepare = Callable[[Event], Event]
Scrub = Callable[[bytes], bytes]

# Reason of a record that broke decoding, validation or preparation with something other than an EventError.
UNPROCESSABLE = "unprocessable"
# Dead letters that Kafka refuses are kept in MongoDB, bounded well under BSON's 16 MiB document limit.
MAX_STORED_VALUE_BYTES = 4 * 1024 * 1024
MAX_STORED_HEADER_BYTES = 16 * 1024


@dataclass
class DeadLetter:
    record: ConsumerRecord  # as received: its topic, partition and offset identify the dead letter
    error: EventError
    exception: str | None = None  # class name of the unexpected exception, when it was not an EventError
    event: Event | None = None  # a validated (prepared) event the service rejected: sent re-serialised


class StoredContent(NamedTuple):
    """What the audit trail holds of an event's key: its content hash, its time and its type."""

    hash: str
    time: Any
    type: str | None

    def refuses(self, event: Event) -> Rejected | None:
        """`id_conflict` for `event` if its content differs from what was stored (naming the first one's type)."""
        return None if self.hash == event.content_hash() else Rejected(event, id_conflict(event, self.type))


async def stored_content(collection: Any, events: Sequence[Event]) -> dict[tuple[str, str], StoredContent]:
    """What the audit trail holds of `events`' keys, those found: one query for the whole batch (hash, time and
    type only); records written before the hash was kept are hashed from their stored fields, in one more query for
    those alone."""
    if not events:
        return {}
    ids = list({e.key: e.document_id for e in events}.values())
    stored: dict[tuple[str, str], StoredContent] = {}
    legacy: list[dict[str, str]] = []
    for doc in await find_in(collection, "_id", ids, {CONTENT_HASH_FIELD: 1, "time": 1, "type": 1, "source": 1, "id": 1}):
        if CONTENT_HASH_FIELD in doc:
            stored[(doc["source"], doc["id"])] = StoredContent(doc[CONTENT_HASH_FIELD], doc.get("time"), doc.get("type"))
        else:
            legacy.append(doc["_id"])
    if legacy:
        for doc in await find_in(collection, "_id", legacy, {"type": 1, "agency": 1, "subject": 1, "dataschema": 1,
                                                            "time": 1, "data": 1, "source": 1, "id": 1}):
            stored[(doc["source"], doc["id"])] = StoredContent(content_hash(doc), doc.get("time"), doc.get("type"))
    return stored


async def content_conflicts(collection: Any, events: Sequence[Event]) -> list[Rejected]:
    """`id_conflict` for each of `events` whose (source, id) is already stored in `collection` (the audit trail)
    with other content (`stored_content`). A key not found is no conflict."""
    stored = await stored_content(collection, events)
    return [r for e in events if e.key in stored and (r := stored[e.key].refuses(e)) is not None]


def as_first_stored(event: Event, stored_time: Any) -> Event:
    """A duplicate as it was first stored: a re-send may carry a new `time` (not content), which must not reorder
    anything the handler decides by time (latest target, latest reschedule)."""
    if not isinstance(stored_time, datetime):
        return event
    if stored_time.tzinfo is None:  # BSON dates are UTC; a client without tz_aware reads them naive
        stored_time = stored_time.replace(tzinfo=UTC)
    if _ms(stored_time) == _ms(event.time):
        return event
    return dataclasses.replace(event, time=stored_time)


def _ms(value: datetime) -> datetime:
    """An instant as BSON keeps it (milliseconds), so a redelivery compares equal to its stored self."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@dataclass
class Decoded:
    """A batch after parsing: its valid events (one per key, in record order), their audit documents, the record
    each came from, and the dead letters."""

    events: list[Event] = field(default_factory=list)
    documents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    origin: dict[tuple[str, str], ConsumerRecord] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)


# How long decoding holds the event loop before it lets the batch being written take a turn. A database round trip
# of that write waits for the next turn, and it takes several turns (send, header, body): with 50 records a turn
# (about 25 ms) each round trip of a feedback write took 130 ms instead of 1-5 ms, and the write, not the decoding,
# bounded the consumer.
_DECODE_TURN_SECONDS = 0.002
FETCH_BYTES_PER_RECORD = 512  # an event is 0.4-1 KiB: a partition's fetch (aiokafka: 1 MiB) holds a batch's share


def partition_fetch_bytes(max_records: int) -> int:
    """What one fetch may bring from one partition: aiokafka's 1 MiB, or enough for a batch of `max_records`."""
    return max(1024 * 1024, max_records * FETCH_BYTES_PER_RECORD)


class ConsumerStopping(Exception):
    """The service is stopping in the middle of a batch: leave it uncommitted for the next consumer."""


class EventConsumer:
    # Backoff of a batch that failed as a whole (seconds; doubled per consecutive failure).
    batch_retry_initial_delay = 0.5
    batch_retry_max_delay = 30.0
    # How long one batch keeps retrying dead-letter publishes that fail transiently before the rest of its dead
    # letters go to the dead_letters collection instead (the partition must move on).
    dead_letter_retry_seconds = 30.0
    dead_letter_retry_initial_delay = 0.2

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        handler: Handler,
        db: AsyncDatabase,
        publisher: EventPublisher,
        metrics: PlatformMetrics,
        settings: ServiceSettings,
        allowed_types: Iterable[str] | None = None,
        prepare: Prepare | None = None,
        handler_audits: Collection[str] = (),
        dead_letter_scrub: Scrub | None = None,
        clock: Clock = utc_now,
    ):
        """`handler_audits`: the event types whose audit record the handler writes, as the record of its own write
        path (one write per event rather than two): it must store each such event's `to_document()` (more fields
        allowed) in `events`, idempotently, and add the keys it stored first to `Batch.new_keys`. The consumer
        refuses (`id_conflict`) the others stored before with other content, after the handler returns, and writes
        the other types' records before the handler runs.
        `dead_letter_scrub` rewrites the value, key and headers of every dead letter before it leaves (personal
        data): by default `redact.scrub_payload`, so that no topic's dead letters carry what a client wrote in clear."""
        self.topic = topic
        self.group = settings.consumer_group(group)
        self.handler = handler
        self.db = db
        self.publisher = publisher
        self.metrics = metrics
        self.settings = settings
        self.allowed_types = frozenset(allowed_types) if allowed_types is not None else None
        self.prepare = prepare
        self.handler_audits = frozenset(handler_audits)
        self.dead_letter_scrub: Scrub = dead_letter_scrub or scrub_payload
        # The receiving clock and the date windows: the same check_event_dates as the HTTP intake.
        self.clock = clock
        self.date_window = settings.date_window()
        self.stopping = asyncio.Event()
        self.batches_committed = 0
        self.consecutive_failures = 0
        self._writing: asyncio.Task | None = None  # the batch being stored and committed while the next is decoded

    def register(self, broker: KafkaBroker) -> None:
        subscriber = broker.subscriber(
            self.topic,
            group_id=self.group,
            batch=True,
            max_records=self.settings.consumer_max_records,
            max_partition_fetch_bytes=partition_fetch_bytes(self.settings.consumer_max_records),
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
            max_poll_interval_ms=self.settings.kafka_max_poll_interval_ms,
            title=f"{self.topic}:{self.group}",
            parser=_tolerant_parser,
            decoder=_raw_decoder,
            description=f"Consumes {self.topic}; invalid records go to {topics.dlq(self.topic)}.",
        )
        subscriber(self._on_batch)

    async def _on_batch(self, body: Any, msg: KafkaMessage) -> None:
        records: tuple[ConsumerRecord, ...] = tuple(msg.raw_message)  # type: ignore[arg-type]
        started = time.perf_counter()
        if not self.settings.consumer_pipelined or not isinstance(getattr(msg, "consumer", None), AIOKafkaConsumer):
            # One at a time (also under FastStream's test broker, whose consumer commits no named offsets).
            await self._store_and_commit(msg, records, self.decode(records), started)
            return
        # Pipelined: this batch is decoded while the previous one is written (the database works meanwhile); it
        # is written only once the previous one is stored and committed, and its own offsets are committed only
        # after it is stored: no commit ever passes over a batch that is not stored.
        failure: Exception | None = None
        try:
            decoded = await self.decode_interleaved(records)
        except Exception as exc:  # no single record's (those are dead letters): the batch comes again
            decoded, failure = Decoded(), exc
        previous, self._writing = self._writing, None
        if previous is not None:
            rewound = await previous
            if rewound is not None:  # the previous batch failed and rewound its partitions: this one comes again
                self._rewind_also(msg, records, rewound)
                return
        if failure is not None:
            await self._rewind(msg, records, failure)
            return
        self._writing = asyncio.create_task(self._store_and_commit(msg, records, decoded, started),
                                            name=f"store {self.topic}")

    async def _store_and_commit(self, msg: KafkaMessage, records: Sequence[ConsumerRecord], decoded: Decoded,
                                started: float) -> dict[TopicPartition, int] | None:
        """Store a decoded batch, then commit exactly its offsets. Returns None, or the first offsets its
        partitions were rewound to when it failed (the batch is redelivered)."""
        try:
            await self.store_decoded(records, decoded)
        except Exception as exc:  # not one record's fault: nothing of this batch may be committed
            return await self._rewind(msg, records, exc)
        consumer = getattr(msg, "consumer", None)
        if isinstance(consumer, AIOKafkaConsumer):
            try:
                await consumer.commit(_next_offsets(records))
            except Exception as exc:  # a rebalance took the partitions: their new owner gets the batch again
                log.warning("commit failed; the batch will be redelivered (stored already: idempotent)",
                            extra={"topic": self.topic, **_error_facts(exc)})
                return None
        else:
            await msg.ack()
        self.batches_committed += 1
        self.consecutive_failures = 0
        try:
            now = time.time()  # wall time, not the Clock: the broker stamped each record with its own wall clock
            for record in records:
                self.metrics.event_age.labels(self.topic).observe(max(0.0, now - record.timestamp / 1000))
            self.metrics.batch_seconds.labels(self.topic).observe(time.perf_counter() - started)
            self._observe_lag(msg, records)
        except Exception:  # figures only: the batch is stored and committed
            log.exception("could not record a batch's figures", extra={"topic": self.topic})
        return None

    def _rewind_also(self, msg: KafkaMessage, records: Sequence[ConsumerRecord],
                     rewound: dict[TopicPartition, int]) -> None:
        """A batch handled after the one before it failed goes back too: each of its partitions to its own first
        offset or to where the failed batch rewound it, whichever is earlier. It may have been fetched before that
        rewind (the seek stands) or after it, from the rewound offset (it is the redelivery: fetched again)."""
        _seek(msg, {tp: min(offset, rewound.get(tp, offset)) for tp, offset in _first_offsets(records).items()})

    async def drain(self, timeout: float) -> None:
        """Let the batch being written finish and commit (on shutdown, before the consumer closes)."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._writing), timeout)

    async def _rewind(self, msg: KafkaMessage, records: Sequence[ConsumerRecord],
                      exc: Exception) -> dict[TopicPartition, int]:
        """Seek every partition of a failed batch back to its first record, so the next fetch delivers the batch
        again: the next successful commit can then never cover records that were not processed."""
        first = _first_offsets(records)
        _seek(msg, first)
        if isinstance(exc, ConsumerStopping) or self.stopping.is_set():
            return first
        self.consecutive_failures += 1
        self.metrics.batch_failures.labels(self.topic).inc()
        # The exponent is capped: a failure that lasts for days must not overflow the delay computation.
        delay = min(self.batch_retry_max_delay, self.batch_retry_initial_delay * 2 ** min(self.consecutive_failures - 1, 20))
        log.error("batch failed; offsets rewound and the batch will be redelivered",
                  extra={"topic": self.topic, **_error_facts(exc), "records": len(records),
                         "rewound_to": {str(tp.partition): offset for tp, offset in first.items()},
                         "consecutive_failures": self.consecutive_failures, "retry_in_s": delay})
        await self._pause(delay)
        return first

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        """Everything but the commit; public so tests and benchmarks can drive it directly.

        Raises only for failures that are no single record's (the caller redelivers the whole batch)."""
        await self.store_decoded(records, self.decode(records))

    def decode(self, records: Sequence[ConsumerRecord], into: Decoded | None = None) -> Decoded:
        """Parse, validate and prepare every record (CPU only, no I/O): the valid events, one per (source, id),
        and the dead letters (added to `into` when given)."""
        decoded = Decoded() if into is None else into
        for record in records:
            self._decode_into(decoded, record)
        return decoded

    async def decode_interleaved(self, records: Sequence[ConsumerRecord]) -> Decoded:
        """`decode`, yielding to the event loop every `_DECODE_TURN_SECONDS`: the batch being written meanwhile gets its
        database replies handled and sends its next command."""
        decoded = Decoded()
        turn_ends = time.perf_counter() + _DECODE_TURN_SECONDS
        for record in records:
            self._decode_into(decoded, record)
            if time.perf_counter() >= turn_ends:
                await asyncio.sleep(0)
                turn_ends = time.perf_counter() + _DECODE_TURN_SECONDS
        return decoded

    def _decode_into(self, decoded: Decoded, record: ConsumerRecord) -> None:
        try:
            event, document = self._decode(record)
        except TRANSIENT_ERRORS:
            raise
        except EventError as err:
            decoded.dead.append(DeadLetter(record, err))
            return
        except Exception as exc:  # any other failure of one record is that record's, never its batch's
            name = type(exc).__name__
            decoded.dead.append(DeadLetter(record, EventError(
                UNPROCESSABLE, f"{name}: the record could not be decoded, validated or prepared"), exception=name))
            return
        # Duplicates inside one batch are one event (CloudEvents: same source+id = same event); the same key
        # with other content is a conflict, and the first one in the batch wins, as the first stored does.
        if event.key not in decoded.origin:
            decoded.origin[event.key] = record
            decoded.documents[event.key] = document
            decoded.events.append(event)
        elif document[CONTENT_HASH_FIELD] != decoded.documents[event.key][CONTENT_HASH_FIELD]:
            decoded.dead.append(DeadLetter(record, id_conflict(event), event=event))

    async def store_decoded(self, records: Sequence[ConsumerRecord], decoded: Decoded) -> None:
        """Store a decoded batch (audit trail, the service's handler, dead letters) and count it."""
        events, documents, origin, dead = decoded.events, decoded.documents, decoded.origin, decoded.dead
        fresh: set[tuple[str, str]] = set()
        rejected = await self._store(events, [documents[e.key] for e in events], fresh)
        dead_records = dead + [DeadLetter(origin.get(r.event.key) or _record_of(r.event, self.topic), r.error,
                                          r.exception, r.event) for r in rejected]
        await self._dead_letter(dead_records)
        conflicts = sum(1 for d in dead_records if d.error.reason == ID_CONFLICT)
        if conflicts:
            self.metrics.id_conflicts.labels(self.topic).inc(conflicts)
        refused = {r.event.key for r in rejected}
        # "stored" counts events the audit trail had not seen, so the counter agrees with the database
        # under redelivery and re-sends; everything else valid is a duplicate.
        stored = len(fresh - refused)
        if stored:
            self.metrics.consumed.labels(self.topic, "stored").inc(stored)
        duplicates = len(records) - len(dead) - len(rejected) - stored
        if duplicates:
            self.metrics.consumed.labels(self.topic, "duplicate").inc(duplicates)

    def _decode(self, record: ConsumerRecord) -> tuple[Event, dict[str, Any]]:
        """One record -> a prepared event and its audit document, proven encodable as BSON here, per record: a
        value MongoDB cannot hold (an integer over 8 bytes, a date that overflows in UTC) must fail alone, not
        the batch's insert."""
        now = self.clock()
        event = parse_kafka(record.headers, record.key, record.value, allowed_types=self.allowed_types,
                            received_at=now)
        refused = check_event_dates(event, now, self.date_window)
        if refused is not None:
            raise refused
        if self.prepare is not None:
            event = self.prepare(event)
        document = event.to_document()
        bson.encode(document)
        return event, document

    async def _store(self, events: list[Event], docs: list[dict[str, Any]],
                     fresh: set[tuple[str, str]] | None = None) -> list[Rejected]:
        if not events:
            return []
        # Keys newly inserted by any attempt: a retry after a partial insert sees those as duplicates.
        fresh = set() if fresh is None else fresh

        async def write() -> list[Rejected]:
            # The consumer writes the audit records of the types the handler does not (`handler_audits`).
            ours = [i for i, e in enumerate(events) if e.type not in self.handler_audits]
            inserted, refused = await insert_new_or_refused(self.db.events, [docs[i] for i in ours])
            inserted, refused = [ours[i] for i in inserted], [ours[i] for i in refused]
            fresh.update(events[i].key for i in inserted)
            # A document the server refuses for its content is that event's failure: dead-letter it alone.
            unstorable = [Rejected(events[i], EventError("unstorable", "the database refused this event's document"),
                                   "WriteError") for i in sorted(refused)]
            # Already stored: a duplicate is applied again (handlers are idempotent, and a crash may have come
            # between the audit write and the apply); one whose stored content differs is refused, first wins.
            seen = set(inserted) | set(refused)
            again = [i for i in ours if i not in seen]
            stored = await stored_content(self.db.events, [events[i] for i in again])
            conflicts = {i: r for i in again if events[i].key in stored and (r := stored[events[i].key].refuses(events[i]))}
            unstorable += [conflicts[i] for i in sorted(conflicts)]
            refused = set(refused) | set(conflicts)
            kept = [as_first_stored(e, stored[e.key].time) if e.key in stored else e
                    for i, e in enumerate(events) if i not in refused]
            if not kept:
                return unstorable
            # `fresh` itself: the handler adds the keys of the records it wrote first
            handled = list(await self._handle(Batch(kept, fresh)) or [])
            return unstorable + handled + await self._conflicts_of_handler_audits(kept, fresh, handled)

        return await retry_transient(write, what=f"store {self.topic}", stop=self.stopping,
                                     on_retry=lambda: self.metrics.store_retries.labels(self.topic).inc())

    async def _conflicts_of_handler_audits(self, events: Sequence[Event], fresh: set[tuple[str, str]],
                                           handled: Sequence[Rejected]) -> list[Rejected]:
        """The `handler_audits` events the handler stored before this batch (not in `fresh`) with other content:
        refused `id_conflict`, the first stands. The handler only stores them idempotently and reports new keys."""
        refused = {r.event.key for r in handled}
        again = [e for e in events if e.type in self.handler_audits and e.key not in fresh and e.key not in refused]
        return await content_conflicts(self.db.events, again)

    async def _handle(self, batch: Batch) -> Sequence[Rejected]:
        try:
            return list(await self.handler(batch) or [])
        except REDELIVER_ERRORS:
            # The database, not the events (unreachable, a write that outlived its lease or kept losing its
            # compare-and-set): the whole batch comes again. Never a dead letter: the events are valid.
            raise
        except Exception as exc:
            if len(batch.events) == 1:
                # The exception's text may quote the event's data: log its class and stack only.
                log.warning("event processing failed; dead-lettering it",
                            extra={"topic": self.topic, "event_id": batch.events[0].id, **_error_facts(exc)})
                return [Rejected(batch.events[0], EventError("processing_failed", "the service could not apply this event"),
                                 type(exc).__name__)]
            # Isolate the event that breaks the handler instead of blocking the partition.
            rejected: list[Rejected] = []
            for event in batch.events:
                new_keys = batch.new_keys if event.type in self.handler_audits else batch.new_keys & {event.key}
                rejected.extend(await self._handle(Batch([event], new_keys)))
            return rejected

    # --- dead letters ----------------------------------------------------------------------
    async def _dead_letter(self, dead: Sequence[DeadLetter]) -> None:
        """Publish every dead letter to `<topic>.dlq`; one Kafka refuses for good (too large, invalid topic) or that
        stays unpublishable past the retry budget goes to the dead_letters collection, so the partition moves on."""
        if not dead:
            return
        dlq_topic = topics.dlq(self.topic)
        letters = [self._letter(item) for item in dead]
        waiting = list(range(len(letters)))
        refused: list[int] = []
        deadline = time.monotonic() + self.dead_letter_retry_seconds
        delay = self.dead_letter_retry_initial_delay
        while True:
            results = await self.publisher.send_raw_many(dlq_topic, [letters[i] for i in waiting])
            failed = [(i, err) for i, err in zip(waiting, results) if err is not None]
            refused += [i for i, err in failed if isinstance(err, PublishRefused)]
            waiting = [i for i, err in failed if not isinstance(err, PublishRefused)]
            if not waiting:
                break
            if self.stopping.is_set():
                raise ConsumerStopping
            if time.monotonic() + delay > deadline:
                break
            self.metrics.dead_letter_retries.labels(self.topic).inc(len(waiting))
            log.warning("dead-letter publish failed, retrying",
                        extra={"topic": dlq_topic, "records": len(waiting), "error": str(failed[0][1]),
                               "retry_in_s": round(delay, 2)})
            await self._pause(delay)
            delay = min(5.0, delay * 2)
        for indexes, cause in ((refused, "refused"), (waiting, "unavailable")):
            if indexes:
                await self._keep(dead, letters, indexes, cause)
        for item in dead:
            err = item.error
            self.metrics.consumed.labels(self.topic, "dead_lettered").inc()
            self.metrics.dead_letters.labels(self.topic, err.reason).inc()
            log.warning("record dead-lettered", extra={"topic": self.topic, "reason": err.reason,
                                                       "exception": item.exception, "partition": item.record.partition,
                                                       "offset": item.record.offset, "event_id": err.event_id})

    def _letter(self, item: DeadLetter) -> RawRecord:
        """The record to dead-letter: a rejected event re-serialised (it is the prepared, redacted form), else the
        record as received; its value scrubbed; the reason in headers that never quote the input."""
        record, err = item.record, item.error
        value, key, headers = record.value or b"", record.key, list(record.headers or ())
        if item.event is not None:
            try:
                msg = item.event.to_kafka()
                value = msg.value
                key = msg.key.encode() if isinstance(msg.key, str) else msg.key
                headers = list(msg.headers.items())
            except Exception:  # e.g. a time that overflows when written in UTC: the received record instead
                pass
        withheld, extra = False, []
        if len(value) > MAX_EVENT_BYTES:
            # Never an event anyway: its first 64 KiB are kept, so scrubbing costs what a valid event's would.
            extra.append(("dlq-truncated-from-bytes", str(len(value)).encode()))
            value = value[:MAX_EVENT_BYTES]
        try:
            value = self.dead_letter_scrub(value)
            if not isinstance(value, bytes):
                raise TypeError("the scrub must return bytes")
        except Exception as exc:  # never the unscrubbed value
            log.warning("dead-letter scrub failed; payload withheld", extra={"topic": self.topic, **_error_facts(exc)})
            value, withheld = b"", True
        # Binary mode carries attributes in headers (ce_subject, extensions), and a key is the producer's text too:
        # they are scrubbed like the value.
        headers = [(name, self._scrub_part(raw)) for name, raw in headers]
        if key is not None:
            key = self._scrub_part(key)
        headers += [
            ("dlq-reason", err.reason.encode()),
            ("dlq-detail", safe_detail(err.detail).encode()),
            ("dlq-original-topic", record.topic.encode()),
            ("dlq-original-partition", str(record.partition).encode()),
            ("dlq-original-offset", str(record.offset).encode()),
            ("dlq-consumer-group", self.group.encode()),
        ]
        if item.exception:
            headers.append(("dlq-exception", item.exception.encode()))
        if withheld:
            headers.append(("dlq-payload", b"withheld"))
        return RawRecord(value, key, headers + extra)

    def _scrub_part(self, raw: bytes | None) -> bytes:
        try:
            value = self.dead_letter_scrub(bytes((raw or b"")[:MAX_EVENT_BYTES]))
            return value if isinstance(value, bytes) else b""
        except Exception:  # never the unscrubbed header
            return b""

    async def _keep(self, dead: Sequence[DeadLetter], letters: Sequence[RawRecord], indexes: Sequence[int],
                    cause: str) -> None:
        now = utc_now()
        docs = [_dead_letter_document(dead[i], letters[i], self.group, cause, now) for i in indexes]
        await retry_transient(lambda: insert_new(self.db.dead_letters, docs), what=f"keep dead letters of {self.topic}",
                              stop=self.stopping, on_retry=lambda: self.metrics.store_retries.labels(self.topic).inc())
        self.metrics.dead_letters_stored.labels(self.topic, cause).inc(len(docs))
        log.warning("dead letters kept in the database: the dead-letter topic did not take them",
                    extra={"topic": self.topic, "records": len(docs), "cause": cause,
                           "offsets": [dead[i].record.offset for i in indexes][:50]})

    def _observe_lag(self, msg: KafkaMessage, records: Sequence[ConsumerRecord]) -> None:
        """Lag of the partitions in this batch: partition end minus the last offset handled."""
        consumer = getattr(msg, "consumer", None)
        if consumer is None:
            return
        lag = 0
        try:
            for tp, last in _last_offsets(records).items():
                high = consumer.highwater(tp)
                if high is not None:
                    lag += max(0, high - (last + 1))
        except Exception:  # lag is best-effort telemetry, never a reason to fail a batch
            return
        self.metrics.lag.labels(self.topic).set(lag)


async def _tolerant_parser(records: tuple[ConsumerRecord, ...], original: Callable[..., Any]) -> Any:
    """FastStream's parser decodes every header as UTF-8 and would fail on a hostile record before we
    could dead-letter it: parse sanitised copies, then hand the untouched records to the handler."""
    safe = tuple(dataclasses.replace(r, headers=tuple((k, _utf8(v)) for k, v in (r.headers or ()))) for r in records)
    message = await original(safe)
    message.raw_message = records
    return message


async def _raw_decoder(message: Any, original: Callable[..., Any]) -> Any:
    # The handler parses each record itself (CloudEvents binary or structured mode): no body decoding here.
    return None


def _utf8(value: bytes | None) -> bytes:
    if value is None:
        return b""
    try:
        value.decode("utf-8")
        return value
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace").encode("utf-8")


def _seek(msg: KafkaMessage, offsets: dict[TopicPartition, int]) -> None:
    """Point each partition's next fetch at its offset."""
    consumer = getattr(msg, "consumer", None)
    for tp, offset in offsets.items():
        try:
            consumer.seek(tp, offset)  # type: ignore[union-attr]
        except Exception:  # revoked in a rebalance: its new owner starts from the last commit, before this batch
            log.warning("could not rewind a partition", extra={"topic": tp.topic, "partition": tp.partition})


def _first_offsets(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, int]:
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    return first


_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_DIGITS = re.compile(r"\d+")  # str pattern: Thai and other Unicode digits too


def safe_detail(detail: str, limit: int = 500) -> str:
    """A refusal's detail as it may be kept on the dead-letter topic, in MongoDB and in logs: quoted values and
    numbers removed, because details may quote the input (a birth year, an ID, a rejected value)."""
    return _DIGITS.sub("#", _QUOTED.sub("'…'", detail))[:limit]


def _error_facts(exc: BaseException) -> dict[str, str]:
    """What may be logged about an exception: its class and where it was raised. Not its message, which can quote
    the data being processed."""
    return {"error": type(exc).__name__, "stack": "".join(traceback.format_tb(exc.__traceback__))[-4000:]}


def _dead_letter_document(item: DeadLetter, letter: RawRecord, group: str, cause: str, now: datetime) -> dict[str, Any]:
    record = item.record
    if record.offset >= 0:  # idempotent under redelivery: one document per record and consumer group
        _id: dict[str, Any] = {"topic": record.topic, "partition": record.partition, "offset": record.offset, "group": group}
    else:  # a re-serialised event without its record
        assert item.event is not None
        _id = {"topic": record.topic, "group": group, "source": item.event.source, "id": item.event.id}
    value = letter.value
    doc: dict[str, Any] = {
        "_id": _id,
        "topic": record.topic, "partition": record.partition, "offset": record.offset, "consumer_group": group,
        "key": letter.key[:MAX_STORED_HEADER_BYTES] if letter.key else None,
        "value": bytes(value[:MAX_STORED_VALUE_BYTES]), "value_bytes": len(value),
        "value_truncated": len(value) > MAX_STORED_VALUE_BYTES,
        "headers": [[name, bytes((raw or b"")[:MAX_STORED_HEADER_BYTES])] for name, raw in letter.headers],
        "reason": item.error.reason, "detail": safe_detail(item.error.detail), "exception": item.exception,
        "event_id": item.event.id if item.event is not None else None,
        "cause": cause, "dead_lettered_at": now,
    }
    return doc


def _next_offsets(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, int]:
    """What to commit for a batch: per partition, the offset after its last record."""
    return {tp: offset + 1 for tp, offset in _last_offsets(records).items()}


def _last_offsets(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, int]:
    last: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        last[tp] = max(last.get(tp, -1), r.offset)
    return last


def _record_of(event: Event, topic: str) -> ConsumerRecord:
    # Rejected events are re-serialised (structured mode) for the dead-letter topic.
    msg = event.to_kafka()
    key = msg.key.encode() if isinstance(msg.key, str) else msg.key
    return ConsumerRecord(topic=topic, partition=-1, offset=-1, timestamp=int(time.time() * 1000), timestamp_type=0,
                          key=key, value=msg.value, checksum=None, serialized_key_size=-1,
                          serialized_value_size=-1, headers=tuple(msg.headers.items()))
