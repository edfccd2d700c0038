"""Pure rules of the notifier: routing, idempotency keys, backoff, quiet hours, reminders.

Nothing here does I/O, so every rule is tested without Kafka, MongoDB or receivers.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from services.contracts.events import (
    MILESTONE_AT_RISK,
    MILESTONE_MISSED,
    MILESTONE_REBASELINED,
    MILESTONE_RECOVERED,
)
from services.contracts.thai_calendar import BANGKOK
from services.notifier.holidays import add_working_hours, is_working_day, next_working_morning


class Channel(StrEnum):
    email = "email"
    webhook = "webhook"
    slack = "slack"
    teams = "teams"
    line = "line"


class State(StrEnum):
    pending = "pending"
    sending = "sending"
    retrying = "retrying"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"  # a reminder or escalation not yet sent when the owner acknowledged


class Kind(StrEnum):
    alert = "alert"
    reminder = "reminder"
    escalation = "escalation"
    operational = "operational"
    test = "test"
    report = "report"  # a quarterly report announced by the reports service (services/notifier/reports.py)


CLAIMABLE = (State.pending.value, State.retrying.value)
OPEN_STATES = (State.pending.value, State.sending.value, State.retrying.value)
ALERT_TYPE_OF_EVENT = {
    MILESTONE_AT_RISK: "at_risk",
    MILESTONE_MISSED: "missed",
    MILESTONE_RECOVERED: "recovered",
    MILESTONE_REBASELINED: "rebaselined",  # a missed due date moved: that miss's reminders and escalation end
}
ALERT_TYPES = frozenset({*ALERT_TYPE_OF_EVENT.values(), "operational", "quarterly_report"})
DEFAULT_REMINDER_INTERVAL = timedelta(hours=24)
# Recipient names a route may use instead of people: the owner agency's own contacts (services/notifier/contacts.py).
OWNER_CONTACTS = "owner_contacts"
OWNER_ESCALATION_CONTACTS = "owner_escalation_contacts"
DYNAMIC_RECIPIENTS = frozenset({OWNER_CONTACTS, OWNER_ESCALATION_CONTACTS})


class RoutingError(ValueError):
    """The routing file is invalid (unknown recipient, channel, bad duration...)."""


# --- routing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One address of one recipient on one channel."""

    recipient: str
    channel: Channel
    address: str


@dataclass(frozen=True)
class Route:
    name: str
    recipients: tuple[str, ...]
    channels: tuple[Channel, ...]
    agencies: frozenset[str] | None = None  # None = any
    workstreams: frozenset[str] | None = None
    types: frozenset[str] | None = None
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)
    reminder_interval: timedelta = DEFAULT_REMINDER_INTERVAL
    escalate_after_days: int | None = None
    escalation_recipients: tuple[str, ...] = ()
    urgent_reminders: bool = False
    levels: tuple[EscalationLevel, ...] = ()  # `escalation:` chain; the two fields above are its one-level form

    @property
    def chain(self) -> tuple[EscalationLevel, ...]:
        """The escalation levels in order (the legacy `escalate_after_days` form is one calendar-time level)."""
        if self.levels:
            return self.levels
        if self.escalate_after_days is not None and self.escalation_recipients:
            return (EscalationLevel(Wait(calendar=timedelta(days=self.escalate_after_days)),
                                    self.escalation_recipients),)
        return ()

    def matches(self, alert_type: str, agency: str | None, workstream: str | None,
                labels: Mapping[str, str] | None = None) -> bool:
        if self.types is not None and alert_type not in self.types:
            return False
        if self.agencies is not None and (agency or "") not in self.agencies:
            return False
        if self.workstreams is not None and (workstream or "") not in self.workstreams:
            return False
        for name, allowed in self.labels.items():
            if (labels or {}).get(name) not in allowed:
                return False
        return True


