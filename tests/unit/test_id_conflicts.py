"""Same (source, id), different content is a conflict: the content hash, the consumer and the HTTP batch intake,
over small in-memory fakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import bson
import pytest
from aiokafka.structs import ConsumerRecord
from bson.codec_options import CodecOptions
from prometheus_client import CollectorRegistry
from test_consumer_isolation import FakeCollection as IsolationCollection

from services.common.auth import Principal, Role
from services.common.consumer import Batch, EventConsumer, content_conflicts
from services.common.http_ingest import Ingestor
from services.common.metrics import PlatformMetrics
from services.common.settings import ServiceSettings
from services.contracts.envelope import CONTENT_HASH_FIELD, content_hash, document_id, make_event

TOPIC = "training.events"
TARGET = {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569, "headcount": 120}
T0 = datetime(2026, 3, 1, 3, 0, 0, 123456, tzinfo=UTC)


def target(id: str = "t-1", headcount: int = 120, time: datetime = T0, **kw: Any):
    return make_event("training.target.set", dict(TARGET, headcount=headcount), agency="dga", source="/agencies/dga/hr",
                      id=id, time=time, **kw)


def stored_form(doc: dict[str, Any]) -> dict[str, Any]:
    """A document as MongoDB gives it back: BSON round trip (dates to the millisecond, tz-aware client)."""
    return bson.decode(bson.encode(doc), CodecOptions(tz_aware=True))


# --- the content hash ------------------------------------------------------------------------------
def test_content_ignores_transport_and_time_formatting() -> None:
    base = target().content_hash()
    bangkok = timezone(timedelta(hours=7))
    assert target(time=T0.astimezone(bangkok)).content_hash() == base  # +07:00 vs Z
    assert target(time=T0.replace(microsecond=123999)).content_hash() == base  # below BSON's millisecond
    assert target(partitionkey="other").content_hash() == base  # the Kafka key is transport
    assert target(time=T0 + timedelta(days=3)).content_hash() == base  # a re-send's new stamp: not content


@pytest.mark.parametrize("change", [
    {"headcount": 121}, {"subject": "x"}, {"id_type": "training.course.completed"},
])
def test_content_differs_for_any_fact(change: dict[str, Any]) -> None:
    if "id_type" in change:  # another type with the same id: compare the stored forms' hashes directly
        other = target().to_document() | {"type": change["id_type"]}
        assert content_hash(other) != target().content_hash()
        return
    assert target(**change).content_hash() != target().content_hash()


def test_stored_record_hashes_like_the_event_with_or_without_the_kept_hash() -> None:
    event = target()
    doc = stored_form(event.to_document())
    assert doc[CONTENT_HASH_FIELD] == event.content_hash()
    del doc[CONTENT_HASH_FIELD]  # an audit record written before records kept their hash
    assert content_hash(doc) == event.content_hash()


# --- fakes -----------------------------------------------------------------------------------
class FakeCollection(IsolationCollection):
    """The isolation tests' fake, storing what MongoDB gives back (BSON round trip) and counting audit queries."""

    def __init__(self) -> None:
        super().__init__()
        self.finds = 0

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> None:
        await super().insert_many([stored_form(d) for d in docs], ordered)

    def find(self, query: dict[str, Any], projection: dict[str, Any] | None = None) -> Any:
        self.finds += 1
        return super().find(query, projection)


class FakeDb:
    def __init__(self) -> None:
        self.events = FakeCollection()
        self.dead_letters = FakeCollection()


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def send_raw_many(self, topic: str, records: list[Any]) -> list[None]:
        self.sent.extend((topic, r) for r in records)
        return [None] * len(records)

    async def publish_many(self, events: list[Any]) -> list[None]:
        self.sent.extend(("events", e) for e in events)
        return [None] * len(events)


class Applier:
    """Applies targets as the training service does: last applied wins (so a conflict must never reach it)."""

    def __init__(self) -> None:
        self.targets: dict[str, int] = {}
        self.times: list[datetime] = []
        self.applied = 0

    async def __call__(self, batch: Batch) -> None:
        for event in batch.events:
            self.targets[event.id] = event.data.headcount
            self.times.append(event.time)
            self.applied += 1


def consumer(db: FakeDb, publisher: FakePublisher, handler: Applier) -> EventConsumer:
    c = EventConsumer(topic=TOPIC, group="test", handler=handler, db=db, publisher=publisher,  # type: ignore[arg-type]
                      metrics=PlatformMetrics(CollectorRegistry(), "test"), settings=ServiceSettings())
    c.dead_letter_retry_initial_delay = 0.001
    return c


def record(event: Any, offset: int) -> ConsumerRecord:
    msg = event.to_kafka()
    return ConsumerRecord(topic=TOPIC, partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"dga",
                          value=msg.value, checksum=None, serialized_key_size=3, serialized_value_size=len(msg.value),
                          headers=tuple(msg.headers.items()))


def sample(c: EventConsumer, name: str, **labels: str) -> float:
    return c.metrics.registry.get_sample_value(name, {"topic": TOPIC, **labels}) or 0.0


def dlq_reasons(publisher: FakePublisher) -> list[str]:
    return [dict(r.headers)["dlq-reason"].decode() for topic, r in publisher.sent if topic == f"{TOPIC}.dlq"]


