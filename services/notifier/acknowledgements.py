"""Owners acknowledge: the personal link in every milestone notification, the page, and what acknowledging does.

An acknowledgement closes an *episode*: one milestone's missed (or at-risk) state for one due date. It stops
the reminders and escalation of that episode on every route (a claimed one still unsent is cancelled at
delivery), marks the episode's notifications with who acknowledged first, and is published as a
`roadmap.milestone.acknowledged` event on `roadmap.events` (an outbox: stored first, published by a loop until
Kafka has it, so nothing is lost when the broker is away). A reschedule or completion ends the episode anyway
(the roadmap's `recovered` alert stops the schedules); a new due date that is missed again is a new episode.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from services.common.auth import Principal
from services.common.clock import Clock
from services.common.redact import redact_to_limit
from services.contracts.envelope import make_event
from services.contracts.events import MILESTONE_ACKNOWLEDGED
from services.contracts.thai_calendar import bangkok_today
from services.notifier import ack
from services.notifier.adapters import NotificationRepository
from services.notifier.domain import Kind, RoutingTable
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)

SOURCE = "/services/notifier"
OUTBOX_GRACE = timedelta(seconds=30)
ACKNOWLEDGEABLE_TYPES = ("missed", "at_risk")
ACKNOWLEDGEABLE_KINDS = (Kind.alert.value, Kind.reminder.value, Kind.escalation.value)


class NotAcknowledgeable(LookupError):
    """No such notification, or one that is not about a missed or at-risk milestone."""


@dataclass
class AckView:
    """What the page shows: the notification's milestone, who was told, who acknowledged."""

    doc: dict[str, Any]
    recipient: str
    recipient_name: str
    told: list[str]  # display names of everyone notified in this episode (offices, never addresses)
    acknowledgements: list[dict[str, Any]] = field(default_factory=list)
    mine: dict[str, Any] | None = None  # this recipient's acknowledgement, when made
    created_now: bool = False


