"""Kafka adapters: connection options, topic creation, the FastStream broker and a pipelined publisher."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    BrokerResponseError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from services.common.settings import ServiceSettings
from services.contracts import topics
from services.contracts.envelope import Event

log = logging.getLogger(__name__)


def _ssl_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile)


def aiokafka_options(settings: ServiceSettings) -> dict[str, Any]:
    """Connection options for raw aiokafka clients (admin, producer), matching the broker's."""
    opts: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                            "security_protocol": settings.kafka_security_protocol}
    ctx = _ssl_context(settings)
    if ctx is not None:
        opts["ssl_context"] = ctx
    if settings.kafka_security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
    return opts


def faststream_security(settings: ServiceSettings) -> BaseSecurity | None:
    ctx = _ssl_context(settings)
    if not settings.kafka_security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=ctx) if ctx else None
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    cls = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}[settings.kafka_sasl_mechanism]
    return cls(username=settings.kafka_sasl_username or "", password=password, ssl_context=ctx,
               use_ssl=settings.kafka_security_protocol == "SASL_SSL")


def make_broker(settings: ServiceSettings, middlewares: Sequence[Any] = ()) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=faststream_security(settings),
        client_id=settings.service_name,
        middlewares=tuple(middlewares),
        logger=logging.getLogger(f"faststream.{settings.service_name}"),
    )


async def ensure_topics(settings: ServiceSettings, names: Sequence[str] | None = None) -> None:
    """Create our topics (and their dead-letter topics) if they do not exist yet."""
    if not settings.kafka_create_topics:
        return
    names = list(names or topics.all_topics_with_dlq())
    admin = AIOKafkaAdminClient(**aiokafka_options(settings), client_id=f"{settings.service_name}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(n, settings.kafka_topic_partitions, settings.kafka_replication_factor)
                                           for n in missing])
            except TopicAlreadyExistsError:
                pass  # another replica won the race
            log.info("kafka topics created", extra={"topics": missing})
    finally:
        await admin.close()


class PublishError(RuntimeError):
    """Kafka did not acknowledge an event: the caller must not report it as accepted."""


class PublishRefused(PublishError):
    """Kafka refused the record for good (too large, invalid topic, not authorised): sending it again cannot help."""


# Refusals that no retry can change. Anything else (timeouts, lost connections, leader elections) may pass later.
_PERMANENT = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidTopicError,
              TopicAuthorizationFailedError)


class RawRecord(NamedTuple):
    """A record exactly as it is to be sent (the dead-letter path sends records, not events)."""

    value: bytes
    key: bytes | None
    headers: Sequence[tuple[str, bytes]]


def _classify(exc: BaseException) -> PublishError:
    # Outside Kafka's own errors, the client refusing a record (TypeError, ValueError...) refuses it every time.
    transient = isinstance(exc, TimeoutError | KafkaError) and not is_permanent(exc)
    error = (PublishError if transient else PublishRefused)(type(exc).__name__)
    error.__cause__ = exc
    return error


def is_permanent(exc: BaseException) -> bool:
    """True when a publish error is a refusal of this record rather than a passing outage."""
    if isinstance(exc, _PERMANENT):
        return True
    # Broker error codes say themselves whether a retry may succeed; client-side errors (KafkaTimeoutError,
    # ProducerClosed, ...) are not broker verdicts on the record and count as transient.
    return isinstance(exc, BrokerResponseError) and not exc.retriable


class EventPublisher:
    """Publishes events in CloudEvents structured mode, pipelined: all sends go out, then all acks are awaited."""

    def __init__(self, settings: ServiceSettings, on_published=None):
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._on_published = on_published

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **aiokafka_options(self.settings), client_id=f"{self.settings.service_name}-publisher",
            acks="all", linger_ms=5, request_timeout_ms=int(self.settings.publish_timeout_seconds * 1000),
            max_batch_size=256 * 1024,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def publish_many(self, events: Sequence[Event], topic: str | None = None) -> list[Exception | None]:
        """Send every event; return per-event None (acknowledged) or the error. Never raises for one event."""
        if self._producer is None:
            return [PublishError("publisher not started")] * len(events)
        futures: list[Any] = []
        for event in events:
            msg = event.to_kafka()
            key = msg.key.encode() if isinstance(msg.key, str) else msg.key
            try:
                fut = await self._producer.send(topic or event.event_type.topic, msg.value, key=key,
                                                headers=list(msg.headers.items()))
                futures.append(fut)
            except (TimeoutError, KafkaError) as exc:
                futures.append(exc)
        results: list[Exception | None] = []
        for event, fut in zip(events, futures):
            if isinstance(fut, Exception):
                results.append(PublishError(str(fut) or type(fut).__name__))
                continue
            try:
                await asyncio.wait_for(fut, self.settings.publish_timeout_seconds)
                results.append(None)
                if self._on_published:
                    self._on_published(topic or event.event_type.topic)
            except (TimeoutError, KafkaError) as exc:
                results.append(PublishError(str(exc) or type(exc).__name__))
        return results

    async def publish(self, event: Event, topic: str | None = None) -> None:
        [error] = await self.publish_many([event], topic)
        if error is not None:
            raise error

    async def send_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Send one record and wait for its ack; raises what `send_raw_many` would report."""
        [error] = await self.send_raw_many(topic, [RawRecord(value, key, headers)])
        if error is not None:
            raise error

    async def send_raw_many(self, topic: str, records: Sequence[RawRecord]) -> list[PublishError | None]:
        """Send records as given, pipelined; per record None (acknowledged), PublishRefused (Kafka refused it for
        good: retrying cannot help) or PublishError (may pass: the caller decides how long to retry). Never raises
        for one record. Errors carry the Kafka error's class name only, never the record."""
        if self._producer is None:
            return [PublishError("publisher not started")] * len(records)
        pending: list[Any] = []
        for record in records:
            try:
                pending.append(await self._producer.send(topic, record.value, key=record.key, headers=list(record.headers)))
            except Exception as exc:  # refused before sending: larger than max_request_size, a malformed header
                pending.append(_classify(exc))
        futures = [f for f in pending if isinstance(f, asyncio.Future)]
        if futures:
            # One deadline for the whole batch, not one per record.
            await asyncio.wait(futures, timeout=self.settings.publish_timeout_seconds)
        results: list[PublishError | None] = []
        for item in pending:
            if isinstance(item, PublishError):
                results.append(item)
            elif not item.done():
                results.append(PublishError("KafkaTimeoutError"))
            elif item.cancelled():
                results.append(PublishError("cancelled"))
            elif item.exception() is not None:
                results.append(_classify(item.exception()))
            else:
                results.append(None)
        return results

    async def ping(self) -> bool:
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 3)
            return True
        except Exception:
            return False