@dataclass(frozen=True)
class RoutingTable:
    routes: tuple[Route, ...]
    recipients: Mapping[str, Mapping[Channel, tuple[str, ...]]]
    unsigned_webhooks: frozenset[str] = frozenset()  # webhook addresses opted out of signing (explicitly)
    names: Mapping[str, str] = field(default_factory=dict)  # recipient id -> display name (an office, not a person)

    def display_name(self, recipient: str) -> str:
        return self.names.get(recipient) or recipient

    @property
    def uses_contacts(self) -> bool:
        """Some route names the owner agency's registered contacts instead of people."""
        return any(DYNAMIC_RECIPIENTS & {*r.recipients, *r.escalation_recipients} for r in self.routes)

    def match(self, alert_type: str, agency: str | None, workstream: str | None,
              labels: Mapping[str, str] | None = None) -> list[Route]:
        return [r for r in self.routes if r.matches(alert_type, agency, workstream, labels)]

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def targets(self, recipients: Iterable[str], channels: Iterable[Channel]) -> list[Target]:
        """Addresses of the recipients on the route's channels (a recipient without that channel is skipped)."""
        out: list[Target] = []
        wanted = tuple(channels)
        for name in recipients:
            addresses = self.recipients.get(name, {})
            for channel in wanted:
                for address in addresses.get(channel, ()):
                    out.append(Target(name, channel, address))
        return out


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """`90s`, `30m`, `24h`, `2d` or a number of seconds."""
    if isinstance(value, bool):
        raise RoutingError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise RoutingError(f"invalid duration {value!r}: use e.g. 30m, 24h, 2d")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise RoutingError(f"duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


def _str_set(value: Any, what: str) -> frozenset[str] | None:
    if value is None or value == "*" or value == ["*"]:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RoutingError(f"{what}: expected a string or a list of strings")
    return frozenset(value)


def parse_routing(doc: Any, known_agencies: Container[str] | None = None) -> RoutingTable:
    """Validate the YAML routing document; every mistake is reported with where it is."""
    if not isinstance(doc, dict):
        raise RoutingError("the routing file must be a mapping with 'recipients' and 'routes'")
    defaults = doc.get("defaults") or {}
    recipients: dict[str, dict[Channel, tuple[str, ...]]] = {}
    names: dict[str, str] = {}
    signed: set[str] = set()
    unsigned: set[str] = set()
    for name, spec in (doc.get("recipients") or {}).items():
        if not isinstance(spec, dict):
            raise RoutingError(f"recipient {name!r}: expected a mapping of channel -> address(es)")
        addresses: dict[Channel, tuple[str, ...]] = {}
        for ch, addr in spec.items():
            if ch in ("name", "description", "webhook_signing"):
                continue
            try:
                channel = Channel(ch)
            except ValueError:
                raise RoutingError(f"recipient {name!r}: unknown channel {ch!r} (use {', '.join(Channel)})") from None
            values = [addr] if isinstance(addr, str) else addr
            if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
                raise RoutingError(f"recipient {name!r}: {ch} needs a non-empty address or list of addresses")
            addresses[channel] = tuple(v.strip() for v in values)
        recipients[str(name)] = addresses
        if isinstance(spec.get("name"), str) and spec["name"].strip():
            names[str(name)] = spec["name"].strip()
        # Webhooks are signed unless the recipient says otherwise, in so many words.
        signing = spec.get("webhook_signing", "standard")
        if signing not in ("standard", "none"):
            raise RoutingError(f"recipient {name!r}: webhook_signing must be 'standard' or 'none'")
        (unsigned if signing == "none" else signed).update(addresses.get(Channel.webhook, ()))
    if signed & unsigned:
        raise RoutingError(f"webhook address(es) {sorted(signed & unsigned)} are both signed and "
                           "`webhook_signing: none` on different recipients")

    routes: list[Route] = []
    seen: set[str] = set()
    for i, spec in enumerate(doc.get("routes") or []):
        if not isinstance(spec, dict):
            raise RoutingError(f"route #{i}: expected a mapping")
        name = str(spec.get("name") or f"route-{i}")
        if name in seen:
            raise RoutingError(f"route {name!r}: duplicate name")
        seen.add(name)
        match = spec.get("match") or {}
        if not isinstance(match, dict):
            raise RoutingError(f"route {name!r}: match must be a mapping")
        agencies = _str_set(match.get("agency"), f"route {name!r} match.agency")
        if agencies and known_agencies is not None:
            unknown = sorted(a for a in agencies if a not in known_agencies)
            if unknown:
                raise RoutingError(f"route {name!r}: unknown agency code(s) {unknown}")
        types = _str_set(match.get("type"), f"route {name!r} match.type")
        if types and not types <= ALERT_TYPES:
            raise RoutingError(f"route {name!r}: unknown alert type(s) {sorted(types - ALERT_TYPES)}")
        labels_spec = match.get("labels") or {}
        if not isinstance(labels_spec, dict):
            raise RoutingError(f"route {name!r}: match.labels must be a mapping")
        labels = {str(k): _str_set(v, f"route {name!r} label {k}") or frozenset() for k, v in labels_spec.items()}
        rec = tuple(spec.get("recipients") or ())
        esc = tuple(spec.get("escalation_recipients") or ())
        for r in (*rec, *esc):
            if r not in recipients and r not in DYNAMIC_RECIPIENTS:
                raise RoutingError(f"route {name!r}: unknown recipient {r!r} (define it under `recipients`, or use "
                                   f"{OWNER_CONTACTS} / {OWNER_ESCALATION_CONTACTS})")
        if not rec:
            raise RoutingError(f"route {name!r}: needs at least one recipient")
        try:
            channels = tuple(Channel(c) for c in (spec.get("channels") or list(Channel)))
        except ValueError as exc:
            raise RoutingError(f"route {name!r}: {exc}") from None
        escalate = spec.get("escalate_after_days", defaults.get("escalate_after_days"))
        if escalate is not None and (isinstance(escalate, bool) or not isinstance(escalate, int) or escalate < 0):
            raise RoutingError(f"route {name!r}: escalate_after_days must be a non-negative integer")
        if escalate is not None and not esc:
            escalate = None  # nobody to escalate to
        levels = _parse_levels(spec.get("escalation"), name, recipients)
        if levels and (escalate is not None or esc):
            raise RoutingError(f"route {name!r}: give either `escalation:` levels or escalate_after_days with "
                               "escalation_recipients, not both")
        routes.append(Route(
            name=name, recipients=rec, channels=channels, agencies=agencies,
            workstreams=_str_set(match.get("workstream"), f"route {name!r} match.workstream"), types=types,
            labels=labels,
            reminder_interval=parse_duration(spec.get("reminder_interval", defaults.get("reminder_interval", "24h"))),
            escalate_after_days=escalate, escalation_recipients=esc, levels=levels,
            urgent_reminders=bool(spec.get("urgent_reminders", False)),
        ))
    return RoutingTable(tuple(routes), recipients, frozenset(unsigned), names)


def _parse_levels(spec: Any, route: str, recipients: Mapping[str, Any]) -> tuple[EscalationLevel, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, list) or not spec:
        raise RoutingError(f"route {route!r}: escalation must be a non-empty list of levels")
    if len(spec) > MAX_LEVELS:
        raise RoutingError(f"route {route!r}: at most {MAX_LEVELS} escalation levels")
    levels: list[EscalationLevel] = []
    for n, level in enumerate(spec, start=1):
        where = f"route {route!r} escalation level {n}"
        if not isinstance(level, dict) or "after" not in level:
            raise RoutingError(f"{where}: expected a mapping with `after` and `recipients`")
        try:
            wait = parse_wait(level["after"])
        except RoutingError as exc:
            raise RoutingError(f"{where}: {exc} (or say e.g. `1 working day`, `4 working hours`)") from None
        who = tuple(level.get("recipients") or ())
        if not who:
            raise RoutingError(f"{where}: needs at least one recipient")
        for r in who:
            if r not in recipients and r not in DYNAMIC_RECIPIENTS:
                raise RoutingError(f"{where}: unknown recipient {r!r}")
        channels = None
        if level.get("channels") is not None:
            try:
                channels = tuple(Channel(c) for c in level["channels"])
            except (ValueError, TypeError) as exc:
                raise RoutingError(f"{where}: {exc}") from None
        if levels and wait.order <= levels[-1].wait.order:
            raise RoutingError(f"{where}: must wait longer than level {n - 1}")
        levels.append(EscalationLevel(wait, who, channels))
    return tuple(levels)


# --- identity --------------------------------------------------------------------------------

def idempotency_key(event_id: str, recipient: str, channel: Channel | str, prefix: str | None = None) -> str:
    """alert event id + recipient + channel (+ a prefix such as `reminder:3` for follow-ups)."""
    base = f"{event_id}|{recipient}|{Channel(channel).value}"
    return f"{prefix}|{base}" if prefix else base


def notification_id(key: str) -> str:
    """Stable document id derived from the idempotency key (short and URL-safe)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def retry_key_uuid(key: str) -> str:
    """A UUID derived from the key (LINE's X-Line-Retry-Key must be a UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:newnormal:notification:{key}"))


# --- backoff ---------------------------------------------------------------------------------

def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2^(attempt-1)))."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0, ceiling)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class Outcome(StrEnum):
    sent = "sent"
    retry = "retry"
    failed = "failed"


