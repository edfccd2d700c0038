"""MongoDB repository of notifications and reminder schedules.

`notifications`: one document per (event, recipient, channel) with a unique idempotency key and
a state machine pending -> sending -> sent | retrying -> failed. Claims are leases: a document
left in `sending` by a killed instance becomes claimable again when its lease expires.
`notifier_reminders`: one document per (milestone, route) while the milestone is missed.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from services.common.mongo import find_in, insert_new
from services.notifier.domain import CLAIMABLE, OPEN_STATES, State

# Dropped at start. `state_channel`: the open and failed counts per channel match on `state`, which `state_due` leads
# with; each secondary index costs SecantusDB about 0.3-1 ms more per update of a notification (each one is updated
# at least once, when sent).
RETIRED_INDEXES = ("key_unique", "claim", "state_channel")


class NotificationStore(Protocol):
    """What the service layer (`NotifierService`: alert intake, reminders, dispatcher, reads) needs of the repository:
    `NotificationRepository` over MongoDB, `tests/fakes_notifier.py` in memory."""

    # notifications: stored once by idempotency key, then leased, delivered and marked (each mark guarded by the claim)
    async def insert_new(self, docs: Sequence[dict[str, Any]]) -> list[int]: ...

    async def claim(self, now: datetime, lease: timedelta, limit: int) -> list[dict[str, Any]]: ...

    def claim_fields(self, now: datetime, lease: timedelta) -> dict[str, Any]: ...

    async def mark_sent_many(self, docs: Sequence[dict[str, Any]], now: datetime,
                             attempts: Sequence[dict[str, Any]] | None = None) -> int: ...

    async def release(self, docs: Sequence[dict[str, Any]], now: datetime) -> int: ...

    async def mark_retry(self, doc: dict[str, Any], now: datetime, next_at: datetime, status: int | None,
                         detail: str, attempt: dict[str, Any] | None = None) -> bool: ...

    async def mark_failed(self, doc: dict[str, Any], now: datetime, status: int | None, detail: str,
                          attempt: dict[str, Any] | None = None) -> bool: ...

    async def cancel(self, doc: dict[str, Any], now: datetime) -> bool: ...

    async def retry_now(self, notification_id: str, now: datetime) -> dict[str, Any] | None: ...

    async def get(self, notification_id: str) -> dict[str, Any] | None: ...

    async def list(self, *, state: str | None, channel: str | None, milestone: str | None, limit: int,
                   before: datetime | None = None, agency: str | None = None,
                   kinds: Sequence[str] | None = None) -> list[dict[str, Any]]: ...

    async def acknowledgements(self, episode: str) -> list[dict[str, Any]]: ...

    # reminder schedules
    async def reminders_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]: ...

    async def insert_reminders(self, docs: list[dict[str, Any]]) -> None: ...

    async def start_reminders(self, doc: dict[str, Any], *, reset: bool) -> None: ...

    async def set_latest(self, milestone_id: str, detected_at: datetime, alert_type: str) -> None: ...

    async def due_reminders(self, now: datetime, limit: int = 200) -> list[dict[str, Any]]: ...

    async def advance_reminder(self, schedule: dict[str, Any], *, sequence: int, next_due: datetime,
                               escalated: bool, level: int = 0) -> bool: ...


# How often a claim reads a state's whole due range (see `NotificationRepository._due_ids`), and how far behind the
# clock a walk that reached it starts again (another replica's notification stamped a moment before it was stored).
FULL_DUE_SCAN_SECONDS = 30.0
DUE_MARGIN = timedelta(seconds=10)
_TICK = timedelta(milliseconds=1)  # the database keeps times to the millisecond: the next window starts 1 ms on


class DueWindows:
    """Where a claim's walk through one state's due range starts, and how wide its windows are (about one claim's
    worth of documents: halved when a window fills the claim, doubled when it holds little)."""

    def __init__(self, width: timedelta = timedelta(seconds=1)) -> None:
        self.floor: datetime | None = None  # no claimable notification of this state is due before it (None: unknown)
        self.width = width
        self.full_scan_at = 0.0

    def start(self, now: datetime, monotonic: float) -> datetime | None:
        """The first window's start; None: read the whole range this time."""
        if self.floor is None or monotonic >= self.full_scan_at:
            self.full_scan_at = monotonic + FULL_DUE_SCAN_SECONDS
            return None
        return min(self.floor, now)

    def end(self, low: datetime | None, now: datetime) -> datetime:
        return now if low is None else min(now, low + self.width)

    def after(self, low: datetime | None, high: datetime, part: list[tuple[datetime, str]], wanted: int,
              now: datetime) -> datetime | None:
        """Learn from a window that returned `part` of `wanted`; returns the next window's start (past `now`: done)."""
        if len(part) >= wanted:  # the claim is full: what is left starts at the last due time taken (ties included)
            self.floor = part[-1][0]
            if low is not None:
                self.width = max(timedelta(milliseconds=1), self.width / 2)
            return now + _TICK
        if low is None or high >= now:  # the range is read to the clock: start a little behind it next time
            self.floor = now - DUE_MARGIN
            return now + _TICK
        if len(part) < wanted // 4:
            self.width = min(timedelta(days=1), self.width * 2)
        return high + _TICK


