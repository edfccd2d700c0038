"""The consumer pattern with in-memory fakes: one bad record never costs another, dead letters never stall.

`EventConsumer` takes its database and publisher as arguments: the fakes below stand in for them, and
failures are injected through the fakes, a `prepare` and a handler, never through hooks in the consumer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pymongo.errors import AutoReconnect, BulkWriteError, ServerSelectionTimeoutError

from services.common.consumer import UNPROCESSABLE, Batch, EventConsumer, safe_detail
from services.common.kafka import PublishError, PublishRefused, RawRecord
from services.common.ledger import WriteContended, WriteExpired
from services.common.metrics import PlatformMetrics
from services.common.settings import ServiceSettings
from services.contracts.envelope import Event

TOPIC = "training.events"
GOOD = {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569, "headcount": 120}
EXCEPTIONS: dict[str, type[Exception]] = {
    "RecursionError": RecursionError, "OverflowError": OverflowError, "ValueError": ValueError, "TypeError": TypeError,
    "KeyError": KeyError, "AttributeError": AttributeError, "ZeroDivisionError": ZeroDivisionError,
    "RuntimeError": RuntimeError, "AssertionError": AssertionError, "LookupError": LookupError,
}


# --- fakes -----------------------------------------------------------------------------------
class FakeCollection:
    """Keyed by `_id`; refuses documents whose id starts with `r-` as a validating server would (code 121)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.fail_next: list[Exception] = []
        self.fail_find: list[Exception] = []

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)
        errors = []
        for i, doc in enumerate(docs):
            key = json.dumps(doc["_id"], sort_keys=True)
            if str(doc.get("id", "")).startswith("r-"):
                errors.append({"index": i, "code": 121})
            elif key in self.docs:
                errors.append({"index": i, "code": 11000})
            else:
                self.docs[key] = doc
        if errors:
            raise BulkWriteError({"writeErrors": errors})

    def find(self, query: dict[str, Any], projection: dict[str, Any] | None = None) -> Any:
        """PyMongo's cursor for the one query the consumer runs: stored audit records by `_id` ($in)."""
        if self.fail_find:
            raise self.fail_find.pop(0)

        async def cursor() -> Any:
            for _id in query["_id"]["$in"]:
                if (doc := self.docs.get(json.dumps(_id, sort_keys=True))) is not None:
                    yield doc
        return cursor()


class FakeDb:
    def __init__(self) -> None:
        self.events = FakeCollection()
        self.dead_letters = FakeCollection()


class FakePublisher:
    """Acknowledges everything, except values containing a refused marker (for good) and the first
    `transient` sends (a passing outage)."""

    def __init__(self, refuse: bytes | None = None, transient: int = 0) -> None:
        self.sent: list[tuple[str, RawRecord]] = []
        self.refuse = refuse
        self.transient = transient
        self.calls = 0

    async def send_raw_many(self, topic: str, records: list[RawRecord]) -> list[PublishError | None]:
        self.calls += 1
        results: list[PublishError | None] = []
        for record in records:
            if self.refuse is not None and self.refuse in record.value:
                results.append(PublishRefused("MessageSizeTooLargeError"))
            elif self.transient > 0:
                self.transient -= 1
                results.append(PublishError("KafkaTimeoutError"))
            else:
                self.sent.append((topic, record))
                results.append(None)
        return results