def classify_status(status: int) -> Outcome:
    """2xx delivered; 408, 429 and 5xx worth retrying; any other 4xx will never succeed as sent."""
    if 200 <= status < 300:
        return Outcome.sent
    if status in (408, 429) or status >= 500:
        return Outcome.retry
    return Outcome.failed


# --- quiet hours and holidays ----------------------------------------------------------------

def in_quiet_hours(when: datetime, start_hour: int, end_hour: int) -> bool:
    hour = when.astimezone(BANGKOK).hour
    if start_hour == end_hour:
        return False
    if start_hour > end_hour:  # wraps midnight, e.g. 20:00-08:00
        return hour >= start_hour or hour < end_hour
    return start_hour <= hour < end_hour


def deliver_at(now: datetime, *, urgent: bool, holidays: Container[date], quiet_start: int, quiet_end: int) -> datetime:
    """When a notification may go out: now if urgent or inside working hours of a working day,
    otherwise the next working morning (Asia/Bangkok)."""
    if urgent:
        return now
    local = now.astimezone(BANGKOK)
    if is_working_day(local.date(), holidays) and not in_quiet_hours(now, quiet_start, quiet_end):
        return now
    # Early morning of a working day waits until quiet hours end the same day.
    if is_working_day(local.date(), holidays) and local.hour < quiet_end:
        return local.replace(hour=quiet_end, minute=0, second=0, microsecond=0).astimezone(UTC)
    return next_working_morning(now, holidays, hour=quiet_end).astimezone(UTC)


