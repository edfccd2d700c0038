"""In-memory `services.notifier.adapters.NotificationStore` that fails on demand (the notifier's service layer
without servers).

`fail_next` makes the next store call (or, with `fail_on`, the next call of that method) raise before it does
anything (the database unreachable); `called` records every call by name, `calls` the delivery outcomes recorded.
Claims are leases as in MongoDB: a notification left `sending` is claimable again once its lease has expired.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fail_on_demand import FailOnDemand

from services.notifier.domain import CLAIMABLE, State

_tokens = itertools.count(1)


class FakeRepo(FailOnDemand):
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.acks: list[dict[str, Any]] = []
        self.calls: list[tuple] = []  # ("sent" | "retry" | "failed", id[, seconds until the retry])

    def _held(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """The stored notification if `doc`'s claim still holds it (every mark is guarded by the claim)."""
        held = self.docs.get(doc["_id"])
        return held if held is not None and held.get("claim") == doc.get("claim") \
            and held["state"] == State.sending.value else None

    def _settle(self, held: dict[str, Any], state: State, now: datetime, **fields: Any) -> None:
        held.update(state=state.value, updated_at=now, **fields)
        held.pop("lease_until", None)
        held.pop("claim", None)

    # --- notifications ------------------------------------------------------------------------------------------
    async def insert_new(self, docs: Sequence[dict[str, Any]]) -> list[int]:
        self._call("insert_new")
        new = []
        for i, d in enumerate(docs):
            if d["_id"] not in self.docs:
                self.docs[d["_id"]] = dict(d)
                new.append(i)
        return new

    async def claim(self, now: datetime, lease: timedelta, limit: int) -> list[dict[str, Any]]:
        self._call("claim")
        due = sorted((d for d in self.docs.values() if d["state"] in CLAIMABLE and d["next_attempt_at"] <= now),
                     key=lambda d: d["next_attempt_at"])[:limit]
        expired = [d for d in self.docs.values()
                   if d["state"] == State.sending.value and d["lease_until"] <= now][:max(0, limit - len(due))]
        token = f"fake:{next(_tokens)}"
        for d in [*due, *expired]:
            d.update(state=State.sending.value, lease_until=now + lease, claim=token, updated_at=now,
                     attempts=d.get("attempts", 0) + 1)
        return [dict(d) for d in [*due, *expired]]

    def claim_fields(self, now: datetime, lease: timedelta) -> dict[str, Any]:
        return {"state": State.sending.value, "lease_until": now + lease, "claim": f"fake:{next(_tokens)}",
                "updated_at": now}

    async def mark_sent_many(self, docs: Sequence[dict[str, Any]], now: datetime,
                             attempts: Sequence[dict[str, Any]] | None = None) -> int:
        self._call("mark_sent_many")
        self.calls.extend(("sent", d["_id"]) for d in docs)
        marked = 0
        for d in docs:
            if (held := self._held(d)) is not None:
                self._settle(held, State.sent, now, sent_at=now, last_error=None)
                marked += 1
        return marked

    async def release(self, docs: Sequence[dict[str, Any]], now: datetime) -> int:
        self._call("release")
        released = 0
        for d in docs:
            if (held := self._held(d)) is not None:
                self._settle(held, State.pending, now, next_attempt_at=now, attempts=held["attempts"] - 1)
                released += 1
        return released

    async def mark_retry(self, doc: dict[str, Any], now: datetime, next_at: datetime, status: int | None,
                         detail: str, attempt: dict[str, Any] | None = None) -> bool:
        self._call("mark_retry")
        self.calls.append(("retry", doc["_id"], (next_at - now).total_seconds()))
        if (held := self._held(doc)) is None:
            return False
        self._settle(held, State.retrying, now, next_attempt_at=next_at, last_status=status, last_error=detail[:300])
        return True

    async def mark_failed(self, doc: dict[str, Any], now: datetime, status: int | None, detail: str,
                          attempt: dict[str, Any] | None = None) -> bool:
        self._call("mark_failed")
        self.calls.append(("failed", doc["_id"]))
        if (held := self._held(doc)) is None:
            return False
        self._settle(held, State.failed, now, failed_at=now, last_status=status, last_error=detail[:300])
        return True

    async def cancel(self, doc: dict[str, Any], now: datetime) -> bool:
        self._call("cancel")
        if (held := self._held(doc)) is None:
            return False
        self._settle(held, State.cancelled, now, cancelled_at=now)
        return True

    async def retry_now(self, notification_id: str, now: datetime) -> dict[str, Any] | None:
        self._call("retry_now")
        held = self.docs.get(notification_id)
        if held is None or held["state"] not in (State.failed.value, State.retrying.value, State.pending.value):
            return None
        held.update(state=State.pending.value, next_attempt_at=now, attempts=0, updated_at=now, manual_retry_at=now)
        held.pop("failed_at", None)
        return dict(held)

    async def get(self, notification_id: str) -> dict[str, Any] | None:
        self._call("get")
        held = self.docs.get(notification_id)
        return None if held is None else dict(held)

    async def list(self, *, state: str | None, channel: str | None, milestone: str | None, limit: int,
                   before: datetime | None = None, agency: str | None = None,
                   kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        self._call("list")
        docs = [d for d in self.docs.values()
                if (agency is None or d.get("agency") == agency) and (kinds is None or d.get("kind") in kinds)
                and (not state or d["state"] == state) and (not channel or d["channel"] == channel)
                and (not milestone or d.get("milestone_id") == milestone)
                and (not before or d["created_at"] < before)]
        return [dict(d) for d in sorted(docs, key=lambda d: d["created_at"], reverse=True)[:limit]]

    async def acknowledgements(self, episode: str) -> list[dict[str, Any]]:
        self._call("acknowledgements")
        return sorted((dict(a) for a in self.acks if a["episode"] == episode), key=lambda a: a["acknowledged_at"])

    # --- reminder schedules ---------------------------------------------------------------------------------------
    async def reminders_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        self._call("reminders_by_id")
        return {i: dict(self.schedules[i]) for i in ids if i in self.schedules}

    async def insert_reminders(self, docs: list[dict[str, Any]]) -> None:
        self._call("insert_reminders")
        for d in docs:
            self.schedules.setdefault(d["_id"], {**d, "sequence": 0, "escalated": False})

    async def start_reminders(self, doc: dict[str, Any], *, reset: bool) -> None:
        self._call("start_reminders")
        if reset or doc["_id"] not in self.schedules:
            self.schedules[doc["_id"]] = {**doc, "sequence": 0, "escalated": False}
        else:
            self.schedules[doc["_id"]].update({k: v for k, v in doc.items() if k not in ("missed_since", "next_due")})

    async def set_latest(self, milestone_id: str, detected_at: datetime, alert_type: str) -> None:
        self._call("set_latest")
        for s in self.schedules.values():
            if s["milestone_id"] == milestone_id and s["detected_at"] <= detected_at:
                s["active"] = False

    async def due_reminders(self, now: datetime, limit: int = 200) -> list[dict[str, Any]]:
        self._call("due_reminders")
        return [dict(s) for s in self.schedules.values() if s["active"] and s["next_due"] <= now][:limit]

    async def advance_reminder(self, schedule: dict[str, Any], *, sequence: int, next_due: datetime,
                               escalated: bool, level: int = 0) -> bool:
        self._call("advance_reminder")
        self.schedules[schedule["_id"]].update(sequence=sequence, next_due=next_due, escalated=escalated, level=level)
        return True