class NotificationRepository:
    def __init__(self, db: AsyncDatabase, instance: str | None = None):
        self.db = db
        self.col = db.notifications
        self.reminders = db.notifier_reminders
        self.acks = db.notifier_acknowledgements
        self.contacts = db.agency_contacts
        self.contacts_audit = db.agency_contacts_audit
        self.instance = instance or uuid.uuid4().hex[:12]
        self._windows: dict[str, DueWindows] = {}  # per claimable state

    async def ensure_indexes(self) -> None:
        # No index on `key` (`_id` is its hash: unique already) nor on `claim` (a claim is read back by `_id`): on
        # SecantusDB every index entry of a document is rewritten at each update, and a notification is updated at
        # least twice (claimed, sent). Indexes of earlier versions are dropped.
        for retired in RETIRED_INDEXES:
            with contextlib.suppress(OperationFailure):  # not there (a new database, another replica dropped it)
                await self.col.drop_index(retired)
        await self.col.create_index([("state", ASCENDING), ("next_attempt_at", ASCENDING)], name="state_due")
        await self.col.create_index([("milestone_id", ASCENDING), ("created_at", DESCENDING)], name="milestone")
        await self.col.create_index([("agency", ASCENDING), ("created_at", DESCENDING)], name="agency")  # agency readers
        await self.reminders.create_index([("active", ASCENDING), ("next_due", ASCENDING)], name="active_due")
        await self.reminders.create_index([("milestone_id", ASCENDING)], name="milestone")
        await self.acks.create_index([("episode", ASCENDING)], name="episode")
        await self.acks.create_index([("published", ASCENDING)], name="published")
        await self.contacts_audit.create_index([("agency", ASCENDING), ("at", DESCENDING)], name="agency_at")
        await self.col.create_index([("kind", ASCENDING), ("sent_at", ASCENDING)], name="kind_sent")
        await self.col.create_index([("kind", ASCENDING), ("created_at", ASCENDING)], name="kind_created")

    # --- notifications -------------------------------------------------------------------
    async def insert_new(self, docs: Sequence[dict[str, Any]]) -> list[int]:
        """Positions of the docs that were new (a known key = already stored by an earlier delivery)."""
        return await insert_new(self.col, docs)

    async def claim(self, now: datetime, lease: timedelta, limit: int) -> list[dict[str, Any]]:
        """Atomically take up to `limit` due notifications for this instance (leased)."""
        expired = {"state": State.sending.value, "lease_until": {"$lte": now}}
        ids = await self._due_ids(now, limit)
        stale = [d["_id"] async for d in self.col.find(expired, {"_id": 1}).limit(max(0, limit - len(ids)))]
        if not ids and not stale:
            return []
        fields = self.claim_fields(now, lease)
        token = fields["claim"]
        update = {"$set": fields, "$inc": {"attempts": 1}}
        # The state is re-checked per document inside the update: two instances never both win one.
        # (Two simple filters instead of one $or: several times faster on the servers we run on.)
        if ids:
            await self.col.update_many({"_id": {"$in": ids}, "state": {"$in": list(CLAIMABLE)}}, update)
        if stale:
            await self.col.update_many({"_id": {"$in": stale}, **expired}, update)
        return await find_in(self.col, "_id", ids + stale, where={"claim": token})  # those this claim won

    async def _due_ids(self, now: datetime, limit: int) -> list[str]:
        """Up to `limit` claimable notifications due by `now`, earliest first. SecantusDB reads every document of an
        index range before it sorts and limits: with 30,000 notifications pending, finding 200 took 0.6-0.8 s, in a
        range holding 200 of them 6 ms. So each state's due range is walked in windows of about `limit` documents from
        the earliest due time this store has seen (`DueWindows`); now and then it is read whole, which also finds what
        another replica made due before that time."""
        found: list[tuple[datetime, str, str]] = []
        for state in CLAIMABLE:  # each state's earliest, then the earliest of them all
            windows = self._windows.setdefault(state, DueWindows())
            low, taken = windows.start(now, time.monotonic()), 0
            while taken < limit and (low is None or low <= now):
                high = windows.end(low, now)
                query: dict[str, Any] = {"$lte": now} if low is None else {"$gte": low, "$lte": high}
                cursor = self.col.find({"state": state, "next_attempt_at": query}, {"next_attempt_at": 1})
                part = [(d["next_attempt_at"], d["_id"]) async for d in cursor.sort("next_attempt_at", ASCENDING)
                        .limit(limit - taken)]
                found += [(due, doc_id, state) for due, doc_id in part]
                taken += len(part)
                low = windows.after(low, high, part, limit - taken + len(part), now)
        found.sort()
        for due, _, state in found[limit:]:  # read but left for the next claim: the next walk starts there
            windows = self._windows[state]
            windows.floor = due if windows.floor is None else min(windows.floor, due)
        return [doc_id for _, doc_id, _ in found[:limit]]

    def claim_fields(self, now: datetime, lease: timedelta) -> dict[str, Any]:
        """What a claim by this instance sets (a new token each time; `attempts` goes up by one besides)."""
        return {"state": State.sending.value, "lease_until": now + lease, "claim": f"{self.instance}:{uuid.uuid4().hex[:12]}",
                "owner": self.instance, "updated_at": now}

    async def mark_sent_many(self, docs: Sequence[dict[str, Any]], now: datetime,
                             attempts: Sequence[dict[str, Any]] | None = None) -> int:
        """Group commit of confirmed deliveries: one round trip for many (each still guarded by its claim token),
        each keeping its attempt's receipt."""
        attempts = attempts or [None] * len(docs)
        ops = [UpdateOne({"_id": d["_id"], "claim": d["claim"], "state": State.sending.value},
                         {"$set": {"state": State.sent.value, "sent_at": now, "updated_at": now, "last_error": None},
                          "$unset": {"lease_until": "", "claim": ""}, **_log(a)})
               for d, a in zip(docs, attempts)]
        if not ops:
            return 0
        res = await self.col.bulk_write(ops, ordered=False)
        return res.modified_count

    async def release(self, docs: Sequence[dict[str, Any]], now: datetime) -> int:
        """Give claimed, never-attempted notifications back (the attempt counted at claim is undone)."""
        res = await self.col.update_many(
            {"_id": {"$in": [d["_id"] for d in docs]}, "claim": {"$in": sorted({d["claim"] for d in docs})},
             "state": State.sending.value},
            {"$set": {"state": State.pending.value, "next_attempt_at": now, "updated_at": now},
             "$unset": {"lease_until": "", "claim": ""}, "$inc": {"attempts": -1}})
        return res.modified_count

    async def mark_retry(self, doc: dict[str, Any], now: datetime, next_at: datetime, status: int | None,
                         detail: str, attempt: dict[str, Any] | None = None) -> bool:
        res = await self.col.update_one({"_id": doc["_id"], "claim": doc["claim"], "state": State.sending.value}, {
            "$set": {"state": State.retrying.value, "next_attempt_at": next_at, "updated_at": now,
                     "last_status": status, "last_error": detail[:300]},
            "$unset": {"lease_until": "", "claim": ""}, **_log(attempt)})
        return res.modified_count == 1

    async def mark_failed(self, doc: dict[str, Any], now: datetime, status: int | None, detail: str,
                          attempt: dict[str, Any] | None = None) -> bool:
        res = await self.col.update_one({"_id": doc["_id"], "claim": doc["claim"], "state": State.sending.value}, {
            "$set": {"state": State.failed.value, "failed_at": now, "updated_at": now, "last_status": status,
                     "last_error": detail[:300]},
            "$unset": {"lease_until": "", "claim": ""}, **_log(attempt)})
        return res.modified_count == 1

    async def retry_now(self, notification_id: str, now: datetime) -> dict[str, Any] | None:
        """Operator retry of a failed (or waiting) notification: a fresh retry budget, due now."""
        return await self.col.find_one_and_update(
            {"_id": notification_id, "state": {"$in": [State.failed.value, State.retrying.value, State.pending.value]}},
            {"$set": {"state": State.pending.value, "next_attempt_at": now, "attempts": 0, "updated_at": now,
                      "manual_retry_at": now}, "$unset": {"failed_at": ""}},
            return_document=ReturnDocument.AFTER)

    async def get(self, notification_id: str) -> dict[str, Any] | None:
        return await self.col.find_one({"_id": notification_id})

    async def list(self, *, state: str | None, channel: str | None, milestone: str | None, limit: int,
                   before: datetime | None = None, agency: str | None = None,
                   kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if agency is not None:
            query["agency"] = agency
        if kinds is not None:
            query["kind"] = {"$in": list(kinds)}
        if state:
            query["state"] = state
        if channel:
            query["channel"] = channel
        if milestone:
            query["milestone_id"] = milestone
        if before:
            query["created_at"] = {"$lt": before}
        return [d async for d in self.col.find(query).sort("created_at", DESCENDING).limit(limit)]

    async def count_by_state_channel(self) -> dict[tuple[str, str], int]:
        """Open and failed counts per channel in one indexed aggregation; `sent` (the bulk) is never read."""
        pipeline = [{"$match": {"state": {"$in": [*OPEN_STATES, State.failed.value]}}},
                    {"$group": {"_id": {"state": "$state", "channel": "$channel"}, "n": {"$sum": 1}}}]
        return {(d["_id"]["state"], d["_id"]["channel"]): d["n"] async for d in await self.col.aggregate(pipeline)}

    async def episodes_between(self, start: datetime, end: datetime, agency: str | None) -> list[dict[str, Any]]:
        """Missed/at-risk alert episodes (milestone, due date) first notified in [start, end): agency, first
        notification and first delivery."""
        match: dict[str, Any] = {"kind": "alert", "created_at": {"$gte": start, "$lt": end},
                                 "alert_type": {"$in": ["missed", "at_risk"]}}
        if agency is not None:
            match["agency"] = agency
        pipeline = [{"$match": match},
                    {"$group": {"_id": {"m": "$milestone_id", "d": "$alert.due_date"}, "agency": {"$first": "$agency"},
                                "workstream": {"$first": "$workstream"}, "created": {"$min": "$created_at"},
                                "first_sent": {"$min": "$sent_at"}}}]
        return [{"milestone_id": d["_id"]["m"], "due_date": d["_id"]["d"], "agency": d["agency"],
                 "workstream": d["workstream"], "created": d["created"], "first_sent": d.get("first_sent")}
                async for d in await self.col.aggregate(pipeline)]

    async def acknowledgements_of(self, episodes: Iterable[str]) -> list[dict[str, Any]]:
        ids = sorted(set(episodes))
        if not ids:
            return []
        return [d async for d in self.acks.find({"episode": {"$in": ids}}).sort("acknowledged_at", ASCENDING)]

    async def escalation_levels_between(self, start: datetime, end: datetime, agency: str | None) -> dict[int, int]:
        """Escalation levels reached in [start, end): level -> episodes (one per milestone, due date and level)."""
        match: dict[str, Any] = {"kind": "escalation", "created_at": {"$gte": start, "$lt": end}}
        if agency is not None:
            match["agency"] = agency
        pipeline = [{"$match": match},
                    {"$group": {"_id": {"m": "$milestone_id", "d": "$alert.due_date", "l": {"$ifNull": ["$level", 1]}}}},
                    {"$group": {"_id": "$_id.l", "n": {"$sum": 1}}}]
        return {int(d["_id"]): d["n"] async for d in await self.col.aggregate(pipeline)}

    async def unacknowledged_sent_since(self, since: datetime) -> list[datetime]:
        """First delivery time of each unacknowledged missed/at-risk alert episode delivered since `since`."""
        pipeline = [{"$match": {"kind": "alert", "sent_at": {"$gte": since}, "state": State.sent.value,
                                "alert_type": {"$in": ["missed", "at_risk"]}, "acknowledged_at": {"$exists": False}}},
                    {"$group": {"_id": {"m": "$milestone_id", "d": "$alert.due_date"}, "first": {"$min": "$sent_at"}}}]
        return [d["first"] async for d in await self.col.aggregate(pipeline)]

    async def next_due(self) -> datetime | None:
        doc = await self.col.find_one({"state": {"$in": list(CLAIMABLE)}}, {"next_attempt_at": 1},
                                      sort=[("next_attempt_at", ASCENDING)])
        return doc["next_attempt_at"] if doc else None

    # --- reminder schedules --------------------------------------------------------------
    async def reminder_for(self, schedule_id: str) -> dict[str, Any] | None:
        return await self.reminders.find_one({"_id": schedule_id})

    async def reminders_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d async for d in self.reminders.find({"_id": {"$in": ids}})}

    async def insert_reminders(self, docs: list[dict[str, Any]]) -> None:
        """New schedules in one round trip; one that appeared meanwhile (another instance) is kept."""
        await insert_new(self.reminders, [{**d, "sequence": 0, "escalated": False, "level": 0} for d in docs])

    async def start_reminders(self, doc: dict[str, Any], *, reset: bool) -> None:
        """Start a schedule, or refresh the alert it reminds about; `reset` starts counting afresh
        (a milestone missed again after it had recovered)."""
        if reset:
            await self.reminders.replace_one({"_id": doc["_id"]}, {**doc, "sequence": 0, "escalated": False, "level": 0},
                                             upsert=True)
            return
        await self.reminders.update_one(
            {"_id": doc["_id"]},
            {"$setOnInsert": {"sequence": 0, "escalated": False, "level": 0, "missed_since": doc["missed_since"]},
             "$set": {k: v for k, v in doc.items() if k not in ("_id", "missed_since")}},
            upsert=True)

    async def set_latest(self, milestone_id: str, detected_at: datetime, alert_type: str) -> None:
        """A newer non-missed alert (recovered, at_risk) stops the schedules of that milestone."""
        await self.reminders.update_many(
            {"milestone_id": milestone_id, "detected_at": {"$lte": detected_at}},
            {"$set": {"active": False, "stopped_by": alert_type, "detected_at": detected_at}})

    async def due_reminders(self, now: datetime, limit: int = 200) -> list[dict[str, Any]]:
        return [d async for d in self.reminders.find({"active": True, "next_due": {"$lte": now}}).limit(limit)]

    async def advance_reminder(self, schedule: dict[str, Any], *, sequence: int, next_due: datetime,
                               escalated: bool, level: int = 0) -> bool:
        """Compare-and-set on the sequence so two instances never advance one schedule twice."""
        res = await self.reminders.update_one(
            {"_id": schedule["_id"], "sequence": schedule["sequence"], "active": True},
            {"$set": {"sequence": sequence, "next_due": next_due, "escalated": escalated, "level": level}})
        return res.modified_count == 1

    # --- acknowledgements (services/notifier/acknowledgements.py) -------------------------------
    async def add_acknowledgement(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """Store a new acknowledgement (None); if this person already acknowledged this episode, the first one."""
        try:
            await self.acks.insert_one(doc)
            return None
        except DuplicateKeyError:
            return await self.acks.find_one({"_id": doc["_id"]})

    async def acknowledgements(self, episode: str) -> list[dict[str, Any]]:
        return [d async for d in self.acks.find({"episode": episode}).sort("acknowledged_at", ASCENDING)]

    async def episode_acknowledged(self, episode: str) -> bool:
        return await self.acks.find_one({"episode": episode}, {"_id": 1}) is not None

    async def unpublished_acknowledgements(self, before: datetime, limit: int = 100) -> list[dict[str, Any]]:
        query = {"published": False, "acknowledged_at": {"$lte": before}}
        return [d async for d in self.acks.find(query).limit(limit)]

    async def mark_acknowledgement_published(self, ack_id: str, now: datetime) -> None:
        await self.acks.update_one({"_id": ack_id}, {"$set": {"published": True, "published_at": now}})

    async def episode_notifications(self, milestone_id: str, due_date: str) -> list[dict[str, Any]]:
        return [d async for d in self.col.find(
            {"milestone_id": milestone_id, "alert.due_date": due_date},
            {"recipient": 1, "recipient_name": 1, "channel": 1, "kind": 1, "state": 1, "sent_at": 1, "created_at": 1})]

    async def close_episode(self, milestone_id: str, due_date: str, *, recipient: str, at: datetime) -> int:
        """An acknowledgement stops the episode: schedules end, unsent reminders and escalations are cancelled,
        every notification of the episode shows who acknowledged first. Returns how many were cancelled."""
        episode = {"milestone_id": milestone_id, "alert.due_date": due_date}
        await self.reminders.update_many({**episode, "active": True}, {"$set": {
            "active": False, "stopped_by": "acknowledged", "acknowledged_by": recipient, "acknowledged_at": at}})
        cancelled = await self.col.update_many(
            {**episode, "kind": {"$in": ["reminder", "escalation"]}, "state": {"$in": list(CLAIMABLE)}},
            {"$set": {"state": State.cancelled.value, "cancelled_at": at, "updated_at": at},
             "$unset": {"lease_until": "", "claim": ""}})
        await self.col.update_many({**episode, "acknowledged_at": {"$exists": False}},
                                   {"$set": {"acknowledged_at": at, "acknowledged_by": recipient}})
        return cancelled.modified_count

    async def cancel(self, doc: dict[str, Any], now: datetime) -> bool:
        """A claimed reminder or escalation whose episode was acknowledged meanwhile: not sent."""
        res = await self.col.update_one({"_id": doc["_id"], "claim": doc.get("claim"), "state": State.sending.value}, {
            "$set": {"state": State.cancelled.value, "cancelled_at": now, "updated_at": now},
            "$unset": {"lease_until": "", "claim": ""}})
        return res.modified_count == 1

    # --- agencies' own contacts (services/notifier/contacts.py) ------------------------------------
    async def contacts_of(self, agencies: Iterable[str]) -> dict[str, dict[str, Any]]:
        """agency -> its contacts per workstream, for the agencies that registered some."""
        ids = sorted({a for a in agencies if a})
        if not ids:
            return {}
        return {d["_id"]: d["workstreams"] async for d in self.contacts.find({"_id": {"$in": ids}})}

    async def contacts_doc(self, agency: str) -> dict[str, Any] | None:
        return await self.contacts.find_one({"_id": agency})

    async def replace_contacts(self, agency: str, workstreams: dict[str, Any], expected_version: int,
                               now: datetime, audit: dict[str, Any]) -> bool:
        """Compare-and-set on `version`; the audit record (no addresses) is written with it. False: lost a race."""
        doc = {"_id": agency, "workstreams": workstreams, "version": expected_version + 1, "updated_at": now,
               "updated_by": audit["key_id"]}
        try:
            res = await self.contacts.replace_one({"_id": agency, "version": expected_version}, doc,
                                                  upsert=expected_version == 0)
        except DuplicateKeyError:
            return False
        if res.matched_count == 0 and res.upserted_id is None:
            return False
        await insert_new(self.contacts_audit, [{"_id": f"{agency}:{expected_version + 1}", **audit}])
        return True

    async def contacts_history(self, agency: str, limit: int = 50) -> list[dict[str, Any]]:
        return [d async for d in self.contacts_audit.find({"agency": agency}, {"_id": 0}).sort("at", DESCENDING)
                .limit(limit)]


DELIVERY_LOG_LENGTH = 20  # attempts kept per notification (the retry budget is 8; operator retries add more)


def _log(attempt: dict[str, Any] | None) -> dict[str, Any]:
    """`$push` of one attempt's record onto `deliveries`, the newest DELIVERY_LOG_LENGTH kept."""
    if attempt is None:
        return {}
    return {"$push": {"deliveries": {"$each": [attempt], "$slice": -DELIVERY_LOG_LENGTH}}}