class Acknowledgements:
    def __init__(self, *, settings: NotifierSettings, repo: NotificationRepository, routing: RoutingTable,
                 publisher: Any, metrics: NotifierMetrics, clock: Clock):
        self.settings = settings
        self.repo = repo
        self.routing = routing
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.secrets = settings.ack_secrets()  # refuses to start without one (no default in code)

    # --- the link in each message ---------------------------------------------------------
    def link(self, doc: dict[str, Any]) -> str | None:
        """The recipient's acknowledge link for a missed/at-risk milestone notification; None for others."""
        if doc.get("kind") not in ACKNOWLEDGEABLE_KINDS or doc.get("alert_type") not in ACKNOWLEDGEABLE_TYPES:
            return None
        if not doc.get("milestone_id") or not doc.get("alert"):
            return None
        expires = ack.expiry(doc["created_at"], self.settings.notifier_ack_link_days)
        token = ack.make_token(self.secrets, doc["_id"], doc["recipient"], expires)
        base = self.settings.notifier_public_url.rstrip("/")
        return f"{base}/ack/{quote(doc['_id'], safe='')}/{token}"

    # --- the page ---------------------------------------------------------------------------
    async def view(self, notification_id: str, token: str) -> AckView:
        """The page's content; ack.TokenRefused for a bad link, NotAcknowledgeable for no such notification."""
        now = self.clock()
        claim = ack.verify_token(self.secrets, token, notification_id, now)
        doc = await self.repo.get(notification_id)
        if doc is None or doc.get("recipient") != claim.recipient or self.link(doc) is None:
            raise NotAcknowledgeable(notification_id)
        return await self._view(doc, claim.recipient)

    async def _view(self, doc: dict[str, Any], recipient: str) -> AckView:
        alert = doc["alert"]
        episode = ack.episode_id(alert["milestone_id"], alert["due_date"])
        told = sorted({n.get("recipient_name") or self.routing.display_name(n["recipient"])
                       for n in await self.repo.episode_notifications(alert["milestone_id"], alert["due_date"])})
        acks = await self.repo.acknowledgements(episode)
        for a in acks:
            a["name"] = a.get("recipient_name") or self.routing.display_name(a["recipient"])
        mine = next((a for a in acks if a["recipient"] == recipient), None)
        return AckView(doc, recipient, _name(doc, self.routing), told, acks, mine)

    async def acknowledge(self, notification_id: str, token: str, note: str | None, forecast: str | None) -> AckView:
        """Record the acknowledgement (first one per person and episode wins), close the episode, publish.

        ack.TokenRefused / NotAcknowledgeable as for `view`; ack.FormProblem for a bad forecast date."""
        now = self.clock()
        claim = ack.verify_token(self.secrets, token, notification_id, now)
        doc = await self.repo.get(notification_id)
        if doc is None or doc.get("recipient") != claim.recipient or self.link(doc) is None:
            raise NotAcknowledgeable(notification_id)
        alert = doc["alert"]
        forecast_day = ack.parse_forecast(forecast, bangkok_today(now), self.settings.programme_horizon_end)
        clean_note = redact_to_limit(note.strip(), ack.NOTE_MAX_CHARS).text if note and note.strip() else None
        ack_id = ack.acknowledgement_id(alert["milestone_id"], alert["due_date"], claim.recipient)
        record = {
            "_id": ack_id, "episode": ack.episode_id(alert["milestone_id"], alert["due_date"]),
            "milestone_id": alert["milestone_id"], "due_date": alert["due_date"],
            "owner_agency": alert["owner_agency"], "alert_type": doc["alert_type"],
            "notification_id": doc["_id"], "channel": doc["channel"], "kind": doc["kind"],
            "recipient": claim.recipient, "recipient_name": _name(doc, self.routing), "acknowledged_at": now,
            "note": clean_note,
            "forecast_completion": forecast_day.isoformat() if forecast_day else None,
            "event_id": _event_id(ack_id), "published": False,
        }
        existing = await self.repo.add_acknowledgement(record)
        created = existing is None
        if created:
            cancelled = await self.repo.close_episode(alert["milestone_id"], alert["due_date"],
                                                      recipient=claim.recipient, at=now)
            self.metrics.acknowledgements.labels(doc["alert_type"], doc["kind"]).inc()
            if doc.get("sent_at") is not None:
                self.metrics.ack_seconds.observe(max(0.0, (now - _aware(doc["sent_at"])).total_seconds()))
            log.info("notification acknowledged", extra={"notification_id": doc["_id"], "kind": doc["kind"],
                                                         "milestone_id": alert["milestone_id"],
                                                         "cancelled": cancelled})
            await self.publish(record)
        view = await self._view(doc, claim.recipient)
        view.created_now = created
        return view

    # --- the event (outbox) -----------------------------------------------------------------
    def event_of(self, record: dict[str, Any]):
        data = {"milestone_id": record["milestone_id"], "owner_agency": record["owner_agency"],
                "due_date": record["due_date"], "alert_type": record["alert_type"],
                "notification_id": record["notification_id"], "acknowledged_by": record["recipient"],
                # Office names from the routes file only: a registered contact's name is personal, not for Kafka.
                "acknowledged_by_name": self.routing.names.get(record["recipient"]),
                "acknowledged_at": _aware(record["acknowledged_at"]).isoformat(), "note": record.get("note"),
                "forecast_completion": record.get("forecast_completion")}
        return make_event(MILESTONE_ACKNOWLEDGED, {k: v for k, v in data.items() if v is not None},
                          agency=record["owner_agency"], source=SOURCE, id=record["event_id"],
                          time=_aware(record["acknowledged_at"]), subject=record["milestone_id"])

    async def publish(self, record: dict[str, Any]) -> bool:
        try:
            [error] = await self.publisher.publish_many([self.event_of(record)])
        except Exception as exc:  # the outbox loop tries again
            error = exc
        if error is not None:
            log.warning("acknowledgement not published yet", extra={"ack_event_id": record["event_id"],
                                                                    "error": type(error).__name__})
            return False
        await self.repo.mark_acknowledgement_published(record["_id"], self.clock())
        return True

    async def publish_pending(self) -> int:
        """The outbox loop's pass: publish what a broker outage or a crash left unpublished. Records younger than
        OUTBOX_GRACE are the request's own to publish: the loop leaves them, so one acknowledgement is normally
        published once (a duplicate would be harmless: the event id is stable and the roadmap's write idempotent)."""
        published = 0
        for record in await self.repo.unpublished_acknowledgements(before=self.clock() - OUTBOX_GRACE):
            if not await self.publish(record):
                break
            published += 1
        return published

    async def summary(self, start: datetime, end: datetime, reader: Principal, agency: str | None) -> dict[str, Any]:
        """Acknowledgement figures for episodes first notified in [start, end); an agency reads its own."""
        scope = reader.read_scope(agency)
        episodes = await self.repo.episodes_between(start, end, scope)
        acks = await self.repo.acknowledgements_of(ack.episode_id(e["milestone_id"], e["due_date"]) for e in episodes)
        escalations = await self.repo.escalation_levels_between(start, end, scope)
        return {"start": start.isoformat(), "end": end.isoformat(), "agency": scope,
                **summarise(episodes, acks, escalations, self.clock())}

    async def superseded(self, doc: dict[str, Any]) -> bool:
        """A reminder or escalation about to be sent whose episode was acknowledged meanwhile."""
        if doc.get("kind") not in (Kind.reminder.value, Kind.escalation.value) or not doc.get("alert"):
            return False
        alert = doc["alert"]
        return await self.repo.episode_acknowledged(ack.episode_id(alert["milestone_id"], alert["due_date"]))