class RecordingHandler:
    """Records the events it applied; refuses (raises) any batch holding an event whose id starts with `h-`."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []
        self.new: list[tuple[str, str]] = []

    async def __call__(self, batch: Batch) -> None:
        if any(e.id.startswith("h-") for e in batch.events):
            raise ValueError("the handler cannot apply h-")
        self.applied.extend(e.key for e in batch.events)
        self.new.extend(k for k in batch.new_keys if k in {e.key for e in batch.events})


def prepare(event: Event) -> Event:
    """Raises the exception its id names (`x-<ExceptionClass>-...`), as a buggy prepare step would; for `u-...` it
    returns a value MongoDB cannot hold (an integer over 8 bytes)."""
    if event.id.startswith("x-"):
        raise EXCEPTIONS[event.id.split("-")[1]]("injected; the data was 1103702071927")
    if event.id.startswith("u-"):
        return dataclasses.replace(event, extensions={"big": 10**40})  # type: ignore[dict-item]
    return event


def make_consumer(db: FakeDb | None = None, publisher: FakePublisher | None = None, handler=None, **kwargs) -> EventConsumer:
    consumer = EventConsumer(topic=TOPIC, group="test", handler=handler or RecordingHandler(), db=db or FakeDb(),  # type: ignore[arg-type]
                             publisher=publisher or FakePublisher(),  # type: ignore[arg-type]
                             metrics=PlatformMetrics(CollectorRegistry(), "test"),
                             settings=ServiceSettings(kafka_consumer_group_prefix="t"), prepare=prepare, **kwargs)
    consumer.dead_letter_retry_initial_delay = 0.001
    return consumer


def event_json(id: str, **over: Any) -> bytes:
    body = {"specversion": "1.0", "id": id, "source": "/agencies/dga/hr", "type": "training.target.set", "agency": "dga",
            "time": "2026-03-01T10:00:00+07:00", "data": dict(GOOD)}
    body.update(over)
    return json.dumps(body).encode()


def hostile(kind: str, n: int) -> bytes:
    """Records each breaking a different step; every one must be dead-lettered, alone."""
    return {
        "deep": b"[" * 50_000 + b"]" * 50_000,
        "deep_object": (b'{"a":' * 40) + b"1" + b"}" * 40,
        "not_utf8": b'{"id": "\xff\xfe"}',
        "not_json": b"not json at all",
        "nan": event_json(f"n-{n}", data=dict(GOOD, headcount=float("nan"))),
        "huge_int": event_json(f"i-{n}", data=dict(GOOD, headcount=10**40)),
        "wrong_type": event_json(f"w-{n}", data=[1, 2, 3]),
        "time_overflow": event_json(f"t-{n}", time="9999-12-31T23:00:00-12:00"),
        "bad_time": event_json(f"b-{n}", time="31/12/2569"),
        **{f"prepare_{name}": event_json(f"x-{name}-{n}") for name in EXCEPTIONS},
        "handler": event_json(f"h-{n}"),
        "unstorable": event_json(f"u-{n}"),
        "refused_by_db": event_json(f"r-{n}"),
    }[kind]


HOSTILE_KINDS = ["deep", "deep_object", "not_utf8", "not_json", "nan", "huge_int", "wrong_type", "time_overflow", "bad_time",
                 "handler", "unstorable", "refused_by_db", *(f"prepare_{name}" for name in EXCEPTIONS)]


def record(value: bytes, offset: int, partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord(topic=TOPIC, partition=partition, offset=offset, timestamp=0, timestamp_type=0, key=b"dga",
                          value=value, checksum=None, serialized_key_size=3, serialized_value_size=len(value),
                          headers=(("content-type", b"application/cloudevents+json"),))


def counter(consumer: EventConsumer, outcome: str) -> float:
    return consumer.metrics.registry.get_sample_value("newnormal_consumer_records_total",
                                                      {"topic": TOPIC, "outcome": outcome}) or 0.0


# --- the property ------------------------------------------------------------------------------
# One item per record: ("valid", i) a new event, ("dup", j) a re-send of the j-th valid event so far, (kind, i) hostile.
item = st.one_of(st.just(("valid", 0)), st.just(("dup", 0)), st.sampled_from(HOSTILE_KINDS).map(lambda k: (k, 0)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(item, min_size=1, max_size=12), min_size=1, max_size=6))
def test_exceptions_in_random_records_of_random_batches_cost_only_their_record(batches):
    asyncio.run(_run_property(batches))


async def _run_property(batches: list[list[tuple[str, int]]]) -> None:
    db, publisher, handler = FakeDb(), FakePublisher(), RecordingHandler()
    consumer = make_consumer(db, publisher, handler)
    valid: list[bytes] = []
    valid_ids: list[str] = []
    expected_dead: list[str] = []  # the id or kind of each hostile record, once per record
    handler_refused: set[str] = set()
    offset = 0
    for batch in batches:
        records = []
        for kind, _ in batch:
            if kind == "valid" or (kind == "dup" and not valid):
                eid = uuid.uuid4().hex
                valid.append(event_json(eid))
                valid_ids.append(eid)
                value = valid[-1]
            elif kind == "dup":
                value = valid[offset % len(valid)]
            else:
                value = hostile(kind, offset)
                expected_dead.append(kind)
                if kind == "handler":
                    handler_refused.add(f"h-{offset}")
            records.append(record(value, offset))
            offset += 1
        await consumer.process(records)

    stored_ids = {d["id"] for d in db.events.docs.values()}
    # Every valid event stored once (the audit trail is keyed by source+id), and applied by the handler as new once.
    assert stored_ids == set(valid_ids) | handler_refused
    assert sorted(k[1] for k in handler.new) == sorted(valid_ids)
    assert set(k[1] for k in handler.applied) == set(valid_ids)
    # Every hostile record on the dead-letter topic, once, with its reason; nothing else there.
    assert len(publisher.sent) == len(expected_dead)
    assert all(topic == TOPIC + ".dlq" for topic, _ in publisher.sent)
    reasons = Counter(_header(r, "dlq-reason") for _, r in publisher.sent)
    assert reasons[UNPROCESSABLE] == sum(1 for k in expected_dead if k.startswith("prepare_") or k == "unstorable")
    assert reasons["processing_failed"] == len(handler_refused)
    assert reasons["unstorable"] == expected_dead.count("refused_by_db")
    for _, r in publisher.sent:
        if _header(r, "dlq-reason") == UNPROCESSABLE:
            assert _header(r, "dlq-exception") in {*EXCEPTIONS, "OverflowError"}
        assert "1103702071927" not in (_header(r, "dlq-detail") or "")
    assert counter(consumer, "stored") == len(valid_ids)
    assert counter(consumer, "dead_lettered") == len(expected_dead)
    assert counter(consumer, "duplicate") == offset - len(valid_ids) - len(expected_dead)
    assert db.dead_letters.docs == {}


def _header(r: RawRecord, name: str) -> str | None:
    return next((v.decode() for k, v in r.headers if k == name), None)


# --- specific cases --------------------------------------------------------------------------
async def test_the_exception_class_is_named_and_its_text_never_kept():
    publisher = FakePublisher()
    consumer = make_consumer(publisher=publisher)
    await consumer.process([record(event_json("x-KeyError-1"), 0), record(event_json("ok-1"), 1)])
    [(_, r)] = publisher.sent
    assert _header(r, "dlq-reason") == UNPROCESSABLE and _header(r, "dlq-exception") == "KeyError"
    assert _header(r, "dlq-detail") == "KeyError: the record could not be decoded, validated or prepared"
    assert _header(r, "dlq-original-offset") == "0" and _header(r, "dlq-original-partition") == "0"


def test_safe_detail_drops_quoted_values_and_numbers():
    assert safe_detail("birth year gives an age of 226 in 2026") == "birth year gives an age of # in #"
    assert safe_detail("unknown province 'นาย สมชาย 0812345678': use TH-10") == "unknown province '…': use TH-#"
    assert "๑๑๐๓" not in safe_detail("เลข ๑๑๐๓๗๐๒๐๗๑๙๒๗")


async def test_scrub_applies_to_every_dead_letter_and_a_failing_scrub_withholds_the_payload():
    publisher = FakePublisher()
    consumer = make_consumer(publisher=publisher, dead_letter_scrub=lambda v: v.replace(b"hr", b"**"))
    await consumer.process([record(event_json("x-ValueError-1"), 0), record(event_json("h-2"), 1)])
    assert len(publisher.sent) == 2
    assert all(b"/agencies/dga/**" in r.value for _, r in publisher.sent)  # raw record and re-serialised event

    def broken(value: bytes) -> bytes:
        raise UnicodeDecodeError("utf-8", value, 0, 1, "nope")

    publisher = FakePublisher()
    consumer = make_consumer(publisher=publisher, dead_letter_scrub=broken)
    await consumer.process([record(event_json("x-ValueError-1"), 0)])
    [(_, r)] = publisher.sent
    assert r.value == b"" and _header(r, "dlq-payload") == "withheld"


async def test_an_oversized_record_is_scrubbed_within_the_event_budget():
    seen: list[int] = []

    def scrub(value: bytes) -> bytes:
        seen.append(len(value))
        return value

    publisher = FakePublisher()
    consumer = make_consumer(publisher=publisher, dead_letter_scrub=scrub)
    await consumer.process([record(b'{"pad": "' + b"x" * 1_000_000 + b'"}', 0)])
    [(_, r)] = publisher.sent
    # the value is cut to the event budget before its scrub; the (small) headers are scrubbed after it
    assert seen[0] == 64 * 1024 and max(seen[1:], default=0) < 1024 and len(r.value) == 64 * 1024
    assert _header(r, "dlq-reason") == "event_too_large" and _header(r, "dlq-truncated-from-bytes") == "1000011"


async def test_a_refused_dead_letter_is_kept_in_the_database_and_the_batch_completes():
    db, publisher = FakeDb(), FakePublisher(refuse=b"REFUSE-ME")
    consumer = make_consumer(db, publisher, dead_letter_scrub=lambda v: v.replace(b"secret", b"[X]"))
    big = b'{"x": "REFUSE-ME secret' + b" " * 70_000 + b'"}'  # too large for the event limit and for the DLQ
    await consumer.process([record(big, 7), record(event_json("ok-1"), 8), record(b"not json", 9)])
    assert len(publisher.sent) == 1  # the other dead letter went out
    [doc] = db.dead_letters.docs.values()
    assert doc["_id"] == {"topic": TOPIC, "partition": 0, "offset": 7, "group": "t.test"}
    assert doc["reason"] == "event_too_large" and doc["cause"] == "refused"
    assert b"[X]" in doc["value"] and b"secret" not in doc["value"]  # scrubbed before it is kept
    assert any(name == "dlq-reason" and value == b"event_too_large" for name, value in doc["headers"])
    assert any(d["id"] == "ok-1" for d in db.events.docs.values())
    metrics = consumer.metrics.registry
    assert metrics.get_sample_value("newnormal_dead_letter_fallback_records_total", {"topic": TOPIC, "cause": "refused"}) == 1
    # Redelivery of the same record keeps one document.
    await consumer.process([record(big, 7)])
    assert len(db.dead_letters.docs) == 1


async def test_transient_publish_errors_are_retried_then_the_database_takes_over():
    publisher = FakePublisher(transient=2)
    consumer = make_consumer(publisher=publisher)
    await consumer.process([record(b"not json", 0)])
    assert len(publisher.sent) == 1 and publisher.calls == 3
    assert consumer.metrics.registry.get_sample_value("newnormal_dead_letter_publish_retries_total", {"topic": TOPIC}) == 2

    db, publisher = FakeDb(), FakePublisher(transient=10**6)  # the topic never comes back
    consumer = make_consumer(db, publisher)
    consumer.dead_letter_retry_seconds = 0.05
    await asyncio.wait_for(consumer.process([record(b"not json", 0), record(b"nor this", 1)]), 5)
    assert publisher.sent == [] and len(db.dead_letters.docs) == 2
    assert {d["cause"] for d in db.dead_letters.docs.values()} == {"unavailable"}


async def test_stopping_during_dead_letter_retries_leaves_the_batch_uncommitted():
    publisher = FakePublisher(transient=10**6)
    consumer = make_consumer(publisher=publisher)
    consumer.stopping.set()
    msg = FakeMessage([record(b"not json", 3)])
    await consumer._on_batch(None, msg)
    assert msg.acked == 0 and msg.consumer.seeks == [(TopicPartition(TOPIC, 0), 3)]


class FakeKafkaConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


class FakeMessage:
    def __init__(self, records: list[ConsumerRecord]) -> None:
        self.raw_message = tuple(records)
        self.consumer = FakeKafkaConsumer()
        self.acked = 0

    async def ack(self) -> None:
        self.acked += 1


async def test_a_batch_failure_rewinds_every_partition_and_a_redelivery_stores_once():
    db, handler = FakeDb(), RecordingHandler()
    consumer = make_consumer(db, handler=handler)
    consumer.batch_retry_initial_delay = 0.001
    records = [record(event_json(f"e-{i}"), 10 + i, partition=i % 2) for i in range(6)]
    db.events.fail_next = [RuntimeError("a bug in the batch write")]
    msg = FakeMessage(records)
    await consumer._on_batch(None, msg)
    assert msg.acked == 0
    assert sorted(msg.consumer.seeks) == [(TopicPartition(TOPIC, 0), 10), (TopicPartition(TOPIC, 1), 11)]
    assert consumer.metrics.registry.get_sample_value("newnormal_consumer_batch_failures_total", {"topic": TOPIC}) == 1
    assert db.events.docs == {} and consumer.consecutive_failures == 1
    again = FakeMessage(records)
    await consumer._on_batch(None, again)
    assert again.acked == 1 and consumer.consecutive_failures == 0
    assert sorted(d["id"] for d in db.events.docs.values()) == [f"e-{i}" for i in range(6)]
    assert sorted(k[1] for k in handler.new) == [f"e-{i}" for i in range(6)]


@pytest.mark.parametrize("abandoned", [
    WriteExpired("feedback_rollup_journal: write outlived its lease before: insert into events"),
    WriteContended("training_states: documents kept changing under this write"),
], ids=["outlived its lease", "lost its compare-and-set"])
async def test_a_write_abandoned_for_the_databases_sake_is_redelivered_never_dead_lettered(abandoned):
    """The ledger stops a write during a database outage longer than its lease (WriteExpired), or when other
    writers keep changing its documents (WriteContended): the batch is not acknowledged and comes again; no valid
    event goes to the dead-letter topic as `processing_failed`."""
    publisher, handler = FakePublisher(), RecordingHandler()
    failing = [abandoned]

    async def outage_then_ok(batch: Batch) -> None:
        if failing:
            raise failing.pop()
        await handler(batch)

    consumer = make_consumer(publisher=publisher, handler=outage_then_ok)
    consumer.batch_retry_initial_delay = 0.001
    records = [record(event_json(f"e-{i}"), 20 + i) for i in range(3)]
    first = FakeMessage(records)
    await consumer._on_batch(None, first)
    assert first.acked == 0 and first.consumer.seeks == [(TopicPartition(TOPIC, 0), 20)] and publisher.sent == []
    again = FakeMessage(records)
    await consumer._on_batch(None, again)
    assert again.acked == 1 and publisher.sent == [] and sorted(k[1] for k in handler.applied) == ["e-0", "e-1", "e-2"]


async def test_a_transient_database_error_in_prepare_is_the_batchs_not_the_records():
    def flaky(event: Event) -> Event:
        raise AutoReconnect("db gone")

    consumer = make_consumer()
    consumer.prepare = flaky
    with pytest.raises(AutoReconnect):
        await consumer.process([record(event_json("e-1"), 0)])


async def test_backoff_after_consecutive_batch_failures_is_bounded_and_honours_stopping():
    db = FakeDb()
    consumer = make_consumer(db)
    consumer.batch_retry_initial_delay, consumer.batch_retry_max_delay = 0.01, 0.02
    for _ in range(5):
        db.events.fail_next = [RuntimeError("bug")]
        await asyncio.wait_for(consumer._on_batch(None, FakeMessage([record(event_json("e-1"), 0)])), 1)
    assert consumer.consecutive_failures == 5
    consumer.consecutive_failures = 10**6  # days of failures: the delay stays bounded, its computation too
    db.events.fail_next = [RuntimeError("bug")]
    await asyncio.wait_for(consumer._on_batch(None, FakeMessage([record(event_json("e-1"), 0)])), 1)
    consumer.batch_retry_max_delay = 3600
    consumer.stopping.set()
    db.events.fail_next = [RuntimeError("bug")]
    await asyncio.wait_for(consumer._on_batch(None, FakeMessage([record(event_json("e-1"), 0)])), 1)


async def test_binary_mode_headers_are_scrubbed_like_the_value():
    publisher = FakePublisher()
    consumer = make_consumer(publisher=publisher, dead_letter_scrub=lambda v: v.replace(b"1103702071927", b"[ID]"))
    binary = ConsumerRecord(topic=TOPIC, partition=0, offset=0, timestamp=0, timestamp_type=0, key=b"dga",
                            value=b"not json", checksum=None, serialized_key_size=3, serialized_value_size=8,
                            headers=(("ce_specversion", b"1.0"), ("ce_subject", b"citizen 1103702071927"),
                                     ("ce_id", b"b-1"), ("ce_source", b"/agencies/dga/hr"),
                                     ("ce_type", b"training.target.set"), ("ce_agency", b"dga")))
    await consumer.process([binary])
    [(_, r)] = publisher.sent
    assert _header(r, "ce_subject") == "citizen [ID]"
    assert not any(b"1103702071927" in (v or b"") for _, v in r.headers)


async def test_the_handler_writes_the_audit_records_of_its_own_types_and_the_consumer_those_of_the_others():
    """`handler_audits`: a type whose audit record is the record of the service's own write path (training's
    completions) reaches the handler unstored, in record order among the others; the consumer stores the other
    types' records first, and refuses the conflicting re-sends of both kinds itself."""
    db, seen = FakeDb(), []
    own = "training.course.completion_voided"

    async def handler(batch: Batch) -> None:
        seen.append([(e.id, e.type == own, e.key in batch.new_keys) for e in batch.events])
        mine = [e for e in batch.events if e.type == own]
        try:
            await db.events.insert_many([e.to_document() for e in mine], ordered=False)
            batch.new_keys.update(e.key for e in mine)
        except BulkWriteError as exc:  # duplicates: the keys stored first are the others
            dup = {err["index"] for err in exc.details["writeErrors"]}
            batch.new_keys.update(e.key for i, e in enumerate(mine) if i not in dup)

    voided = {"agency": "dga", "voided_source": "/agencies/dga/hr", "voided_id": "c-1"}
    consumer = make_consumer(db, handler=handler, handler_audits={own})
    records = [record(event_json("t-1"), 0), record(event_json("v-1", type=own, data=voided), 1),
               record(event_json("t-2"), 2)]
    await consumer.process(records)
    assert seen == [[("t-1", False, True), ("v-1", True, False), ("t-2", False, True)]]
    assert counter(consumer, "stored") == 3
    # Again, with a conflicting re-send of t-1: the consumer refuses it; the others are duplicates.
    await consumer.process([record(event_json("t-1", data=dict(GOOD, headcount=7)), 3), records[1], records[2]])
    assert seen[-1] == [("v-1", True, False), ("t-2", False, False)]
    assert counter(consumer, "stored") == 3 and counter(consumer, "duplicate") == 2
    assert sorted(d["id"] for d in db.events.docs.values()) == ["t-1", "t-2", "v-1"]
    # A re-send of v-1 with other content reaches the handler, which stores nothing new; the consumer refuses it
    # after the handler returns, even when its first look at the stored records fails (the batch is retried).
    changed = record(event_json("v-1", type=own, data=dict(voided, voided_id="c-2")), 6)
    db.events.fail_find = [ServerSelectionTimeoutError("no server")]
    await consumer.process([changed, record(event_json("v-2", type=own, data=voided), 7)])
    # The retry sees v-2 as stored first already: the keys of every attempt are kept.
    assert seen[-2:] == [[("v-1", True, False), ("v-2", True, False)], [("v-1", True, False), ("v-2", True, True)]]
    (_, letter) = consumer.publisher.sent[-1]  # the first is t-1's
    assert len(consumer.publisher.sent) == 2
    assert _header(letter, "dlq-reason") == "id_conflict" and json.loads(letter.value)["id"] == "v-1"
    assert counter(consumer, "stored") == 4
    assert consumer.metrics.registry.get_sample_value("newnormal_events_id_conflicts_total", {"topic": TOPIC}) == 2
    assert [d["data"]["voided_id"] for d in db.events.docs.values() if d["id"] == "v-1"] == ["c-1"]


