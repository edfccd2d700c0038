"""The pipelined consumer over in-memory fakes: a batch is decoded while the one before it is written, written only
once that one is stored and committed, and its offsets are committed only after it is stored. No commit ever passes
over a batch that was not stored: a failed batch rewinds, and the batch fetched behind it is dropped and comes again.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pymongo.errors import AutoReconnect
from support import poll
from test_consumer_isolation import TOPIC, FakeDb, event_json, make_consumer, record

from services.common.consumer import Batch
from services.common.ledger import WriteExpired

P0, P1, P2 = (TopicPartition(TOPIC, p) for p in range(3))


class PipelineConsumer(AIOKafkaConsumer):
    """A Kafka consumer as the subscriber hands it over (the real class, so the pipelined path runs), that records
    commits and seeks instead of talking to a broker."""

    def __init__(self, log: list) -> None:  # no broker: the parent's state is never used
        self.log = log
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def commit(self, offsets=None) -> None:
        assert offsets is not None, "a pipelined batch commits its own offsets, never the consumer's position"
        self.commits.append(dict(offsets))
        self.log.append(("commit", dict(offsets)))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    def highwater(self, partition: TopicPartition) -> int:
        return 0


class Message:
    def __init__(self, records, consumer: PipelineConsumer) -> None:
        self.raw_message = tuple(records)
        self.consumer = consumer

    async def ack(self) -> None:  # never called on this path: commits name their offsets
        raise AssertionError("ack() commits the consumer's position, which may be past an unstored batch")


class GatedHandler:
    """Applies a batch only when its gate opens; records what it applied, and fails a batch on request."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()
        self.entered: list[str] = []

    def gate(self, first_id: str) -> asyncio.Event:
        return self.gates.setdefault(first_id, asyncio.Event())

    async def __call__(self, batch: Batch) -> None:
        first = batch.events[0].id
        self.entered.append(first)
        await self.gate(first).wait()
        if first in self.fail:
            raise WriteExpired("a write outlived its lease")  # the batch's failure, not a record's: it comes again
        self.log.append(("stored", [e.id for e in batch.events]))


def setup():
    log: list = []
    handler = GatedHandler(log)
    consumer = make_consumer(FakeDb(), handler=handler)
    consumer.batch_retry_initial_delay = 0.001
    decoded: list[str] = []
    original = consumer._decode

    def counting(rec):
        decoded.append(rec.value.decode())
        return original(rec)

    consumer._decode = counting  # type: ignore[method-assign]
    return log, handler, consumer, decoded, PipelineConsumer(log)


def batch(ids: list[str], partition: int, first_offset: int, kafka: PipelineConsumer) -> Message:
    return Message([record(event_json(i), first_offset + n, partition) for n, i in enumerate(ids)], kafka)


async def test_the_next_batch_is_decoded_while_one_is_written_and_each_commits_its_own_offsets_after_it_is_stored():
    log, handler, consumer, decoded, kafka = setup()
    await consumer._on_batch(None, batch(["a-1", "a-2"], 0, 10, kafka))  # returns while a-* is being written
    await poll(lambda: handler.entered == ["a-1"])
    second = asyncio.create_task(consumer._on_batch(None, batch(["b-1", "b-2"], 1, 40, kafka)))
    await poll(lambda: len(decoded) == 4)  # b-* decoded while a-* waits on the database
    assert kafka.commits == [] and handler.entered == ["a-1"], "b-* is written only after a-* is stored"
    handler.gate("a-1").set()
    await second  # a-* stored and committed; b-* being written
    handler.gate("b-1").set()
    await consumer.drain(timeout=5)
    assert log == [("stored", ["a-1", "a-2"]), ("commit", {P0: 12}), ("stored", ["b-1", "b-2"]), ("commit", {P1: 42})]
    assert consumer.batches_committed == 2


