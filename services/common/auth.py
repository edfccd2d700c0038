"""Agency API keys: created by `newnormal keys create`, stored only as SHA-256 hashes.

Keys are 256-bit random tokens, so a fast hash is enough (no password-style stretching needed);
the plaintext is shown once at creation and never stored or logged.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from fastapi import HTTPException, Request
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import TRANSIENT_ERRORS
from services.contracts.agencies import PROGRAMME_OFFICE, get_registry
from services.contracts.envelope import Event, EventError
from services.contracts.events import ROADMAP_INPUT_TYPES

KEY_PREFIX = "nnk"


class Role(StrEnum):
    agency = "agency"
    programme_office = "programme_office"


@dataclass(frozen=True)
class Principal:
    agency: str
    role: Role
    key_id: str  # first characters of the key hash: safe to log, identifies the key

    def may_submit(self, event: Event) -> EventError | None:
        """An agency writes only its own data; the programme office may also plan roadmaps for any agency."""
        if event.agency == self.agency:
            return None
        if self.role is Role.programme_office and event.type in ROADMAP_INPUT_TYPES:
            return None
        return EventError("agency_not_allowed",
                          f"this key belongs to agency {self.agency!r} and may not submit events of agency {event.agency!r}",
                          event_id=event.id, source=event.source)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key(agency: str) -> str:
    return f"{KEY_PREFIX}_{agency}_{secrets.token_urlsafe(32)}"


async def create_key(db: AsyncDatabase, agency: str, role: Role = Role.agency, label: str | None = None) -> str:
    if agency not in get_registry():
        raise ValueError(f"unknown agency code {agency!r}")
    if role is Role.programme_office and agency != PROGRAMME_OFFICE:
        raise ValueError(f"the programme-office role belongs to {PROGRAMME_OFFICE!r}")
    key = generate_key(agency)
    await db.api_keys.insert_one({
        "_id": hash_key(key), "agency": agency, "role": role.value, "label": label,
        "created_at": datetime.now(UTC), "revoked": False,
    })
    return key


async def revoke_keys(db: AsyncDatabase, agency: str) -> int:
    result = await db.api_keys.update_many({"agency": agency, "revoked": False}, {"$set": {"revoked": True}})
    return result.modified_count


class ApiKeyAuth:
    """FastAPI dependency: `X-API-Key: <key>` or `Authorization: Bearer <key>` -> Principal, else 401."""

    def __init__(self, db_getter, cache_seconds: float = 30.0):
        self._db_getter = db_getter
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._ttl = cache_seconds

    async def __call__(self, request: Request) -> Principal:
        key = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key:
            raise HTTPException(401, detail={"reason": "missing_api_key", "detail": "send the agency key in X-API-Key"},
                                headers={"WWW-Authenticate": "Bearer"})
        principal = await self.lookup(key)
        if principal is None:
            raise HTTPException(401, detail={"reason": "invalid_api_key", "detail": "unknown or revoked API key"},
                                headers={"WWW-Authenticate": "Bearer"})
        return principal

    async def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        try:
            doc = await self._db_getter().api_keys.find_one({"_id": digest, "revoked": False})
        except TRANSIENT_ERRORS:
            if cached:  # the database is away: a key known a moment ago is still the best answer
                return cached[1]
            raise HTTPException(503, detail={"reason": "database_unavailable",
                                             "detail": "the key store is unreachable; retry later"},
                                headers={"Retry-After": "5"}) from None
        principal = Principal(doc["agency"], Role(doc["role"]), digest[:12]) if doc else None
        self._cache[digest] = (now, principal)
        return principal
