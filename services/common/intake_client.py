"""The one client of our own intake, for tools that send events (importers, the roadmap CLI, the simulator).

Two ways in, one interface: `send(events) -> [Outcome]`, one outcome per event in order.
- `HttpIntake`: a running service's `POST /v1/events` in batched mode (at most `MAX_BATCH` events a request),
  retrying 503 (only the events Kafka did not take), 429 and other 5xx after Retry-After, and unreachable servers.
- `KafkaIntake`: straight to Kafka in CloudEvents structured mode, pipelined (EventPublisher.publish_many),
  retrying what the broker did not acknowledge.
Events are `Event`s or CloudEvents JSON objects (dicts), whichever the caller has.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from services.common.clock import Clock, utc_now
from services.common.kafka import EventPublisher
from services.contracts.envelope import BATCH, Event, EventError, validate_attributes

log = logging.getLogger(__name__)
MAX_BATCH = 500  # the intake's cap on events per request
MAX_RETRY_AFTER = 60.0
OutgoingEvent = Event | Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """`accepted`: stored by the platform (HTTP 202 or a Kafka acknowledgement); `rejected`: refused with a reason
    (the event is wrong: sending it again changes nothing); `failed`: not delivered after every attempt."""

    status: Literal["accepted", "rejected", "failed"]
    reason: str = ""
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


ACCEPTED = Outcome("accepted")


class IntakeClient(Protocol):
    async def send(self, events: Sequence[OutgoingEvent]) -> list[Outcome]: ...

    async def close(self) -> None: ...


def _json_dict(event: OutgoingEvent) -> Mapping[str, Any]:
    return event.to_json_dict() if isinstance(event, Event) else event


def _key(event: Mapping[str, Any]) -> tuple[str, str]:
    return str(event.get("source")), str(event.get("id"))


def retry_after(response: httpx.Response, default: float) -> float:
    """Seconds from a Retry-After header in seconds (whole or not), else `default`; capped."""
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return default


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class HttpIntake:
    """`POST /v1/events` of the service at `url` with API key `key`. Pass `client` to share connections between
    several intakes (it is then the caller's to close); `on_retry` is told of every retried request."""

    def __init__(self, url: str, key: str, *, client: httpx.AsyncClient | None = None, timeout: float = 60.0,
                 max_attempts: int = 5, batch_size: int = MAX_BATCH, on_retry: Callable[[], None] | None = None):
        self.url = url.rstrip("/") + "/v1/events"
        self.headers = {"Content-Type": BATCH, "X-API-Key": key}
        self._own = client is None
        self.client = client or httpx.AsyncClient(timeout=timeout)
        self.max_attempts = max(1, max_attempts)
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.on_retry = on_retry

    async def send(self, events: Sequence[OutgoingEvent]) -> list[Outcome]:
        bodies = [_json_dict(e) for e in events]
        out: list[Outcome] = []
        for start in range(0, len(bodies), self.batch_size):
            out.extend(await self._post(bodies[start:start + self.batch_size]))
        return out

    async def _post(self, batch: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        pending = list(range(len(batch)))  # positions in `batch` still to send
        delay = 0.5
        last = Outcome("failed", "unreachable", "no answer")
        for attempt in range(self.max_attempts):
            if attempt:
                if self.on_retry:
                    self.on_retry()
                await asyncio.sleep(delay)
            content = json.dumps([batch[i] for i in pending], ensure_ascii=False).encode()
            try:
                response = await self.client.post(self.url, content=content, headers=self.headers)
            except httpx.HTTPError as exc:
                last = Outcome("failed", "unreachable", f"{type(exc).__name__}: {str(exc)[:200]}")
                log.warning("intake unreachable, retrying", extra={"url": self.url, "error": type(exc).__name__})
                delay = min(10.0, delay * 2)
                continue
            body = _body(response)
            status = response.status_code
            # Refused for what they are: per event where the answer says which, else all of them.
            for r in body.get("rejected") or body.get("errors") or []:
                index = r.get("index")
                if isinstance(index, int) and 0 <= index < len(pending):
                    outcomes[pending[index]] = Outcome("rejected", str(r.get("reason", "rejected")), str(r.get("detail", "")))
            if status == 202:
                self._settle(outcomes, pending, ACCEPTED)
                return outcomes  # type: ignore[return-value]
            if status == 503 or status == 429 or status >= 500:
                retry = pending
                if status == 503 and "not_accepted" in body:
                    # Kafka took the others: send again only what it did not (never an accepted event twice).
                    not_taken = {_key(e) for e in body.get("not_accepted") or [] if isinstance(e, dict)}
                    retry = [i for i in pending if outcomes[i] is None and _key(batch[i]) in not_taken]
                    self._settle(outcomes, [i for i in pending if i not in set(retry)], ACCEPTED)
                pending = [i for i in retry if outcomes[i] is None]
                last = Outcome("failed", str(body.get("reason") or f"http_{status}"), str(body.get("detail", ""))[:300])
                if not pending:
                    return outcomes  # type: ignore[return-value]
                delay = retry_after(response, delay) if "retry-after" in response.headers else min(10.0, delay * 2)
                continue
            # Any other answer (400/403/413 for the whole batch, 401, ...): final, with its reason.
            reason = str(body.get("reason") or f"http_{status}")
            self._settle(outcomes, pending, Outcome("rejected", reason, str(body.get("detail", response.text[:200]))))
            return outcomes  # type: ignore[return-value]
        self._settle(outcomes, pending, last)
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _settle(outcomes: list[Outcome | None], positions: Sequence[int], outcome: Outcome) -> None:
        for i in positions:
            if outcomes[i] is None:
                outcomes[i] = outcome

    async def close(self) -> None:
        if self._own:
            await self.client.aclose()


class KafkaIntake:
    """Straight to Kafka (structured mode, pipelined). An event that is not a valid CloudEvent of a known type is
    `rejected` before sending; what the broker does not acknowledge is sent again, up to `max_attempts` times."""

    def __init__(self, publisher: EventPublisher, *, max_attempts: int = 1, owns_publisher: bool = True,
                 on_retry: Callable[[], None] | None = None, clock: Clock = utc_now):
        self.publisher = publisher
        self.clock = clock  # stamps an event sent without `time`, as the HTTP intake stamps it on receipt
        self.max_attempts = max(1, max_attempts)
        self.owns_publisher = owns_publisher
        self.on_retry = on_retry

    @classmethod
    async def start(cls, settings, **options: Any) -> KafkaIntake:
        publisher = EventPublisher(settings)
        await publisher.start()
        return cls(publisher, **options)

    async def send(self, events: Sequence[OutgoingEvent]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(events)
        ready: list[tuple[int, Event]] = []
        for i, e in enumerate(events):
            if isinstance(e, Event):
                ready.append((i, e))
                continue
            try:
                ready.append((i, validate_attributes({k: v for k, v in e.items() if k != "data"}, e.get("data"),
                                                       received_at=self.clock())))
            except EventError as err:
                outcomes[i] = Outcome("rejected", err.reason, err.detail)
        delay = 0.5
        for attempt in range(self.max_attempts):
            if attempt:
                if self.on_retry:
                    self.on_retry()
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
            errors = await self.publisher.publish_many([e for _, e in ready])
            failed = []
            for (i, event), err in zip(ready, errors):
                if err is None:
                    outcomes[i] = ACCEPTED
                else:
                    outcomes[i] = Outcome("failed", "publish_failed", str(err)[:300])
                    failed.append((i, event))
            ready = failed
            if not ready:
                break
        return outcomes  # type: ignore[return-value]

    async def close(self) -> None:
        if self.owns_publisher:
            await self.publisher.stop()