def _event_id(ack_id: str) -> str:
    # Stable across retries (the event's (source, id) makes the roadmap's write idempotent); ASCII whatever
    # the recipient id holds.
    return "ack-" + hashlib.sha256(ack_id.encode("utf-8")).hexdigest()[:40]


def _name(doc: dict[str, Any], routing: RoutingTable) -> str:
    return doc.get("recipient_name") or routing.display_name(doc["recipient"])


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- the summary read by programme managers and the quarterly report -------------------------

def summarise(episodes: list[dict[str, Any]], acks: list[dict[str, Any]], escalations: dict[int, int],
              now: datetime) -> dict[str, Any]:
    """Who answers their notifications: episodes notified, acknowledged, how fast, what is still open, by agency.
    Pure: the repository gives episodes (milestone, due date, agency, first delivery), acknowledgements and
    escalation counts."""
    first_ack: dict[str, dict[str, Any]] = {}
    for a in acks:
        first_ack.setdefault(a["episode"], a)
    hours: list[float] = []
    open_ages: list[str] = []
    per_agency: dict[str, dict[str, Any]] = {}
    for ep in episodes:
        key = ack.episode_id(ep["milestone_id"], ep["due_date"])
        row = per_agency.setdefault(ep["agency"], {"agency": ep["agency"], "episodes": 0, "acknowledged": 0, "_h": []})
        row["episodes"] += 1
        answered = first_ack.get(key)
        start = _aware(ep["first_sent"] or ep["created"])
        if answered is not None:
            row["acknowledged"] += 1
            elapsed = max(0.0, (_aware(answered["acknowledged_at"]) - start).total_seconds() / 3600)
            hours.append(elapsed)
            row["_h"].append(elapsed)
        else:
            open_ages.append(_age_bucket(now - start))
    agencies = []
    for row in sorted(per_agency.values(), key=lambda r: (r["acknowledged"] / r["episodes"], -r["episodes"], r["agency"])):
        h = row.pop("_h")
        agencies.append({**row, "acknowledged_share": round(row["acknowledged"] / row["episodes"], 4),
                         "median_hours_to_acknowledge": _quantile(h, 0.5)})
    total = len(episodes)
    return {
        "episodes": total, "acknowledged": len(hours),
        "acknowledged_share": round(len(hours) / total, 4) if total else None,
        "median_hours_to_acknowledge": _quantile(hours, 0.5), "p90_hours_to_acknowledge": _quantile(hours, 0.9),
        "unacknowledged": {b: open_ages.count(b) for b in ("under_1d", "1d_to_3d", "3d_to_7d", "7d_or_more")},
        "escalations_by_level": {str(level): n for level, n in sorted(escalations.items())},
        "agencies": agencies,  # least responsive first
    }


def _age_bucket(age: timedelta) -> str:
    days = age.total_seconds() / 86400
    return "under_1d" if days < 1 else "1d_to_3d" if days < 3 else "3d_to_7d" if days < 7 else "7d_or_more"


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)
