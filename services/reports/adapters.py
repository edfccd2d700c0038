"""HTTP clients of the other services' read APIs, with a short answer cache (the only I/O of the data layer).

Interface (what the handlers and RB's quarterly documents use; every method returns the API's JSON as is):

    source = ReadApis(settings, metrics=None)        # start(): opens the HTTP client; close()
    await source.summary()                            # roadmap  GET /v1/summary
    await source.roadmap_overview(agency, days, late) # roadmap  GET /v1/overview (counts, overdue at days, late lists)
    await source.milestones(agency=None, moved=None)  # roadmap  GET /v1/milestones, all pages -> list of items
    await source.schedule_changes(agency=None)        # roadmap  GET /v1/schedule-changes (moved, largest slip first)
    await source.milestone(milestone_id)              # roadmap  GET /v1/milestones/{id} (due_history, timeline)
    await source.readiness(fiscal_year, agency=None)  # training GET /v1/readiness
    await source.laggards(fiscal_year, limit)         # training GET /v1/readiness/laggards
    await source.experience(start, end, agency=None)  # feedback GET /v1/experience?from&to
    await source.gaps(start, end, agency=None)        # feedback GET /v1/experience/gaps?from&to

Each answer is cached for NEWNORMAL_REPORTS_CACHE_SECONDS under (service, path, params); concurrent requests
for the same key share one upstream call. Inside `with source.refreshing():` every call fetches anew and
replaces its entry (the service refreshes the national overview's answers ahead of their expiry this way). A failure raises UpstreamError (never cached). The key is the
programme office's: these answers are unsuppressed, and the domain applies the public suppression itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from services.contracts import safejson
from services.reports.settings import ReportsSettings

PAGE = 1000  # the roadmap API's largest page
_REFRESHING: contextvars.ContextVar[bool] = contextvars.ContextVar("reports_refreshing", default=False)


class UpstreamError(RuntimeError):
    """A read API did not answer usably; `service` is one of roadmap, training, feedback."""

    def __init__(self, service: str, detail: str, status: int | None = None):
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.status = status  # the HTTP status when there was an answer (404: no such route or record)


class FetchObserver(Protocol):
    def fetched(self, service: str, seconds: float, ok: bool) -> None: ...
    def cache(self, service: str, hit: bool) -> None: ...


class _NoMetrics:
    def fetched(self, service: str, seconds: float, ok: bool) -> None:
        pass

    def cache(self, service: str, hit: bool) -> None:
        pass


HIT, SHARED, MISS = "hit", "shared", "miss"  # how TtlCache.lookup found a value


class TtlCache:
    """Values by key for `ttl` seconds, at most `max_entries` (the least recently used dropped); concurrent
    callers for one key share one fetch (single flight). Used for the read API answers and for the rendered
    quarterly documents (services/reports/quarterly_service.py).

    The shared fetch runs as a task of its own: a caller that goes away (its request cancelled) neither cancels
    the fetch the others wait for nor hands them its cancellation, and the value is still kept for the next
    caller. A failure is never kept: every caller waiting gets it, the next one fetches anew."""

    def __init__(self, ttl: float, max_entries: int, monotonic: Callable[[], float] = time.monotonic):
        self.ttl, self.max_entries, self.monotonic = ttl, max_entries, monotonic
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._pending: dict[Any, asyncio.Future] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= self.monotonic():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)  # recently used: dropped last
        return True, entry[1]

    def put(self, key: Any, value: Any) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (self.monotonic() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def get_or_fetch(self, key: Any, fetch: Callable[[], Any], refresh: bool = False) -> tuple[bool, Any]:
        """(hit, value), hit also when another caller's fetch was shared; `refresh`: fetch even if cached, and
        replace the entry."""
        how, value = await self.lookup(key, fetch, refresh)
        return how != MISS, value

    async def lookup(self, key: Any, fetch: Callable[[], Any], refresh: bool = False) -> tuple[str, Any]:
        """(HIT: kept | SHARED: another caller's fetch in flight | MISS: fetched for this caller, value)."""
        if not refresh:
            hit, value = self.get(key)
            if hit:
                return HIT, value
        pending = self._pending.get(key)
        if pending is not None:  # someone is already fetching it: wait for that answer
            return SHARED, await asyncio.shield(pending)
        task = asyncio.ensure_future(self._fill(key, fetch))
        self._pending[key] = task
        return MISS, await asyncio.shield(task)

    async def _fill(self, key: Any, fetch: Callable[[], Any]) -> Any:
        try:
            value = await fetch()
            self.put(key, value)
            return value
        finally:
            if self._pending.get(key) is asyncio.current_task():
                del self._pending[key]

    def clear(self) -> None:
        self._entries.clear()


class ReadApis:
    def __init__(self, settings: ReportsSettings, metrics: FetchObserver | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.metrics = metrics or _NoMetrics()
        self.bases = {"roadmap": settings.roadmap_url.rstrip("/"), "training": settings.training_url.rstrip("/"),
                      "feedback": settings.feedback_url.rstrip("/"), "notifier": settings.notifier_url.rstrip("/")}
        self.cache = TtlCache(settings.reports_cache_seconds, settings.reports_cache_max_entries)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        # httpx logs every request at INFO: one line per upstream call would drown the service's own logs.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers={"X-API-Key": self.settings.api_key(), "Accept": "application/json"},
                timeout=self.settings.reports_upstream_timeout_seconds, transport=self._transport,
                follow_redirects=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- the read APIs -----------------------------------------------------------------------
    async def summary(self) -> dict[str, Any]:
        return await self.get("roadmap", "/v1/summary")

    async def roadmap_overview(self, agency: str | None, days: Sequence[date], late: int) -> dict[str, Any] | None:
        """Per workstream: counts by status, open milestones past due at the end of each of `days`, and the
        `late` earliest-due missed and at-risk milestones, computed by the roadmap in its database. None from a
        roadmap older than this route (its 404 is kept like an answer): read `milestones()` instead."""
        params: dict[str, Any] = {"at": tuple(d.isoformat() for d in days), "late": late,
                                  **({"agency": agency} if agency else {})}
        return await self._get_if_routed("roadmap", "/v1/overview", params)

    async def schedule_changes(self, agency: str | None = None) -> list[dict[str, Any]] | None:
        """The milestones whose due date moved (of one agency), largest slip first, up to
        NEWNORMAL_REPORTS_MAX_MILESTONES, in one request. None from a roadmap older than this route (its 404 is
        kept like an answer): read `milestones(moved=True)` instead."""
        params: dict[str, Any] = {"limit": min(20_000, self.settings.reports_max_milestones),
                                  **({"agency": agency} if agency else {})}
        answer = await self._get_if_routed("roadmap", "/v1/schedule-changes", params)
        return None if answer is None else list(answer.get("items", []))

    async def _get_if_routed(self, service: str, path: str, params: dict[str, Any]) -> Any:
        """The answer, or None from a service older than the route (its 404, cached like an answer)."""
        async def fetch() -> Any:
            try:
                return await self._fetch(service, path, params)
            except UpstreamError as exc:
                if exc.status == 404:
                    return None
                raise
        return await self.get(service, path, params, fetch)

    async def milestones(self, agency: str | None = None, moved: bool | None = None) -> list[dict[str, Any]]:
        """Every milestone (of one agency; `moved`: only those whose due date moved from the baseline), up to
        NEWNORMAL_REPORTS_MAX_MILESTONES, in the API's order."""
        params = {"limit": PAGE, **({"agency": agency} if agency else {}),
                  **({"moved": "true" if moved else "false"} if moved is not None else {})}
        first = await self.get("roadmap", "/v1/milestones", {**params, "offset": 0})
        total = min(int(first.get("total", 0)), self.settings.reports_max_milestones)
        items = list(first.get("items", []))
        # One page after another: each page is a query of its own over the same milestones, and asked all at
        # once they share the database's time, so each would wait for all (and time out together).
        for offset in range(PAGE, total, PAGE):
            items.extend((await self.get("roadmap", "/v1/milestones", {**params, "offset": offset})).get("items", []))
        return items[:total]

    async def milestone(self, milestone_id: str) -> dict[str, Any]:
        return await self.get("roadmap", f"/v1/milestones/{quote(milestone_id, safe='')}")

    async def readiness(self, fiscal_year: int, agency: str | None = None) -> dict[str, Any]:
        return await self.get("training", "/v1/readiness", {"fiscal_year": fiscal_year, **({"agency": agency} if agency else {})})

    async def laggards(self, fiscal_year: int, limit: int = 500) -> dict[str, Any]:
        return await self.get("training", "/v1/readiness/laggards", {"fiscal_year": fiscal_year, "limit": limit})

    async def experience(self, start: date, end: date, agency: str | None = None) -> dict[str, Any]:
        return await self.get("feedback", "/v1/experience", _range(start, end, agency))

    async def gaps(self, start: date, end: date, agency: str | None = None) -> dict[str, Any]:
        return await self.get("feedback", "/v1/experience/gaps", _range(start, end, agency))

    async def acknowledgements(self, start: date, end: date, agency: str | None = None) -> dict[str, Any]:
        """Who answered their missed/at-risk notifications, for episodes first notified in [start, end]."""
        return await self.get("notifier", "/v1/acknowledgements/summary", _range(start, end, agency))

    @contextlib.contextmanager
    def refreshing(self) -> Iterator[None]:
        token = _REFRESHING.set(True)
        try:
            yield
        finally:
            _REFRESHING.reset(token)

    # --- one cached GET ----------------------------------------------------------------------
    async def get(self, service: str, path: str, params: dict[str, Any] | None = None,
                  fetch: Callable[[], Any] | None = None) -> Any:
        key = (service, path, tuple(sorted((params or {}).items())))
        hit, value = await self.cache.get_or_fetch(key, fetch or (lambda: self._fetch(service, path, params or {})),
                                                   refresh=_REFRESHING.get())
        self.metrics.cache(service, hit)
        return value

    async def _fetch(self, service: str, path: str, params: dict[str, Any]) -> Any:
        if self._client is None:
            await self.start()
        assert self._client is not None
        started = time.perf_counter()
        ok = False
        try:
            try:
                response = await self._client.get(self.bases[service] + path, params=params)
            except httpx.HTTPError as exc:
                raise UpstreamError(service, f"{type(exc).__name__}") from None
            if response.status_code != 200:
                raise UpstreamError(service, f"HTTP {response.status_code} for {path}", response.status_code)
            try:
                value = safejson.loads(response.content)
            except ValueError:
                raise UpstreamError(service, f"unreadable JSON from {path}") from None
            ok = True
            return value
        finally:
            self.metrics.fetched(service, time.perf_counter() - started, ok)


def _range(start: date, end: date, agency: str | None) -> dict[str, Any]:
    return {"from": start.isoformat(), "to": end.isoformat(), **({"agency": agency} if agency else {})}
