"""Service layer: alerts in -> notification documents; a dispatcher delivers them; a scheduler reminds.

The Kafka handler only stores documents (idempotent on the key) and wakes the dispatcher, so an
offset commit never waits on a slow receiver and a redelivered alert can never send twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Container, Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.common.auth import Principal
from services.common.clock import Clock, utc_now
from services.common.consumer import Batch, Rejected
from services.common.mongo import TRANSIENT_ERRORS
from services.contracts.agencies import get_registry
from services.contracts.envelope import Event
from services.contracts.problems import worded
from services.contracts.thai_calendar import bangkok_today
from services.notifier import ack
from services.notifier.acknowledgements import Acknowledgements
from services.notifier.adapters import NotificationStore
from services.notifier.channels import ChannelSender, Delivery
from services.notifier.contact_book import ContactBook, resolve
from services.notifier.domain import (
    ALERT_TYPE_OF_EVENT,
    CLAIMABLE,
    Channel,
    Kind,
    Outcome,
    Route,
    RoutingTable,
    State,
    Target,
    backoff_delay,
    deliver_at,
    idempotency_key,
    notification_id,
    plan_reminder,
)
from services.notifier.metrics import NotifierMetrics
from services.notifier.pace import DeliveryPace, queue_bound, start_margin
from services.notifier.reports import report_notifications
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Renderer, as_datetime

log = logging.getLogger(__name__)


# --- Alertmanager webhook payload (version 4) -------------------------------------------------

def _calendar_time(text: str) -> str:
    if as_datetime(text) is None:
        raise ValueError("is not a date and time of the calendar")
    return text


# Alertmanager's times are Go's RFC 3339 with up to nanoseconds ("0001-01-01T00:00:00Z": an endsAt not set). The
# start is part of the notification's idempotency key and is shown in messages: never free text.
AlertTime = Annotated[str, Field(max_length=40, pattern=worded(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$",
    "must be an RFC 3339 date-time with an offset, as Alertmanager sends it (2026-12-02T07:55:06.123Z)"),
    json_schema_extra={"format": "date-time"}), AfterValidator(_calendar_time)]


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AlertTime
    endsAt: AlertTime | None = None
    generatorURL: str | None = Field(default=None, max_length=2000)
    fingerprint: str = Field(min_length=1, max_length=64)


class AlertmanagerPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: Literal["4"]
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert] = Field(max_length=1000)


# A Kafka batch's store waiting for room in the queue stops waiting when the dispatcher has taken nothing from it for
# this long (its deliveries hang, or it stopped): the rest is stored unclaimed, for the claim query.
ROOM_IDLE_SECONDS = 5.0

# Notifications an agency key may read: the ones about its own milestones. Operational and test
# notifications go to the programme office's operators and stay with the programme office.
AGENCY_VISIBLE_KINDS = (Kind.alert.value, Kind.reminder.value, Kind.escalation.value)


class NotRetryable(Exception):
    """Only failed or waiting notifications are retried; `state` is the notification's."""

    def __init__(self, state: str):
        super().__init__(state)
        self.state = state