async def test_a_consumer_given_no_scrub_still_redacts_personal_data_in_every_part_of_its_dead_letters():
    """Every topic's dead letters (roadmap's and the notifier's too, which name no scrub of their own): the value,
    a binary-mode header and the key are redacted by the generic scrub, and the reason stays."""
    publisher = FakePublisher()
    consumer = EventConsumer(topic=TOPIC, group="test", handler=RecordingHandler(), db=FakeDb(),  # type: ignore[arg-type]
                             publisher=publisher, metrics=PlatformMetrics(CollectorRegistry(), "test"),  # type: ignore[arg-type]
                             settings=ServiceSettings(kafka_consumer_group_prefix="t"))
    pii = b"081-234-5678 somchai.probe@example.co.th 1-1037-02071-92-7"
    not_an_event = record(b'{"hello": "world", "note": "' + pii + b'"}', 0)
    binary = ConsumerRecord(topic=TOPIC, partition=0, offset=1, timestamp=0, timestamp_type=0, key=b"dga " + pii,
                            value=b"<x>" + pii + b"</x>", checksum=None, serialized_key_size=3, serialized_value_size=8,
                            headers=(("ce_specversion", b"1.0"), ("ce_subject", pii), ("ce_id", b"b-1"),
                                     ("ce_source", b"/agencies/dga/hr"), ("ce_type", b"training.target.set"),
                                     ("ce_agency", b"dga"), ("content-type", b"application/xml")))
    refused = record(event_json("h-3", subject=pii.decode()), 2)  # a valid event the handler refuses: re-serialised
    await consumer.process([not_an_event, binary, refused])
    assert len(publisher.sent) == 3
    for _, letter in publisher.sent:
        parts = [letter.value, letter.key or b"", *(v or b"" for _, v in letter.headers)]
        assert not any(s in part for part in parts for s in (b"081-234-5678", b"somchai.probe", b"1-1037-02071-92-7"))
        assert _header(letter, "dlq-reason")