# --- reminders and escalation ----------------------------------------------------------------

@dataclass(frozen=True)
class ReminderPlan:
    """What the scheduler does for one (milestone, route) whose alert is still `missed`."""

    sequence: int          # number of the reminder to send now (1, 2, ...); 0 = none due
    next_due: datetime     # when the following reminder or escalation level becomes due
    escalate: bool         # some escalation level must be told now (for the first time)
    levels: tuple[int, ...] = ()  # the escalation levels (0-based) reached by this pass, in order

    @property
    def levels_done(self) -> int | None:
        """Levels told once this pass is done (None: no new level)."""
        return self.levels[-1] + 1 if self.levels else None


def plan_reminder(*, now: datetime, missed_since: datetime, last_sequence: int, interval: timedelta,
                  escalate_after_days: int | None = None, escalated: bool = False,
                  level_due: tuple[datetime, ...] | None = None, levels_done: int | None = None) -> ReminderPlan:
    """Reminder n is due at missed_since + n*interval; missed reminders are not replayed one by one
    (a stopped notifier sends one reminder carrying the latest number, not a burst).

    Escalation levels are due at `level_due[i]` (computed by the caller: working hours or calendar time);
    every level due by `now` and not yet told is told in this pass, in order (a notifier that was down
    skips none and sends none twice). `escalate_after_days`/`escalated` are the one-level form."""
    if level_due is None:
        level_due = (missed_since + timedelta(days=escalate_after_days),) if escalate_after_days is not None else ()
    done = levels_done if levels_done is not None else (1 if escalated else 0)
    elapsed = now - missed_since
    due_sequence = int(elapsed / interval) if elapsed > timedelta(0) else 0
    sequence = due_sequence if due_sequence > last_sequence else 0
    current = max(last_sequence, due_sequence)
    next_due = missed_since + interval * (current + 1)
    reached = tuple(i for i in range(done, len(level_due)) if level_due[i] <= now)
    after = done + len(reached)
    if after < len(level_due):
        next_due = min(next_due, level_due[after])
    return ReminderPlan(sequence, next_due, bool(reached), reached)