class NotifierService:
    def __init__(self, *, settings: NotifierSettings, repo: NotificationStore, routing: RoutingTable,
                 renderer: Renderer, channels: Mapping[Channel, ChannelSender], metrics: NotifierMetrics,
                 holidays: Container[date], contacts: ContactBook, acks: Acknowledgements | None = None,
                 clock: Clock = utc_now):
        self.settings = settings
        self.repo = repo
        self.routing = routing
        self.renderer = renderer
        self.channels = channels
        self.metrics = metrics
        self.holidays = holidays
        self.clock = clock
        self.wake = asyncio.Event()  # the dispatcher's: new work, or a finished claim or delivery
        self._claim: asyncio.Task | None = None  # the dispatcher's claim query in flight
        self._claimed_at = float("-inf")  # monotonic time of the last claim
        self._idle = False  # the last claim found nothing
        self.dispatching = False  # the dispatcher runs here: new notifications may be born claimed (`store`)
        self._poked = False  # new work since the last pass
        self.inflight: set[asyncio.Task] = set()
        self.queue: deque[dict[str, Any]] = deque()
        self.pace = DeliveryPace()  # deliveries started lately: how much the queue may hold (`queue_bound`)
        self._room = asyncio.Event()  # set when the dispatcher takes from the queue (`store` may be waiting)
        self._sent: list[tuple[dict[str, Any], dict[str, Any] | None, asyncio.Future]] = []
        self._flush_task: asyncio.Task | None = None
        self.attachments = _no_attachments  # main.py sets reports.ReportFetcher(...).attachments
        self.acks = acks  # None: no acknowledge links (unit tests of delivery alone)
        self.contacts = contacts

    # --- building notifications ----------------------------------------------------------
    def _doc(self, *, key: str, kind: Kind, alert_type: str, event_id: str, event_time: datetime, target: Target,
             route: Route | None, urgent: bool, now: datetime, agency: str | None = None, workstream: str | None = None,
             milestone_id: str | None = None, alert: dict[str, Any] | None = None,
             operational: dict[str, Any] | None = None, sequence: int | None = None,
             recipient_name: str | None = None, level: int | None = None) -> dict[str, Any]:
        s = self.settings
        when = deliver_at(now, urgent=urgent, holidays=self.holidays, quiet_start=s.notifier_quiet_start_hour,
                          quiet_end=s.notifier_quiet_end_hour)
        doc: dict[str, Any] = {
            "_id": notification_id(key), "key": key, "kind": kind.value, "alert_type": alert_type,
            "event_id": event_id, "event_time": event_time,
            # Latency is measured from the alert itself, or from when a deferred reminder was allowed out.
            "due_at": event_time if kind in (Kind.alert, Kind.operational) else when,
            "channel": target.channel.value, "recipient": target.recipient, "address": target.address,
            "recipient_name": recipient_name or self.routing.display_name(target.recipient),
            "route": route.name if route else None, "urgent": urgent, "agency": agency, "workstream": workstream,
            "milestone_id": milestone_id, "state": State.pending.value, "attempts": 0, "next_attempt_at": when,
            "created_at": now, "updated_at": now,
        }
        if alert is not None:
            doc["alert"] = alert
            due = date.fromisoformat(alert["due_date"])
            doc["days_late_now"] = max(int(alert.get("days_late") or 0), (bangkok_today(now) - due).days)
        if operational is not None:
            doc["operational"] = operational
        if sequence is not None:
            doc["sequence"] = sequence
        if level is not None:
            doc["level"] = level  # the escalation level (1 = first) of an escalation notification
        return doc

    def alert_notifications(self, event: Event, now: datetime,
                            registered: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        alert_type = ALERT_TYPE_OF_EVENT[event.type]
        data = event.data_dict()
        docs: dict[str, dict[str, Any]] = {}
        for route in self.routing.match(alert_type, data["owner_agency"], data["workstream"]):
            for target, name in resolve(self.routing, route.recipients, route.channels, agency=data["owner_agency"],
                                        workstream=data["workstream"], registered=registered or {}):
                key = idempotency_key(event.id, target.recipient, target.channel)
                docs.setdefault(key, self._doc(
                    key=key, kind=Kind.alert, alert_type=alert_type, event_id=event.id, event_time=event.time,
                    target=target, route=route, urgent=True, now=now, agency=data["owner_agency"],
                    workstream=data["workstream"], milestone_id=data["milestone_id"], alert=data, recipient_name=name))
        return list(docs.values())

    async def store(self, docs: list[dict[str, Any]], *, wait_for_room: bool = False) -> int:
        """Store new notifications once (by key). While this instance's dispatcher runs, those due now are stored
        already claimed by it and queued at once, as many as its queue may hold (`queue_bound`): no claim query and
        no claim write for them, where each write of a notification costs milliseconds on SecantusDB. A crash leaves
        such a claim to expire and be claimed again, as any claim; the others wait for a claim as before.

        `wait_for_room` (Kafka intake, whose offsets are committed once this returns): while this instance's
        dispatcher runs, the notifications are stored in parts of at most half the queue, each once the queue has
        room for it; a burst of alerts is then born claimed rather than claimed by a second write of each. The wait
        ends early when the dispatcher takes nothing from the queue for `ROOM_IDLE_SECONDS`, and lasts at most a
        quarter of Kafka's poll interval (a consumer that waits past it leaves its group)."""
        if not docs:
            return 0
        deadline = time.monotonic() + self.settings.kafka_max_poll_interval_ms / 4000
        part = max(1, self.queue_bound // 2) if wait_for_room and self.dispatching else len(docs)
        stored = 0
        for start in range(0, len(docs), part):
            chunk = docs[start:start + part]
            if wait_for_room:
                now = self.clock()
                wait_for_room = await self._wait_for_room(sum(_takes_now(d, now) for d in chunk), deadline)
            stored += await self._store_part(chunk)
        return stored

    async def _wait_for_room(self, wanted: int, deadline: float) -> bool:
        """Until the queue has room for `wanted` claimed notifications, or the dispatcher stops, has nothing to take
        or takes nothing for `ROOM_IDLE_SECONDS`, or `deadline` (monotonic) passes. False: it took nothing for that
        long (the store waits no more)."""
        while (self.dispatching and (self.queue or self.inflight) and self.queue_bound - len(self.queue) < wanted
               and (left := deadline - time.monotonic()) > 0):
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), timeout=min(left, ROOM_IDLE_SECONDS))
            except TimeoutError:
                return False
        return True

    async def _store_part(self, docs: list[dict[str, Any]]) -> int:
        s = self.settings
        now = self.clock()
        room = self.queue_bound - len(self.queue) if self.dispatching else 0
        if room > 0:
            fields = self.repo.claim_fields(now, timedelta(seconds=s.notifier_lease_seconds))
            for doc in docs:
                if room == 0:
                    break
                if _takes_now(doc, now):
                    doc.update(fields, attempts=doc.get("attempts", 0) + 1)
                    room -= 1
        new = await self.repo.insert_new(docs)
        for i in new:
            self.metrics.created.labels(docs[i]["kind"]).inc()
        self.queue.extend(docs[i] for i in new if docs[i].get("claim") is not None)  # stored claimed: ours
        if new:
            self.wake_dispatcher()
        return len(new)

    @property
    def _delivery_timeout_seconds(self) -> float:
        return max(self.settings.notifier_http_timeout_seconds, self.settings.notifier_smtp_timeout_seconds)

    @property
    def queue_bound(self) -> int:
        """How many claimed notifications the queue may hold (services/notifier/pace.py)."""
        s = self.settings
        return queue_bound(concurrency=s.notifier_concurrency, claim_batch=s.notifier_claim_batch,
                           lease_seconds=s.notifier_lease_seconds, delivery_timeout_seconds=self._delivery_timeout_seconds,
                           per_second=self.pace.per_second(), queue_max=s.notifier_queue_max)

    # --- Kafka: reports.events (quarterly reports to e-mail) -------------------------------
    async def on_reports(self, batch: Batch) -> list[Rejected]:
        now = self.clock()
        await self.store([d for event in batch.events for d in report_notifications(self, event, now)],
                         wait_for_room=True)
        return []

    # --- Kafka: roadmap.alerts -----------------------------------------------------------
    async def on_alerts(self, batch: Batch) -> list[Rejected]:
        now = self.clock()
        registered = await self.contacts.preload(e.data_dict()["owner_agency"] for e in batch.events)
        docs: list[dict[str, Any]] = []
        for event in batch.events:
            docs.extend(self.alert_notifications(event, now, registered))
        await self.store(docs, wait_for_room=True)
        # Schedules after the first notifications: both writes are idempotent, so a crash in between is harmless.
        await self._track(sorted(batch.events, key=lambda e: e.data.detected_at))  # type: ignore[attr-defined]
        return []

    async def _track(self, events: list[Event]) -> None:
        """Start, refresh or stop reminder schedules; one read and one insert for a batch of new ones."""
        planned: list[tuple[Event, dict[str, Any], Route]] = []
        for event in events:
            data = event.data_dict()
            if ALERT_TYPE_OF_EVENT[event.type] == "missed":
                planned.extend((event, data, r) for r in self.routing.match("missed", data["owner_agency"], data["workstream"]))
        existing = await self.repo.reminders_by_id([f"{d['milestone_id']}|{r.name}" for _, d, r in planned]) if planned else {}
        fresh: dict[str, dict[str, Any]] = {}
        for event in events:
            alert_type = ALERT_TYPE_OF_EVENT[event.type]
            data = event.data_dict()
            detected = event.data.detected_at  # type: ignore[attr-defined]
            if alert_type != "missed":
                # Fresh schedules of this batch go in first, so a later `recovered` in the batch stops them.
                await self._flush_fresh(fresh, existing)
                await self.repo.set_latest(data["milestone_id"], detected, alert_type)
                for sid in [k for k, v in existing.items() if v["milestone_id"] == data["milestone_id"]]:
                    existing[sid] = {**existing[sid], "active": False, "detected_at": detected}
                continue
            for e, _, route in planned:
                if e is not event:
                    continue
                schedule_id = f"{data['milestone_id']}|{route.name}"
                known = existing.get(schedule_id) or fresh.get(schedule_id)
                if known is not None and known.get("detected_at") and known["detected_at"] > detected:
                    continue  # an older alert redelivered after a newer one: the newer state stands
                if known is not None and known.get("active") and known.get("event_id") == event.id:
                    continue  # redelivery of the alert that started this schedule
                if (known is not None and known.get("stopped_by") == "acknowledged"
                        and (known.get("alert") or {}).get("due_date") == data["due_date"]):
                    continue  # the owner acknowledged this due date's miss: no new chain until the date moves
                doc = {"_id": schedule_id, "milestone_id": data["milestone_id"], "route": route.name,
                       "event_id": event.id, "alert": data, "agency": data["owner_agency"],
                       "workstream": data["workstream"], "active": True, "detected_at": detected,
                       "missed_since": detected, "next_due": self._first_due(route, detected)}
                if known is None and schedule_id not in existing:
                    fresh[schedule_id] = doc
                else:
                    await self.repo.start_reminders(doc, reset=not known.get("active"))
                    existing[schedule_id] = {**(known or {}), **doc} if known and known.get("active") else doc
        await self._flush_fresh(fresh, existing)

    async def _flush_fresh(self, fresh: dict[str, dict[str, Any]], existing: dict[str, dict[str, Any]]) -> None:
        if fresh:
            await self.repo.insert_reminders(list(fresh.values()))
            existing.update(fresh)
            fresh.clear()

    def _first_due(self, route: Route, missed_since: datetime) -> datetime:
        due = missed_since + route.reminder_interval
        if route.chain:
            due = min(due, route.chain[0].wait.due(missed_since, self.holidays))
        return due

    # --- Alertmanager --------------------------------------------------------------------
    async def on_alertmanager(self, payload: AlertmanagerPayload) -> int:
        now = self.clock()
        registry = get_registry()
        docs: dict[str, dict[str, Any]] = {}
        for alert in payload.alerts:
            labels = {**payload.commonLabels, **alert.labels}
            agency = labels.get("agency") if labels.get("agency") in registry else None
            workstream = labels.get("workstream")
            event_id = f"am:{alert.fingerprint}:{alert.startsAt}:{alert.status}"
            operational = {"alertname": labels.get("alertname", "alert"), "status": alert.status,
                           "severity": labels.get("severity"), "labels": labels,
                           "summary": alert.annotations.get("summary") or payload.commonAnnotations.get("summary"),
                           "description": alert.annotations.get("description"), "startsAt": alert.startsAt,
                           "endsAt": alert.endsAt, "generatorURL": alert.generatorURL, "externalURL": payload.externalURL,
                           "fingerprint": alert.fingerprint}
            for route in self.routing.match("operational", agency, workstream, labels):
                for target in self.routing.targets(route.recipients, route.channels):
                    key = idempotency_key(event_id, target.recipient, target.channel)
                    docs.setdefault(key, self._doc(
                        key=key, kind=Kind.operational, alert_type="operational", event_id=event_id, event_time=now,
                        target=target, route=route, urgent=True, now=now, agency=agency, workstream=workstream,
                        operational=operational))
        return await self.store(list(docs.values()))

    # --- test notification ---------------------------------------------------------------
    async def test_notification(self, route_name: str, alert_type: str = "missed",
                                wait_seconds: float = 0.0) -> list[dict[str, Any]]:
        """Store one test notification per target of `route_name` (LookupError: no such route) and wait up to
        `wait_seconds` for their outcome; the notifications as they stand then."""
        docs = await self._store_test(route_name, alert_type)
        ids = [d["_id"] for d in docs]
        deadline = time.monotonic() + wait_seconds
        while ids and time.monotonic() < deadline:
            docs = [await self.repo.get(i) or d for i, d in zip(ids, docs)]
            if all(d["state"] in (State.sent.value, State.failed.value) for d in docs):
                break
            await asyncio.sleep(0.1)  # the outcome is another task's write to MongoDB: read it again shortly
        return docs

    # --- reads and operations (the HTTP routes' one call each) ----------------------------
    async def notifications(self, *, state: str | None, channel: str | None, milestone: str | None, limit: int,
                            before: datetime | None, reader: Principal, agency: str | None) -> list[dict[str, Any]]:
        """Newest first. The programme office reads all (or `agency`'s); an agency key the notifications about
        its own milestones; operational and test notifications stay with the programme office."""
        scope = reader.read_scope(agency)  # 403 for a survey key or another agency's filter
        return await self.repo.list(state=state, channel=channel, milestone=milestone, limit=limit, before=before,
                                    agency=scope, kinds=None if reader.reads_all else AGENCY_VISIBLE_KINDS)

    async def notification(self, notification_id: str, reader: Principal) -> dict[str, Any] | None:
        """One notification with its delivery receipts and the acknowledgement of its episode; None when there is
        none or the reader may not see it (an agency: only about its own milestones)."""
        doc = await self.repo.get(notification_id)
        if doc is None or not (reader.reads_all or (reader.may_see(doc.get("agency"))
                                                    and doc.get("kind") in AGENCY_VISIBLE_KINDS)):
            return None
        view = public_view(doc)
        view["deliveries"] = [_delivery_view(a) for a in doc.get("deliveries", [])]
        alert = doc.get("alert")
        if self.acks is not None and alert and doc.get("milestone_id"):
            view["acknowledgements"] = [
                {"recipient": a["recipient"], "name": a.get("recipient_name") or self.routing.display_name(a["recipient"]),
                 "acknowledged_at": _iso(a["acknowledged_at"]), "via_notification": a["notification_id"],
                 "note": a.get("note"), "forecast_completion": a.get("forecast_completion")}
                for a in await self.repo.acknowledgements(ack.episode_id(alert["milestone_id"], alert["due_date"]))]
        return view

    async def retry(self, notification_id: str) -> dict[str, Any]:
        """Make a failed or waiting notification due now and wake the dispatcher; LookupError: no such
        notification; NotRetryable: it is in another state."""
        doc = await self.repo.retry_now(notification_id, self.clock())
        if doc is None:
            existing = await self.repo.get(notification_id)
            if existing is None:
                raise LookupError(notification_id)
            raise NotRetryable(existing["state"])
        self.wake_dispatcher()
        return doc

    def wake_dispatcher(self) -> None:
        """New work is due now: the dispatcher claims it without waiting for its tick."""
        self._poked = True
        self.wake.set()

    async def _store_test(self, route_name: str, alert_type: str) -> list[dict[str, Any]]:
        route = self.routing.route(route_name)
        if route is None:
            raise LookupError(route_name)
        now = self.clock()
        event_id = f"test:{uuid.uuid4().hex}"
        agency = next(iter(sorted(route.agencies))) if route.agencies else "opdc"
        workstream = next(iter(sorted(route.workstreams))) if route.workstreams else "roadmap_governance"
        today = bangkok_today(now)
        docs = []
        for target in self.routing.targets(route.recipients, route.channels):
            key = idempotency_key(event_id, target.recipient, target.channel)
            if alert_type == "operational":
                extra: dict[str, Any] = {"operational": {"alertname": "NotifierTest", "status": "firing",
                                                          "severity": "info", "labels": {"route": route.name},
                                                          "summary": "ทดสอบเส้นทางการแจ้งเตือน · Route test",
                                                          "startsAt": now.isoformat()}}
            else:
                extra = {"alert": {"milestone_id": "TEST-ROUTE", "title_th": f"ทดสอบเส้นทาง {route.name}",
                                   "title_en": f"Route test {route.name}", "workstream": workstream,
                                   "owner_agency": agency, "due_date": (today - timedelta(days=1)).isoformat(),
                                   "percent_complete": 50, "days_late": 1, "detected_at": now.isoformat()},
                         "milestone_id": None}
            doc = self._doc(key=key, kind=Kind.test, alert_type=alert_type, event_id=event_id, event_time=now,
                            target=target, route=route, urgent=True, now=now, agency=agency, workstream=workstream,
                            **extra)
            docs.append(doc)
        await self.store(docs)
        return docs

    # --- reminders and escalation --------------------------------------------------------
    async def schedule_once(self) -> int:
        """Create the reminder/escalation notifications that are due; returns how many were created."""
        now = self.clock()
        created = 0
        schedules = await self.repo.due_reminders(now)
        registered = await self.contacts.preload(s["agency"] for s in schedules)
        for schedule in schedules:
            route = self.routing.route(schedule["route"])
            if route is None:  # the route was removed from the file: nothing to remind on
                await self.repo.set_latest(schedule["milestone_id"], schedule["detected_at"], "route_removed")
                continue
            chain = route.chain
            done = _levels_done(schedule)
            plan = plan_reminder(now=now, missed_since=schedule["missed_since"], last_sequence=schedule["sequence"],
                                 interval=route.reminder_interval, levels_done=done,
                                 level_due=tuple(lvl.wait.due(schedule["missed_since"], self.holidays) for lvl in chain))
            levels_done = plan.levels_done if plan.levels_done is not None else done
            alert, event_id = schedule["alert"], schedule["event_id"]
            docs: dict[str, dict[str, Any]] = {}

            def add(recipients: Iterable[str], kind: Kind, prefix: str, sequence: int | None,
                    channels: Iterable[Channel] | None = None, level: int | None = None) -> None:
                for target, name in resolve(self.routing, recipients, channels or route.channels,
                                            agency=schedule["agency"], workstream=schedule["workstream"],
                                            registered=registered):
                    key = idempotency_key(event_id, target.recipient, target.channel, prefix=prefix)
                    docs.setdefault(key, self._doc(
                        key=key, kind=kind, alert_type="missed", event_id=event_id, event_time=schedule["detected_at"],
                        target=target, route=route, urgent=route.urgent_reminders, now=now, agency=schedule["agency"],
                        workstream=schedule["workstream"], milestone_id=schedule["milestone_id"], alert=alert,
                        sequence=sequence, recipient_name=name, level=level))

            for n in plan.levels:  # every level due and not told yet, in order: none skipped, none twice
                level = chain[n]
                add(level.recipients, Kind.escalation, "escalation" if n == 0 else f"escalation:{n + 1}", None,
                    level.channels, n + 1)
                self.metrics.escalations.labels(str(min(n + 1, 5))).inc()
            if plan.sequence:
                # Reminders also go to the levels told in earlier passes (a level told now just got its message).
                recipients = route.recipients + tuple(r for lvl in chain[:done] for r in lvl.recipients)
                add(recipients, Kind.reminder, f"reminder:{plan.sequence}", plan.sequence)
            created += await self.store(list(docs.values()))
            await self.repo.advance_reminder(schedule, sequence=max(schedule["sequence"], plan.sequence),
                                             next_due=plan.next_due, escalated=levels_done > 0, level=levels_done)
        return created

    # --- dispatcher ----------------------------------------------------------------------
    async def dispatch_once(self) -> None:
        """One pass of the dispatcher, run by `Runtime.every(tick, dispatch_once, wake=self.wake)`.

        Claims due notifications in batches into a local queue (one query serves many deliveries) and delivers
        them with bounded concurrency. The claim runs beside the deliveries, so a slow claim query never leaves
        free delivery slots idle; the queue is refilled at half its size. A finished claim or delivery sets
        `wake`, so the next pass follows at once; new work (`wake_dispatcher`) does too; else a tick passes.
        After a claim found nothing, the next one waits for new work or a tick (retries and a moved clock come due)."""
        s = self.settings
        self.dispatching = True
        if self._poked or time.monotonic() - self._claimed_at >= s.notifier_scheduler_tick_seconds:
            self._poked, self._idle = False, False
        if self._claim is not None and self._claim.done():
            claimed = await self._claim_result(self._claim)
            self._claim = None
            self.queue.extend(claimed)
            self._idle = not claimed
        margin = start_margin(s.notifier_lease_seconds, self._delivery_timeout_seconds)
        while self.queue and len(self.inflight) < s.notifier_concurrency:
            doc = self.queue.popleft()
            self._room.set()
            # A claim whose lease could end before its delivery does may then be someone else's: never sent twice.
            if doc.get("lease_until") is not None and doc["lease_until"] <= self.clock() + margin:
                continue
            task = asyncio.create_task(self.deliver(doc), name=f"deliver:{doc['_id']}")
            self.pace.started()
            self.inflight.add(task)
            task.add_done_callback(self._delivered)
        room = s.notifier_claim_batch - len(self.queue)
        refill_below = max(s.notifier_concurrency, s.notifier_claim_batch // 2)
        if self._claim is None and not self._idle and room > 0 and len(self.queue) < refill_below:
            self._claimed_at = time.monotonic()
            self._claim = asyncio.create_task(
                self.repo.claim(self.clock(), timedelta(seconds=s.notifier_lease_seconds), room))
            self._claim.add_done_callback(lambda _: self.wake.set())

    def _delivered(self, task: asyncio.Task) -> None:
        self.inflight.discard(task)
        self.wake.set()  # a delivery slot is free

    def stop_claiming(self) -> None:
        """On shutdown: a claim still running is cancelled (what it took is released when its lease expires)."""
        self.dispatching = False  # nothing more is born claimed: the queue is about to be handed back
        self._room.set()  # a store waiting for room goes on (unclaimed)
        if self._claim is not None:
            self._claim.cancel()

    @staticmethod
    async def _claim_result(task: asyncio.Task) -> list[dict[str, Any]]:
        try:
            return task.result()
        except TRANSIENT_ERRORS as exc:
            log.warning("dispatcher: database unavailable", extra={"error": type(exc).__name__})
        except Exception:
            log.exception("dispatcher claim failed")
        return []

    async def release_queue(self) -> None:
        """On shutdown, hand back claimed-but-unstarted notifications instead of waiting out their lease."""
        docs, self.queue = list(self.queue), deque()
        if docs:
            await self.repo.release(docs, self.clock())

    async def drain(self, timeout: float) -> None:
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=timeout)

    async def deliver(self, doc: dict[str, Any]) -> None:
        channel = Channel(doc["channel"])
        try:
            # Acknowledged between its creation and now: a reminder or escalation is no longer news.
            if self.acks is not None and await self.acks.superseded(doc):
                if await self.repo.cancel(doc, self.clock()):
                    self.metrics.cancelled.inc()
                return
            message = self.renderer.render(doc)
            delivery = Delivery(notification_id=doc["_id"], key=doc["key"], address=doc["address"], message=message,
                                payload=_machine_payload(doc), attachments=await self.attachments(doc))
            result = await self.channels[channel].send(delivery)
        except Exception as exc:  # a template or channel bug must not kill the dispatcher
            log.exception("delivery raised", extra={"notification_id": doc["_id"], "channel": channel.value})
            from services.notifier.channels import DeliveryResult
            result = DeliveryResult(Outcome.retry, None, f"internal error: {type(exc).__name__}")
        await self._record(doc, channel, result)

    async def _record(self, doc: dict[str, Any], channel: Channel, result) -> None:
        s = self.settings
        now = self.clock()
        extra = {"notification_id": doc["_id"], "channel": channel.value, "status": result.status,
                 "attempt": doc.get("attempts"), "kind": doc.get("kind")}
        attempt = {"at": now, "attempt": doc.get("attempts"), "outcome": result.outcome.value, "status": result.status,
                   "receipt": result.receipt[:250], "detail": result.detail[:200]}
        try:
            if result.outcome is Outcome.sent:
                await self._mark_sent(doc, attempt)
                self.metrics.notifications.labels(channel.value, "sent").inc()
                due = doc.get("due_at") or doc.get("created_at")
                if due is not None:
                    self.metrics.delivery_seconds.observe(max(0.0, (self.clock() - due).total_seconds()))
                log.debug("notification sent", extra=extra)
                return
            if result.outcome is Outcome.retry and doc.get("attempts", 1) < s.notifier_max_attempts:
                if result.retry_after is not None:
                    delay = min(result.retry_after, s.notifier_retry_after_max_seconds)
                else:
                    delay = backoff_delay(doc.get("attempts", 1), s.notifier_retry_base_seconds, s.notifier_retry_max_seconds)
                await self.repo.mark_retry(doc, now, now + timedelta(seconds=delay), result.status, result.detail,
                                           attempt)
                self.metrics.retries.labels(channel.value).inc()
                log.warning("notification will be retried", extra={**extra, "retry_in_s": round(delay, 2),
                                                                    "error": result.detail[:200]})
                return
            if await self.repo.mark_failed(doc, now, result.status, result.detail, attempt):
                self.metrics.notifications.labels(channel.value, "failed").inc()
            log.error("notification failed", extra={**extra, "error": result.detail[:200]})
        except Exception as exc:
            # The lease expires and another attempt follows: at-least-once, never lost.
            log.warning("could not record delivery outcome", extra={**extra, "error": type(exc).__name__})


    async def _mark_sent(self, doc: dict[str, Any], attempt: dict[str, Any] | None = None) -> None:
        """Confirmed deliveries are recorded in groups (one update per ~20 ms); the delivery task waits for
        its group, so a slot is freed only once `sent` is stored."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._sent.append((doc, attempt, future))
        if len(self._sent) >= self.settings.notifier_concurrency:
            await self._flush_sent()
        elif self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_later())
        await future

    async def _flush_later(self) -> None:
        # Loop until empty: marks added while a flush is in progress must not be left waiting.
        while self._sent:
            await asyncio.sleep(0.02)
            await self._flush_sent()

    async def _flush_sent(self) -> None:
        group, self._sent = self._sent, []
        if not group:
            return
        try:
            await self.repo.mark_sent_many([d for d, _, _ in group], self.clock(), [a for _, a, _ in group])
        except Exception as exc:
            for _, _, fut in group:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for _, _, fut in group:
            if not fut.done():
                fut.set_result(None)


def _takes_now(doc: dict[str, Any], now: datetime) -> bool:
    """Whether a dispatcher would take `doc` at once (claimable and due): what may be stored already claimed."""
    return doc["state"] in CLAIMABLE and doc["next_attempt_at"] <= now


def _levels_done(schedule: Mapping[str, Any]) -> int:
    """Escalation levels already told (schedules written before chains existed only say `escalated`)."""
    return int(schedule.get("level", 1 if schedule.get("escalated") else 0))


async def _no_attachments(doc: dict[str, Any]) -> tuple[Any, ...]:
    return ()


def _machine_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """Structured facts for the generic webhook (no recipient addresses: receivers do not need them)."""
    out: dict[str, Any] = {"kind": doc.get("kind"), "alert_type": doc.get("alert_type"), "event_id": doc.get("event_id"),
                           "agency": doc.get("agency"), "workstream": doc.get("workstream"),
                           "recipient": doc.get("recipient"), "route": doc.get("route")}
    if doc.get("alert") is not None:
        out["milestone"] = doc["alert"]
        out["days_late"] = doc.get("days_late_now")
    if doc.get("operational") is not None:
        out["operational"] = doc["operational"]
    if doc.get("report") is not None:
        out["report"] = doc["report"]
    if doc.get("sequence") is not None:
        out["sequence"] = doc["sequence"]
    return out


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _delivery_view(attempt: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(attempt.get(k)) for k in ("at", "attempt", "outcome", "status", "receipt", "detail")}


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What the API shows: state and routing, never the recipient's address (personal data)."""
    keys = ("key", "kind", "alert_type", "event_id", "channel", "recipient", "route", "state", "attempts",
            "milestone_id", "agency", "workstream", "sequence", "last_status", "last_error", "acknowledged_by")
    view = {"id": doc["_id"], **{k: doc.get(k) for k in keys}}
    for k in ("created_at", "next_attempt_at", "sent_at", "failed_at", "event_time", "acknowledged_at", "cancelled_at"):
        value = doc.get(k)
        view[k] = value.isoformat() if isinstance(value, datetime) else value
    return view