# --- the consumer --------------------------------------------------------------------------------
async def test_redelivery_with_the_same_content_is_a_duplicate() -> None:
    db, pub, handler = FakeDb(), FakePublisher(), Applier()
    c = consumer(db, pub, handler)
    await c.process([record(target(), 0)])
    bangkok = timezone(timedelta(hours=7))
    await c.process([record(target(time=T0.astimezone(bangkok), partitionkey="x"), 1)])  # re-sent, other form
    assert len(db.events.docs) == 1 and dlq_reasons(pub) == [] and handler.targets == {"t-1": 120}
    assert sample(c, "newnormal_consumer_records_total", outcome="duplicate") == 1
    assert sample(c, "newnormal_events_id_conflicts_total") == 0


async def test_same_id_other_content_is_dead_lettered_and_the_first_stands() -> None:
    db, pub, handler = FakeDb(), FakePublisher(), Applier()
    c = consumer(db, pub, handler)
    await c.process([record(target(headcount=120), 0)])
    await c.process([record(target(headcount=999), 1), record(target(id="t-2", headcount=5), 2)])
    assert handler.targets == {"t-1": 120, "t-2": 5}  # the conflict never reached the handler; its neighbour did
    assert dlq_reasons(pub) == ["id_conflict"]
    stored = db.events.docs[json.dumps(document_id("/agencies/dga/hr", "t-1"))]
    assert stored["data"]["headcount"] == 120
    assert sample(c, "newnormal_events_id_conflicts_total") == 1
    assert sample(c, "newnormal_dead_letter_records_total", reason="id_conflict") == 1
    assert db.events.finds == 1  # one query for the batch's already-stored keys, not one per event


async def test_a_conflict_with_an_event_first_stored_as_another_type_names_that_type() -> None:
    """The audit trail is shared by every topic: the same source and id first stored as another service's event
    says so (the type only, never the data); the same type says nothing more."""
    db, pub, handler = FakeDb(), FakePublisher(), Applier()
    first = stored_form(make_event("training.course.completion_voided", {"agency": "dga", "voided_source": "/agencies/dga/hr",
                                   "voided_id": "c-1"}, agency="dga", source="/agencies/dga/hr", id="t-1",
                                   time=T0).to_document())
    db.events.docs[json.dumps(first["_id"], sort_keys=True)] = first
    c = consumer(db, pub, handler)
    await c.process([record(target(), 0)])
    [(_, letter)] = pub.sent
    assert dict(letter.headers)["dlq-reason"] == b"id_conflict" and handler.targets == {}
    assert b"the first was a training.course.completion_voided event" in dict(letter.headers)["dlq-detail"]
    await c.process([record(target(id="t-2"), 1), record(target(id="t-2", headcount=1), 2)])
    assert b"the first was" not in dict(pub.sent[-1][1].headers)["dlq-detail"]


async def test_a_resend_with_a_new_time_is_applied_with_the_first_time() -> None:
    db, pub, handler = FakeDb(), FakePublisher(), Applier()
    c = consumer(db, pub, handler)
    await c.process([record(target(), 0)])
    await c.process([record(target(time=T0 + timedelta(days=100)), 1)])  # e.g. a re-run import stamps "now"
    assert dlq_reasons(pub) == [] and sample(c, "newnormal_consumer_records_total", outcome="duplicate") == 1
    assert [t.replace(microsecond=0) for t in handler.times] == [T0.replace(microsecond=0)] * 2


async def test_one_batch_holding_an_id_twice() -> None:
    db, pub, handler = FakeDb(), FakePublisher(), Applier()
    c = consumer(db, pub, handler)
    await c.process([record(target(), 0), record(target(), 1), record(target(headcount=7), 2)])
    assert handler.targets == {"t-1": 120} and dlq_reasons(pub) == ["id_conflict"]
    assert sample(c, "newnormal_consumer_records_total", outcome="duplicate") == 1
    assert sample(c, "newnormal_events_id_conflicts_total") == 1


async def test_audit_records_without_a_hash_are_compared_on_their_fields() -> None:
    db, pub, handler = FakeDb(), FakePublisher(), Applier()
    old = stored_form(target().to_document())
    del old[CONTENT_HASH_FIELD]
    db.events.docs[json.dumps(old["_id"], sort_keys=True)] = old
    c = consumer(db, pub, handler)
    await c.process([record(target(), 0)])
    assert dlq_reasons(pub) == []
    await c.process([record(target(headcount=1), 1)])
    assert dlq_reasons(pub) == ["id_conflict"] and handler.targets == {"t-1": 120}


async def test_content_conflicts_of_unknown_keys_is_empty() -> None:
    db = FakeDb()
    assert await content_conflicts(db.events, [target()]) == []
    assert await content_conflicts(db.events, []) == [] and db.events.finds == 1


# --- one HTTP request holding an id twice -------------------------------------------------------------
async def test_http_batch_lists_a_repeated_id_as_duplicate_or_conflict() -> None:
    pub = FakePublisher()
    intake = Ingestor(publisher=pub, metrics=PlatformMetrics(CollectorRegistry(), "test"),  # type: ignore[arg-type]
                      settings=ServiceSettings(), allowed_types={"training.target.set"})
    answer = await intake.ingest([target(), target(), target(headcount=9), target(id="t-2")],
                                 Principal("dga", Role.agency, "k"))
    body = json.loads(answer.body)
    assert answer.status_code == 202
    assert [a["index"] for a in body["accepted"]] == [0, 3]
    assert body["duplicates"] == [{"index": 1, "id": "t-1", "source": "/agencies/dga/hr", "duplicate_of": 0}]
    assert [(r["index"], r["reason"], r["conflicts_with"]) for r in body["rejected"]] == [(2, "id_conflict", 0)]
    assert len(pub.sent) == 2