# --- escalation chains -----------------------------------------------------------------------

WORKING_HOURS_PER_DAY = 8  # 08:30-16:30 (services/notifier/holidays.py)
MAX_LEVELS = 5
_WAIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(working\s+days?|working\s+hours?|wd|wh)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Wait:
    """How long a level waits after the milestone was missed: office hours on working days, or calendar time."""

    working_hours: float | None = None
    calendar: timedelta | None = None

    def due(self, missed_since: datetime, holidays: Container[date]) -> datetime:
        if self.working_hours is not None:
            return add_working_hours(missed_since, self.working_hours, holidays)
        return missed_since + (self.calendar or timedelta(0))

    def describe(self) -> str:
        if self.working_hours is not None:
            days, hours = divmod(self.working_hours, WORKING_HOURS_PER_DAY)
            if hours == 0:
                return (f"{days:g} วันทำการ · {days:g} working day{'s' if days != 1 else ''} "
                        f"(08:30–16:30 Mon–Fri, public holidays excluded)")
            return (f"{self.working_hours:g} ชั่วโมงทำการ · {self.working_hours:g} working hours "
                    f"(08:30–16:30 Mon–Fri, public holidays excluded)")
        days = (self.calendar or timedelta(0)).total_seconds() / 86400
        return f"{days:g} calendar day{'s' if days != 1 else ''}" if days >= 1 else f"{self.calendar} (calendar time)"

    @property
    def order(self) -> float:
        """Comparable size of the wait (a working day is 24 calendar hours at least): levels must grow."""
        if self.working_hours is not None:
            return self.working_hours / WORKING_HOURS_PER_DAY * 86400
        return (self.calendar or timedelta(0)).total_seconds()


def parse_wait(value: Any) -> Wait:
    """`1 working day`, `3 working days`, `4 working hours` (`1wd`, `4wh`), or a calendar duration (`2d`, `36h`)."""
    if isinstance(value, str) and (m := _WAIT.match(value)):
        amount, unit = float(m.group(1)), m.group(2).lower()
        hours = amount * WORKING_HOURS_PER_DAY if unit.startswith(("working d", "wd")) else amount
        return Wait(working_hours=hours)
    return Wait(calendar=parse_duration(value))


@dataclass(frozen=True)
class EscalationLevel:
    wait: Wait
    recipients: tuple[str, ...]
    channels: tuple[Channel, ...] | None = None  # None: the route's channels
