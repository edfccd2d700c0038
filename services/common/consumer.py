"""The consumer pattern every service reuses.

batch of records -> parse and validate (bad ones to the dead-letter topic, with the reason)
-> audit trail insert (idempotent on source+id) -> the service's own idempotent write
-> commit offsets. Offsets are committed only after everything above succeeded, so a crash
anywhere means redelivery, and redelivery changes nothing (at-least-once + idempotent writes).
A database outage is waited out with backoff inside the batch: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from pymongo.asynchronous.database import AsyncDatabase

from services.common.kafka import EventPublisher
from services.common.metrics import PlatformMetrics
from services.common.mongo import TRANSIENT_ERRORS, insert_new, retry_transient
from services.common.settings import ServiceSettings
from services.contracts import topics
from services.contracts.envelope import Event, EventError, parse_kafka

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What a service handler receives: the valid events of one batch, in record order."""

    events: list[Event]
    # (source, id) of the events the audit trail had not seen before (a hint; handlers stay idempotent).
    # With audit=False the handler owns the audit write and adds the keys it stored for the first time.
    new_keys: set[tuple[str, str]] = field(default_factory=set)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Rejected:
    """An event the service refuses after validation (a domain rule): it goes to the dead-letter topic."""

    event: Event
    error: EventError


Handler = Callable[[Batch], Awaitable[Sequence[Rejected] | None]]
Prepare = Callable[[Event], Event]


@dataclass
class DeadLetter:
    record: ConsumerRecord
    error: EventError


class EventConsumer:
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
        audit: bool = True,
    ):
        """audit=False hands the audit-trail write to the handler: it must store each event's
        `to_document()` record (more fields allowed) idempotently and add new keys to `Batch.new_keys`."""
        self.topic = topic
        self.group = settings.consumer_group(group)
        self.handler = handler
        self.db = db
        self.publisher = publisher
        self.metrics = metrics
        self.settings = settings
        self.allowed_types = frozenset(allowed_types) if allowed_types is not None else None
        self.prepare = prepare
        self.audit = audit
        self.stopping = asyncio.Event()
        # Test hook: awaited after the write and before the commit (to prove redelivery is harmless).
        self.before_commit: Callable[[], Awaitable[None]] | None = None
        self.batches_committed = 0

    def register(self, broker: KafkaBroker) -> None:
        subscriber = broker.subscriber(
            self.topic,
            group_id=self.group,
            batch=True,
            max_records=self.settings.consumer_max_records,
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
        await self.process(records)
        if self.before_commit is not None:
            await self.before_commit()
        await msg.ack()
        self.batches_committed += 1
        now = time.time()
        for record in records:
            self.metrics.event_age.labels(self.topic).observe(max(0.0, now - record.timestamp / 1000))
        self.metrics.batch_seconds.labels(self.topic).observe(time.perf_counter() - started)
        self._observe_lag(msg, records)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        """Everything but the commit; public so tests and benchmarks can drive it directly."""
        events: list[Event] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                event = parse_kafka(record.headers, record.key, record.value, allowed_types=self.allowed_types)
                if self.prepare is not None:
                    event = self.prepare(event)
                events.append(event)
            except EventError as err:
                dead.append(DeadLetter(record, err))
        # Duplicates inside one batch are one event (CloudEvents: same source+id = same event).
        unique: dict[tuple[str, str], Event] = {}
        for event in events:
            unique.setdefault(event.key, event)
        events = list(unique.values())
        fresh: set[tuple[str, str]] = set()
        rejected = await self._store(events, fresh)
        dead_records = dead + [DeadLetter(_record_of(r.event, self.topic), r.error) for r in rejected]
        await self._dead_letter(dead_records)
        refused = {r.event.key for r in rejected}
        # "stored" counts events the audit trail had not seen, so the counter agrees with the database
        # under redelivery and re-sends; everything else valid is a duplicate.
        stored = len(fresh - refused)
        if stored:
            self.metrics.consumed.labels(self.topic, "stored").inc(stored)
        duplicates = len(records) - len(dead) - len(rejected) - stored
        if duplicates:
            self.metrics.consumed.labels(self.topic, "duplicate").inc(duplicates)

    async def _store(self, events: list[Event], fresh: set[tuple[str, str]] | None = None) -> list[Rejected]:
        if not events:
            return []
        # Keys newly inserted by any attempt: a retry after a partial insert sees those as duplicates.
        fresh = set() if fresh is None else fresh

        async def write() -> list[Rejected]:
            if not self.audit:  # the handler writes the audit records and reports what was new in `fresh`
                return list(await self._handle(Batch(events, fresh)) or [])
            docs = [e.to_document() for e in events]
            inserted = await insert_new(self.db.events, docs)
            fresh.update(events[i].key for i in inserted)
            return list(await self._handle(Batch(events, set(fresh))) or [])

        return await retry_transient(write, what=f"store {self.topic}", stop=self.stopping,
                                     on_retry=lambda: self.metrics.store_retries.labels(self.topic).inc())

    async def _handle(self, batch: Batch) -> Sequence[Rejected]:
        try:
            return list(await self.handler(batch) or [])
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            if len(batch.events) == 1:
                log.exception("event processing failed; dead-lettering it",
                              extra={"topic": self.topic, "event_id": batch.events[0].id})
                return [Rejected(batch.events[0], EventError("processing_failed", "the service could not apply this event"))]
            # Isolate the event that breaks the handler instead of blocking the partition.
            rejected: list[Rejected] = []
            for event in batch.events:
                new_keys = batch.new_keys if not self.audit else batch.new_keys & {event.key}
                rejected.extend(await self._handle(Batch([event], new_keys, batch.received_at)))
            return rejected

    async def _dead_letter(self, dead: Sequence[DeadLetter]) -> None:
        dlq_topic = topics.dlq(self.topic)
        for item in dead:
            record, err = item.record, item.error
            headers = list(record.headers or ()) + [
                ("dlq-reason", err.reason.encode()),
                ("dlq-detail", err.detail[:1000].encode()),
                ("dlq-original-topic", record.topic.encode()),
                ("dlq-original-partition", str(record.partition).encode()),
                ("dlq-original-offset", str(record.offset).encode()),
                ("dlq-consumer-group", self.group.encode()),
            ]
            delay = 0.2
            while True:  # the commit waits for the dead letter: a dropped DLQ record would be a lost record
                try:
                    await self.publisher.send_raw(dlq_topic, record.value or b"", record.key, headers)
                    break
                except Exception as exc:
                    log.warning("dead-letter publish failed, retrying", extra={"topic": dlq_topic, "error": repr(exc)})
                    await asyncio.sleep(delay)
                    delay = min(10.0, delay * 2)
            self.metrics.consumed.labels(self.topic, "dead_lettered").inc()
            self.metrics.dead_letters.labels(self.topic, err.reason).inc()
            log.warning("record dead-lettered", extra={"topic": self.topic, "reason": err.reason,
                                                       "partition": record.partition, "offset": record.offset,
                                                       "event_id": err.event_id})

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