async def test_a_failed_batch_rewinds_and_the_batch_fetched_behind_it_is_dropped_then_both_come_again():
    log, handler, consumer, decoded, kafka = setup()
    handler.fail.add("a-1")
    await consumer._on_batch(None, Message([record(event_json("a-1"), 10, 0), record(event_json("a-2"), 20, 1)], kafka))
    behind = Message([record(event_json("b-1"), 11, 0), record(event_json("b-2"), 70, 2)], kafka)
    second = asyncio.create_task(consumer._on_batch(None, behind))
    await poll(lambda: len(decoded) == 4)
    handler.gate("a-1").set()
    await second
    # a-* rewound partitions 0 and 1 to its first offsets; b-* dropped: partition 2 back to its first offset, and
    # partition 0 kept where a-* put it (before b-1, never past a-1)
    assert sorted(kafka.seeks) == [(P0, 10), (P0, 10), (P1, 20), (P2, 70)]
    assert kafka.commits == [] and not [entry for entry in log if entry[0] == "stored"]
    assert handler.entered == ["a-1"], "the batch behind a failed one is never written"
    # Redelivered: both stored and committed in order.
    handler.fail.clear()
    handler.gate("b-1").set()
    await consumer._on_batch(None, Message([record(event_json("a-1"), 10, 0), record(event_json("a-2"), 20, 1)], kafka))
    await consumer._on_batch(None, behind)
    await consumer.drain(timeout=5)
    assert [entry for entry in log if entry[0] == "commit"] == [("commit", {P0: 11, P1: 21}), ("commit", {P0: 12, P2: 71})]


async def test_a_batch_whose_decoding_fails_as_a_whole_comes_again_after_the_one_before_it_is_committed():
    log, handler, consumer, decoded, kafka = setup()
    await consumer._on_batch(None, batch(["a-1"], 0, 10, kafka))
    await poll(lambda: handler.entered == ["a-1"])
    original = consumer._decode

    def database_gone(rec):  # a transient error escapes a record's isolation: the batch's, not the record's
        if b"b-1" in rec.value:
            raise AutoReconnect("db gone")
        return original(rec)

    consumer._decode = database_gone  # type: ignore[method-assign]
    second = asyncio.create_task(consumer._on_batch(None, batch(["b-1"], 0, 11, kafka)))
    handler.gate("a-1").set()
    await second
    assert log == [("stored", ["a-1"]), ("commit", {P0: 11})]
    assert kafka.seeks == [(P0, 11)], "b-1 comes again; a-1 is not redelivered"


async def test_drain_lets_the_batch_being_written_commit_before_the_consumer_closes():
    log, handler, consumer, decoded, kafka = setup()
    await consumer._on_batch(None, batch(["a-1"], 0, 5, kafka))
    await poll(lambda: handler.entered == ["a-1"])
    draining = asyncio.create_task(consumer.drain(timeout=5))
    handler.gate("a-1").set()
    await draining  # returns only once the batch is stored and committed: nothing else awaits the write meanwhile
    assert log == [("stored", ["a-1"]), ("commit", {P0: 6})]


async def test_the_redelivery_fetched_after_a_failed_batch_rewound_is_fetched_again_not_lost():
    log, handler, consumer, decoded, kafka = setup()
    handler.fail.add("a-1")
    handler.gate("a-1").set()
    await consumer._on_batch(None, batch(["a-1", "a-2"], 0, 10, kafka))
    await poll(lambda: kafka.seeks == [(P0, 10)])  # failed and rewound before anything else was fetched
    handler.fail.clear()
    # The next fetch starts at the rewound offset: the same records, with the next ones.
    redelivered = batch(["a-1", "a-2", "b-1"], 0, 10, kafka)
    await consumer._on_batch(None, redelivered)
    assert kafka.seeks == [(P0, 10), (P0, 10)], "handled behind the failure: dropped, and rewound to be fetched again"
    await consumer._on_batch(None, redelivered)
    await consumer.drain(timeout=5)
    assert log == [("stored", ["a-1", "a-2", "b-1"]), ("commit", {P0: 13})]
