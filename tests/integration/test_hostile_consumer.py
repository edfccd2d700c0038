"""Hostile records on every topic, over the real broker and database: each bad record costs only itself.

Every test gets its own broker (topics start empty), so dead-letter topics can be counted exactly.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from support import cloudevent, db_of, header, poll, produce, read_topic, running

from services.common import processes as px
from services.common.app import Runtime, create_service_app
from services.common.consumer import Batch
from services.common.settings import ServiceSettings
from services.contracts import topics
from services.feedback.main import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.roadmap.main import create_app as create_roadmap
from services.roadmap.settings import RoadmapSettings
from services.training.main import create_app as create_training
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration

LOGS = Path(__file__).resolve().parents[2] / ".data" / "test-logs"
STRUCTURED = [("content-type", b"application/cloudevents+json")]
NID = "1103702071927"  # checksum-valid Thai national ID
PHONE = "081-234-5678"
DEEP = b"[" * 50_000 + b"]" * 50_000  # the reported record: 100 kB, over the 64 KiB event limit
DEEP_SMALL = b"[" * 30_000 + b"]" * 30_000  # under the limit: it reaches the JSON reader (RecursionError territory)


@pytest.fixture
def kafka_server():
    """A broker per test (overrides the module-wide one): dead-letter topics start empty, counts are exact."""
    port = px.free_port()
    proc = px.tansu(port, LOGS).start()
    try:
        px.wait_until(lambda: px.port_open(port), 30, "tansu", proc=proc)
        yield {"bootstrap": f"127.0.0.1:{port}", "port": port, "proc": proc}
    finally:
        proc.stop()


@pytest.fixture
def kafka_bootstrap(kafka_server) -> str:
    return kafka_server["bootstrap"]


def structured(event: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (event["agency"].encode(), json.dumps(event, ensure_ascii=False).encode(), STRUCTURED)


def binary(data: bytes, eid: str, type_: str, agency: str = "dga") -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (agency.encode(), data, [("ce_specversion", b"1.0"), ("ce_id", eid.encode()),
                                    ("ce_source", f"/agencies/{agency}/direct".encode()), ("ce_type", type_.encode()),
                                    ("ce_agency", agency.encode()), ("content-type", b"application/json")])


async def dlq_records(settings, topic: str, n: int) -> list[Any]:
    async def enough():
        records = await read_topic(settings.kafka_bootstrap_servers, topics.dlq(topic))
        return records if len(records) >= n else None

    return await poll(enough, timeout=40, what=f"{n} dead letters on {topics.dlq(topic)}")


async def _eq(awaitable, expected):
    return (await awaitable) == expected


async def metric(client, name: str, **labels) -> float:
    text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- feedback: the reported failure, exactly -------------------------------------------------------
def response(i: int, **extra: Any) -> dict[str, Any]:
    body = {"agency": "dga", "service_name": "ต่ออายุใบอนุญาต", "channel": ["online_web", "walk_in", "call_center"][i % 3],
            "age_group": ["18_24", "45_59", "60_plus"][i % 3], "satisfaction": 1 + i % 5,
            "tech_difficulty": ["none", "some", "severe"][i % 3], "aware_of_digital_channels": bool(i % 2),
            "submitted_at": f"2026-03-{1 + i % 28:02d}T10:00:00+07:00"}
    body.update(extra)
    return body


async def test_the_63_record_mix_on_feedback_stores_all_60_valid_once_and_dead_letters_3(settings_for):
    settings = settings_for(FeedbackSettings)
    app = create_feedback(settings)
    valid = [cloudevent("feedback.response.submitted", response(i), agency="dga", source="/agencies/dga/kiosk")
             for i in range(60)]
    overflow = cloudevent("feedback.response.submitted",
                          response(60, age_group=None, birth_year=1990, submitted_at="9999-12-31T23:00:00-12:00"),
                          agency="dga", source="/agencies/dga/kiosk")
    personal = cloudevent("feedback.response.submitted",
                          response(61, age_group=None, birth_year=1800, comment=f"เลขบัตร {NID} โทร {PHONE} ช่วยด้วย"),
                          agency="dga", source="/agencies/dga/kiosk")
    for e in (overflow, personal):
        e["data"] = {k: v for k, v in e["data"].items() if v is not None}
    records = [structured(e) for e in valid[:20]] + [(b"dga", DEEP, STRUCTURED)] + [structured(e) for e in valid[20:40]] \
        + [structured(overflow)] + [structured(e) for e in valid[40:]] + [structured(personal)]
    assert len(records) == 63
    db = db_of(settings)
    try:
        async with running(app) as client:
            await produce(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, records)  # one key: one partition
            await poll(lambda: _eq(db.events.count_documents({}), 60), timeout=60, what="60 responses stored")
            dead = await dlq_records(settings, topics.FEEDBACK_EVENTS, 3)
            assert len(dead) == 3
            stored_ids = sorted([d["id"] async for d in db.events.find({}, {"id": 1})])
            assert stored_ids == sorted(e["id"] for e in valid)
            by_offset = {int(header(r, "dlq-original-offset")): r for r in dead}
            assert sorted(by_offset) == [20, 41, 62]
            assert header(by_offset[20], "dlq-reason") == "event_too_large"
            # A year-9999 submitted_at is refused by the date rule (issue 17) before prepare could overflow on it.
            assert header(by_offset[41], "dlq-reason") == "date_out_of_range"
            assert header(by_offset[62], "dlq-reason") == "invalid_data"
            for r in dead:
                assert header(r, "dlq-original-topic") == topics.FEEDBACK_EVENTS
                detail = header(r, "dlq-detail") or ""
                assert NID not in detail and "1800" not in detail and "1990" not in detail
            # The service's scrub reached the dead letters: the comment redacted, the birth year dropped.
            for offset in (41, 62):
                value = by_offset[offset].value.decode()
                assert NID not in value and PHONE not in value and "birth_year" not in value
            assert "ช่วยด้วย" in by_offset[62].value.decode()  # the rest of the comment kept
            # The consumer is alive: a later valid record is stored.
            later = cloudevent("feedback.response.submitted", response(99), agency="dga", source="/agencies/dga/kiosk")
            await produce(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, [structured(later)])
            await poll(lambda: db.events.count_documents({"id": later["id"]}), timeout=30, what="later record stored")
            assert await db.events.count_documents({}) == 61
            assert await metric(client, "newnormal_dead_letter_records_total", topic=topics.FEEDBACK_EVENTS) == 3
            assert await metric(client, "newnormal_consumer_batch_failures_total", topic=topics.FEEDBACK_EVENTS) == 0
    finally:
        await db.client.close()


# --- roadmap and training: hostile mixes ------------------------------------------------------------
def milestone(mid: str, **extra: Any) -> dict[str, Any]:
    body = {"milestone_id": mid, "title_th": "ระบบงานดิจิทัล", "workstream": "roadmap_governance", "owner_agency": "dga",
            "due_date": "2026-09-30", "weight": 2, "depends_on": []}
    body.update(extra)
    return body


def hostile_roadmap() -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    planned = "roadmap.milestone.planned"
    deep_data = json.dumps(milestone("H-deep")).encode()[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    return [
        (b"dga", DEEP, STRUCTURED),                                                          # nested 50,000 deep
        (b"dga", DEEP_SMALL, STRUCTURED),                                                    # nested 30,000 deep
        (b"dga", b"[" * 33 + b"]" * 33, STRUCTURED),                                         # deeper than the limit
        binary(DEEP_SMALL, "H-bin-deep", planned),                        # binary mode, deep data
        (b"dga", deep_data, STRUCTURED),                                                     # deep inside an event
        (b"dga", b'{"id": "\xff\xfe\xfd", "type": "roadmap.milestone.planned"}', STRUCTURED),  # not UTF-8
        binary(b"\xff\xfe not utf-8", "H-bin-bytes", planned),                               # binary, not UTF-8 data
        (b"dga", json.dumps(milestone("H-ce")).encode(), [("ce_id", b"\xff\xfe"), ("ce_type", b"x")]),  # bad header
        structured(cloudevent(planned, milestone("H-type", weight="heavy"), agency="dga")),  # wrong type
        structured(cloudevent(planned, milestone("H-due", due_date="9999-99-99"), agency="dga")),  # no such date
        (b"dga", json.dumps(cloudevent(planned, milestone("H-nan"), agency="dga")).replace('"weight": 2', '"weight": NaN')
         .encode(), STRUCTURED),                                                             # a NaN
        (b"dga", json.dumps(cloudevent(planned, milestone("H-inf"), agency="dga")).replace('"weight": 2', '"weight": 1e400')
         .encode(), STRUCTURED),                                                             # a number that is infinity
        structured(cloudevent(planned, milestone("H-big", weight=10**40), agency="dga")),    # a huge integer
        (b"dga", json.dumps(cloudevent(planned, milestone("H-sur", title_th="ระบบ\ud800"), agency="dga")).encode(),
         STRUCTURED),                                                                        # an unpaired surrogate
        binary(json.dumps(milestone("H-bin-sur", title_th="\udfff")).encode(), "H-bin-sur", planned),  # same, binary
        (b"dga", json.dumps(cloudevent(planned, milestone("H-dup"), agency="dga")).replace(
            '"owner_agency": "dga"', '"owner_agency": "dga", "owner_agency": "rd"').encode(), STRUCTURED),  # a name twice
        binary(json.dumps(milestone("H-bin-dup")).replace('"weight": 2', '"weight": 2, "weight": 9').encode(),
               "H-bin-dup", planned),                                                        # same, binary
        (lambda r: (r[0], r[1], [*r[2], ("ce_source", b"/agencies/rd/direct")]))(           # a header twice
            binary(json.dumps(milestone("H-bin-twice")).encode(), "H-bin-twice", planned)),
        structured(cloudevent(planned, milestone("H-ext-obj"), agency="dga", trace={"a": 1})),  # no CloudEvents type
        structured(cloudevent(planned, milestone("H-time"), agency="dga", time="9999-12-31T23:00:00-12:00")),
        structured(cloudevent(planned, [1, 2, 3], agency="dga")),                            # data not an object
        (b"dga", b"null", STRUCTURED),
        (b"dga", b"", STRUCTURED),
    ]


async def test_hostile_mix_on_roadmap_events(settings_for):
    settings = settings_for(RoadmapSettings, watcher_enabled=False)
    app = create_roadmap(settings)
    planned = "roadmap.milestone.planned"
    valid = [cloudevent(planned, milestone(f"M-{i}"), agency="dga") for i in range(30)]
    valid.append(cloudevent(planned, milestone("M-ext"), agency="dga", seq=10**40))  # kept as its string
    # A real date the service cannot compute with (its deadline overflows): refused alone, by the handler today.
    far = cloudevent(planned, milestone("M-far", due_date="9999-12-31"), agency="dga")
    hostile = hostile_roadmap()
    records = [r for pair in zip(valid, hostile + [None] * len(valid)) for r in (structured(pair[0]), pair[1]) if r]
    records.insert(len(records) // 2, structured(far))
    assert len(records) == len(valid) + len(hostile) + 1
    db = db_of(settings)
    try:
        async with running(app) as client:
            await produce(settings.kafka_bootstrap_servers, topics.ROADMAP_EVENTS, records)
            dead = await dlq_records(settings, topics.ROADMAP_EVENTS, len(hostile) + 1)
            ids = [e["id"] for e in valid]
            await poll(lambda: _eq(db.events.count_documents({"id": {"$in": ids}}), len(valid)), timeout=40,
                       what="every valid event stored")
            assert len(dead) == len(hostile) + 1, "\n".join(map(str, _summary(dead)))
            assert len({(header(r, "dlq-original-partition"), header(r, "dlq-original-offset")) for r in dead}) == len(dead)
            # The handler's refusal keeps the event in the audit trail (received, not applied); a contract refusal not.
            [far_dead] = [r for r in dead if far["id"].encode() in r.value]
            # Issue 17: a due date outside the programme horizon is a contract refusal, no longer the handler's.
            assert (header(far_dead, "dlq-reason"), header(far_dead, "dlq-exception")) == ("date_out_of_range", None)
            assert await db.events.count_documents({"id": {"$nin": ids + [far["id"]]}}) == 0
            reasons = Counter(header(r, "dlq-reason") for r in dead)
            assert reasons["invalid_json"] >= 12 and reasons["invalid_data"] >= 4, reasons
            # Binary-mode data that is no JSON is refused as a structured record's value is, whatever the reason.
            for eid in ("H-bin-sur", "H-bin-dup"):
                [letter] = [r for r in dead if f'"{eid}"'.encode() in r.value]
                assert header(letter, "dlq-reason") == "invalid_json", (eid, header(letter, "dlq-reason"))
            # Not JSON numbers and not Unicode: refused in words, whichever mode carried them.
            for eid, words in (("H-nan", "NaN is not a JSON number"), ("H-inf", "range of a double"),
                               ("H-sur", "surrogate"), ("H-bin-sur", "surrogate"), ("H-dup", "same name twice"),
                               ("H-bin-dup", "same name twice"), ("H-bin-twice", "ce_source is sent more than once"),
                               ("H-ext-obj", "must be a string, a boolean or an integer")):
                [letter] = [r for r in dead if f'"{eid}"'.encode() in r.value]
                assert words in header(letter, "dlq-detail"), (eid, header(letter, "dlq-detail"))
            await _alive(settings, client, db, topics.ROADMAP_EVENTS,
                         cloudevent(planned, milestone("M-later"), agency="dga"))
            assert await metric(client, "newnormal_consumer_batch_failures_total") == 0
    finally:
        await db.client.close()


def _summary(dead: list[Any]) -> list[tuple[str | None, ...]]:
    return sorted((header(r, "dlq-original-offset"), header(r, "dlq-reason"), header(r, "dlq-exception"),
                   header(r, "dlq-detail")) for r in dead)


async def _alive(settings, client, db, topic: str, event: dict[str, Any]) -> None:
    await produce(settings.kafka_bootstrap_servers, topic, [structured(event)])
    await poll(lambda: db.events.count_documents({"id": event["id"]}), timeout=30, what="a later record stored")


def completion(i: int, **extra: Any) -> dict[str, Any]:
    body = {"agency": "dga", "learner_ref": f"emp-{i:04d}", "course_id": "DG-101", "competency": "digital_technology",
            "hours": 6, "completed_on": "2026-02-10", "passed": True}
    body.update(extra)
    return body


async def test_hostile_mix_on_training_events(settings_for):
    settings = settings_for(TrainingSettings, learner_hmac_secret="integration-secret-0123456789")
    app = create_training(settings)
    done = "training.course.completed"
    valid = [cloudevent(done, completion(i), agency="dga") for i in range(30)]
    valid += [cloudevent("training.target.set", {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569,
                                                 "headcount": 120 + i}, agency="dga") for i in range(5)]
    hostile = [
        (b"dga", DEEP_SMALL, STRUCTURED),
        binary(DEEP_SMALL, "T-bin-deep", done),
        (b"dga", b"\xc3\x28 not utf-8", STRUCTURED),
        structured(cloudevent(done, completion(900, learner_ref=NID), agency="dga")),      # a national ID as learner
        structured(cloudevent(done, completion(901, hours="six"), agency="dga")),          # wrong type
        structured(cloudevent(done, completion(902, completed_on="9999-12-32"), agency="dga")),
        (b"dga", json.dumps(cloudevent(done, completion(903), agency="dga")).replace('"hours": 6', '"hours": NaN')
         .encode(), STRUCTURED),
        structured(cloudevent(done, completion(904, score=10**40), agency="dga")),
        structured(cloudevent("training.target.set", {"agency": "dga", "competency": "digital_technology",
                                                      "fiscal_year": 10**40, "headcount": 1}, agency="dga")),
        structured(cloudevent(done, completion(905), agency="dga", time="9999-12-31T23:00:00-12:00")),
        structured(cloudevent(done, completion(907, agency="rd"), agency="dga")),          # agency mismatch
        structured(cloudevent("roadmap.milestone.planned", milestone("X"), agency="dga")),  # wrong topic
    ]
    records = [structured(e) for e in valid[:10]] + hostile[:7] + [structured(e) for e in valid[10:]] + hostile[7:]
    db = db_of(settings)
    try:
        async with running(app) as client:
            await produce(settings.kafka_bootstrap_servers, topics.TRAINING_EVENTS, records)
            dead = await dlq_records(settings, topics.TRAINING_EVENTS, len(hostile))
            ids = [e["id"] for e in valid]
            await poll(lambda: _eq(db.events.count_documents({"id": {"$in": ids}}), len(valid)), timeout=40,
                       what="every valid event stored")
            assert await db.events.count_documents({}) == len(valid)
            assert len(dead) == len(hostile)
            for r in dead:  # no dead letter carries the national ID, in its detail or (scrubbed) its value
                assert NID not in (header(r, "dlq-detail") or "") and NID.encode() not in r.value
            await _alive(settings, client, db, topics.TRAINING_EVENTS, cloudevent(done, completion(999), agency="dga"))
    finally:
        await db.client.close()


# --- dead letters Kafka refuses, batch failures ---------------------------------------------------
def generic_app(settings: ServiceSettings, handled: list[Batch] | None = None, scrub=None):
    runtime = Runtime(settings)

    async def handle(batch: Batch) -> None:
        if handled is not None:
            handled.append(batch)

    consumer = runtime.add_consumer(topic=topics.TRAINING_EVENTS, group="hostile-test", handler=handle,
                                    allowed_types=["training.target.set"], dead_letter_scrub=scrub)
    return create_service_app(runtime, title="test", description="test"), runtime, consumer


def target(i: int) -> dict[str, Any]:
    return cloudevent("training.target.set", {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569,
                                              "headcount": i}, agency="dga")


async def test_a_dead_letter_too_large_for_kafka_is_kept_in_mongodb_and_the_partition_moves_on(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform")
    app, _, _ = generic_app(settings)
    before, after = target(1), target(2)
    big = b'{"note": "token ' + b"x" * 1_200_000 + b'"}'  # cut to 64 KiB for its dead letter, then scrubbed
    # Headers are scrubbed and kept (each at most 64 KiB): these make the dead letter over the publisher's 1 MiB.
    padded = [*STRUCTURED, *((f"x-pad-{i}", b"p" * 50_000) for i in range(24))]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", max_request_size=4_000_000)
    db = db_of(settings)
    try:
        async with running(app) as client:
            await producer.start()
            for key, value, headers in [structured(before), (b"dga", big, padded), structured(after)]:
                await (await producer.send(topics.TRAINING_EVENTS, value, key=key, headers=headers))
            await poll(lambda: _eq(db.events.count_documents({"id": {"$in": [before["id"], after["id"]]}}), 2),
                       timeout=40, what="the records around the oversized one stored")
            doc = await poll(lambda: db.dead_letters.find_one({}), timeout=20, what="dead letter kept in MongoDB")
            assert doc["reason"] == "event_too_large" and doc["cause"] == "refused"
            assert doc["topic"] == topics.TRAINING_EVENTS and doc["offset"] == 1
            assert doc["value_bytes"] <= 64 * 1024 and doc["value"].startswith(b'{"note": "token xxx')
            assert not doc["value_truncated"]
            headers = {name: bytes(v) for name, v in doc["headers"]}
            assert headers["dlq-reason"] == b"event_too_large" and headers["dlq-truncated-from-bytes"] == str(len(big)).encode()
            assert await read_topic(settings.kafka_bootstrap_servers, topics.dlq(topics.TRAINING_EVENTS), timeout=2) == []
            assert await metric(client, "newnormal_dead_letter_fallback_records_total", cause="refused") == 1
            assert await metric(client, "newnormal_dead_letter_records_total", reason="event_too_large") == 1
    finally:
        await producer.stop()
        await db.client.close()


class FailingOnce:
    """A test wrapper of the database: the first insert into `events` raises a bug (not a transient error)."""

    def __init__(self, db) -> None:
        self._db = db
        self.failures = 0
        outer = self

        class Events:
            def __getattr__(self, name):
                return getattr(db.events, name)

            async def insert_many(self, docs, **kwargs):
                if outer.failures == 0 and any(d["id"].startswith("fail-") for d in docs):
                    outer.failures += 1
                    raise RuntimeError("a bug in the batch write")
                return await db.events.insert_many(docs, **kwargs)

        self.events = Events()

    def __getattr__(self, name):
        return getattr(self._db, name)


async def test_a_batch_failure_rewinds_so_a_later_commit_never_skips_it(settings_for):
    settings = settings_for(ServiceSettings, service_name="platform", kafka_topic_partitions=1)
    handled: list[Batch] = []
    app, _, consumer = generic_app(settings, handled)
    consumer.db = wrapper = FailingOnce(consumer.db)
    consumer.batch_retry_initial_delay = 0.2
    first = [dict(target(i), id=f"fail-{i}-{uuid.uuid4().hex[:6]}") for i in range(5)]
    later = [target(100 + i) for i in range(5)]
    db = db_of(settings)
    try:
        async with running(app) as client:
            await produce(settings.kafka_bootstrap_servers, topics.TRAINING_EVENTS, [structured(e) for e in first])
            await poll(lambda: _true(wrapper.failures == 1), timeout=30, what="the batch failed once")
            await produce(settings.kafka_bootstrap_servers, topics.TRAINING_EVENTS, [structured(e) for e in later])
            ids = [e["id"] for e in first + later]
            await poll(lambda: _eq(db.events.count_documents({"id": {"$in": ids}}), 10), timeout=40, what="all stored")
            await poll(lambda: _committed_is(settings, consumer.group, 10), timeout=20, what="offsets committed to the end")
            assert await metric(client, "newnormal_consumer_batch_failures_total", topic=topics.TRAINING_EVENTS) == 1
            assert await metric(client, "newnormal_consumer_records_total", outcome="stored") == 10
            # Each event handled as new exactly once, although its first batch failed.
            new = Counter(k[1] for b in handled for k in b.new_keys)
            assert new == Counter(ids)
    finally:
        await db.client.close()


async def _true(value: bool) -> bool:
    return value


async def _committed_is(settings, group: str, expected: int) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topics.TRAINING_EVENTS, 0)
        return await consumer.committed(tp) == expected
    finally:
        await consumer.stop()
