"""Puts the simulated agencies' events on the wire, both ways agency systems do it.

Most events go through the services' public HTTP intake (`POST /v1/events`, batched mode, the
agency's own API key; roadmap plans with the programme office's key); a share goes straight to
Kafka in CloudEvents structured mode. Sending is paced to a target rate, honours 503 +
Retry-After (only the events not accepted are sent again) and reports progress on one line.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from services.common.intake_client import HttpIntake, KafkaIntake, Outcome
from services.common.kafka import EventPublisher
from services.common.settings import ServiceSettings
from services.contracts.events import EVENT_TYPES

log = logging.getLogger(__name__)
SERVICE_OF_TOPIC = {"roadmap.events": "roadmap", "training.events": "training", "feedback.events": "feedback"}


@dataclass
class Stats:
    sent: int = 0  # acknowledged: HTTP 202 "accepted", or Kafka acks
    http: int = 0
    kafka: int = 0
    rejected: int = 0  # refused by a service with a 4xx reason (a bug in the simulator if it happens)
    retries: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        return self.sent / max(1e-9, time.monotonic() - self.started)

    def line(self) -> str:
        return (f"sent {self.sent:,} events (http {self.http:,} · kafka {self.kafka:,}) · {self.rate():,.1f} ev/s · "
                f"rejected {self.rejected:,} · retries {self.retries:,} · errors {self.errors:,}")


class Progress:
    """One updating line on a terminal; a line every few seconds in a log file."""

    def __init__(self, stats: Stats, out: TextIO = sys.stderr, every: float = 5.0):
        self.stats = stats
        self.out = out
        self.tty = out.isatty()
        self.every = 0.5 if self.tty else every
        self._last = 0.0

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        if self.tty:
            self.out.write("\r\x1b[2K" + self.stats.line())
        else:
            self.out.write(self.stats.line() + "\n")
        self.out.flush()

    def close(self) -> None:
        self.tick(force=True)
        if self.tty:
            self.out.write("\n")
            self.out.flush()


class Pacer:
    """Token bucket: at most `rate` events per second on average, bursts of one batch."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.clock = clock
        self.start = clock()
        self.admitted = 0

    async def admit(self, n: int) -> None:
        if self.rate <= 0:
            return
        self.admitted += n
        due = self.start + self.admitted / self.rate
        delay = due - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)


class Sender:
    def __init__(self, *, urls: dict[str, str], keys: dict[str, str], kafka_settings: ServiceSettings | None,
                 kafka_share: float, seed: int, stats: Stats | None = None, batch_size: int = 100,
                 max_attempts: int = 30, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.urls = urls
        self.keys = keys
        self.kafka_settings = kafka_settings
        self.kafka_share = kafka_share if kafka_settings is not None else 0.0
        self.rng = random.Random(seed ^ 0x5EED)
        self.stats = stats or Stats()
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._intakes: dict[tuple[str, str], HttpIntake] = {}  # one per (service, key), sharing `client`
        self.publisher: EventPublisher | None = None

    async def start(self) -> None:
        if self.kafka_share > 0 and self.kafka_settings is not None:
            self.publisher = EventPublisher(self.kafka_settings)
            await self.publisher.start()

    async def stop(self) -> None:
        await self.client.aclose()
        if self.publisher is not None:
            await self.publisher.stop()

    async def send(self, events: Iterable[dict[str, Any]], *, plan_key: bool = False) -> None:
        """Send a group of events: split by path (HTTP or Kafka), then by service and key."""
        http_groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        direct: list[dict[str, Any]] = []
        for event in events:
            service = SERVICE_OF_TOPIC[EVENT_TYPES[event["type"]].topic]
            if self.publisher is not None and not plan_key and self.rng.random() < self.kafka_share:
                direct.append(event)
                continue
            key_owner = "programme_office" if plan_key or event["agency"] not in self.keys else event["agency"]
            http_groups[(service, key_owner)].append(event)
        jobs = [self._post(service, owner, batch[i:i + self.batch_size])
                for (service, owner), batch in http_groups.items() for i in range(0, len(batch), self.batch_size)]
        if direct:
            jobs.append(self._publish(direct))
        await asyncio.gather(*jobs)

    async def _post(self, service: str, key_owner: str, events: list[dict[str, Any]]) -> None:
        intake = self._intakes.get((service, key_owner))
        if intake is None:
            intake = HttpIntake(self.urls[service], self.keys[key_owner], client=self.client,
                                max_attempts=self.max_attempts, on_retry=self._retried)
            self._intakes[(service, key_owner)] = intake
        self._count(await intake.send(events), "http", service)

    async def _publish(self, events: list[dict[str, Any]]) -> None:
        assert self.publisher is not None
        intake = KafkaIntake(self.publisher, max_attempts=self.max_attempts, owns_publisher=False,
                             on_retry=self._retried)
        self._count(await intake.send(events), "kafka", "kafka")

    def _retried(self) -> None:
        self.stats.retries += 1

    def _count(self, outcomes: list[Outcome], path: str, service: str) -> None:
        accepted = sum(1 for o in outcomes if o.accepted)
        self.stats.sent += accepted
        setattr(self.stats, path, getattr(self.stats, path) + accepted)
        rejected = [o for o in outcomes if o.status == "rejected"]
        if rejected:
            self.stats.rejected += len(rejected)
            log.warning("events rejected", extra={"service": service, "count": len(rejected),
                                                  "reasons": sorted({o.reason for o in rejected})})
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            self.stats.errors += len(failed)
            log.error("giving up on events", extra={"service": service, "events": len(failed),
                                                    "reasons": sorted({o.reason for o in failed})})
