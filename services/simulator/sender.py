"""Puts the simulated agencies' events on the wire, both ways agency systems do it.

Most events go through the services' public HTTP intake (`POST /v1/events`, batched mode, the
agency's own API key; roadmap plans with the programme office's key); a share goes straight to
Kafka in CloudEvents structured mode. Sending is paced to a target rate, honours 503 +
Retry-After (only the events not accepted are sent again) and reports progress on one line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from services.common.kafka import EventPublisher
from services.common.settings import ServiceSettings
from services.contracts.envelope import BATCH, validate_attributes
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
        url = f"{self.urls[service].rstrip('/')}/v1/events"
        headers = {"Content-Type": BATCH, "X-API-Key": self.keys[key_owner]}
        pending = events
        delay = 0.5
        for _attempt in range(self.max_attempts):
            try:
                resp = await self.client.post(url, content=json.dumps(pending, ensure_ascii=False).encode(), headers=headers)
            except httpx.HTTPError as exc:
                self.stats.retries += 1
                log.warning("service unreachable, retrying", extra={"service": service, "error": type(exc).__name__})
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
                continue
            if resp.status_code in (202, 503, 400, 403, 413):
                body = _json(resp)
                accepted = len(body.get("accepted") or [])
                self.stats.sent += accepted
                self.stats.http += accepted
                rejected = body.get("rejected") or body.get("errors") or []
                if rejected:
                    self.stats.rejected += len(rejected)
                    log.warning("events rejected", extra={"service": service, "count": len(rejected),
                                                          "reasons": sorted({r.get("reason", "?") for r in rejected})})
                if resp.status_code != 503:
                    return
                # Kafka did not take these: send again after Retry-After (accepted ones are not re-sent).
                not_taken = {(e["source"], e["id"]) for e in body.get("not_accepted") or []}
                pending = [e for e in pending if (e["source"], e["id"]) in not_taken] or pending
                self.stats.retries += 1
                await asyncio.sleep(_retry_after(resp, delay))
                delay = min(10.0, delay * 2)
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                self.stats.retries += 1
                await asyncio.sleep(_retry_after(resp, delay))
                delay = min(10.0, delay * 2)
                continue
            self.stats.errors += len(pending)
            log.error("request refused", extra={"service": service, "status": resp.status_code, "body": resp.text[:300]})
            return
        self.stats.errors += len(pending)
        log.error("giving up on a batch", extra={"service": service, "events": len(pending)})

    async def _publish(self, events: list[dict[str, Any]]) -> None:
        assert self.publisher is not None
        pending = [validate_attributes({k: v for k, v in e.items() if k != "data"}, e["data"]) for e in events]
        delay = 0.5
        for _ in range(self.max_attempts):
            errors = await self.publisher.publish_many(pending)
            ok = sum(1 for err in errors if err is None)
            self.stats.sent += ok
            self.stats.kafka += ok
            pending = [e for e, err in zip(pending, errors) if err is not None]
            if not pending:
                return
            self.stats.retries += 1
            await asyncio.sleep(delay)
            delay = min(10.0, delay * 2)
        self.stats.errors += len(pending)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(resp: httpx.Response, default: float) -> float:
    value = resp.headers.get("retry-after", "")
    try:
        return min(60.0, max(0.1, float(value)))
    except ValueError:
        return default
