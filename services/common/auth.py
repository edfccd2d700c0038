"""API keys: created by `newnormal keys create`, stored only as SHA-256 hashes, checked on every request.

Keys are 256-bit random tokens, so a fast hash is enough (no password-style stretching needed);
the plaintext is shown once at creation and never stored or logged. A key's id (the first 12 hex
characters of its hash) is safe to show and log; `newnormal keys revoke KEY_ID` takes it.

Roles:
- `agency`: writes its own agency's events; reads its own records and national totals.
- `programme_office` (OPDC only): also plans roadmaps for any agency; reads everything.
- `survey` (kiosk): submits `/v1/responses` for its own agency, nothing else; reads nothing.

Authentication is header-only (`X-API-Key` or `Authorization: Bearer`), so it runs before a body is read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from fastapi import HTTPException, Request
from pymongo.asynchronous.database import AsyncDatabase

from services.common.clock import utc_now
from services.common.mongo import TRANSIENT_ERRORS
from services.contracts.agencies import PROGRAMME_OFFICE, get_registry
from services.contracts.envelope import AUTHORITY, PROGRAMME_OFFICE_AUTHORITY, Claim, Event, EventError, with_authority
from services.contracts.events import FEEDBACK_TYPES, ROADMAP_INPUT_TYPES

log = logging.getLogger(__name__)

KEY_PREFIX = "nnk"
KEY_ID_LENGTH = 12
# nnk_<agency code>_<43 url-safe characters>: anything else is refused without a database lookup.
_KEY_SHAPE = re.compile(r"nnk_[A-Za-z0-9_.-]{1,64}_[A-Za-z0-9_-]{43}")
_KEY_ID_SHAPE = re.compile(r"[0-9a-f]{12}")
_DURATION = re.compile(r"(\d{1,6})\s*([mhdw])")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
LAST_USED_EVERY_SECONDS = 60.0
STALE_ON_OUTAGE_SECONDS = 300.0  # a known key keeps working this long while the key store is unreachable


class Role(StrEnum):
    agency = "agency"
    programme_office = "programme_office"
    survey = "survey"


WRITERS = frozenset({Role.agency, Role.programme_office})  # /v1/events, /xapi/statements, every read
SURVEY_INTAKE = frozenset({Role.agency, Role.programme_office, Role.survey})  # /v1/responses only


_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"type": "object"}}}
# OpenAPI `responses=` of every read route: what the key checks answer.
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, unknown, revoked or expired API key", "content": _PROBLEM_CONTENT},
    403: {"description": "a survey key (`role_not_allowed`), or a filter naming another agency (`agency_not_allowed`)",
          "content": _PROBLEM_CONTENT},
}


def _forbidden(reason: str, detail: str) -> HTTPException:
    return HTTPException(403, detail={"reason": reason, "detail": detail})


def _ambiguous(detail: str) -> HTTPException:
    return HTTPException(400, detail={"reason": "ambiguous_credentials", "detail": detail})


def single_header(headers: Any, name: str) -> str | None:
    """The value of a header that must come at most once (a credential): two values are refused 400
    `ambiguous_credentials`, since the proxies and servers on the way need not agree on which one counts."""
    values = headers.getlist(name)
    if len(values) > 1:
        raise _ambiguous(f"header {name} is sent more than once; send one credential")
    return values[0] if values else None


def authorization_parts(header: str) -> tuple[str, str]:
    """An `Authorization` header's scheme (lower case) and its credentials (RFC 9110 11.4): the one reading of
    the header for every scheme."""
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower(), value.strip()


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer` header (RFC 6750); None when the header is another scheme or holds
    no token."""
    scheme, value = authorization_parts(header)
    return value if scheme == "bearer" and value else None


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header (RFC 7617: base64 of UTF-8 `user:password`); None when
    the header is not Basic or is malformed."""
    scheme, value = authorization_parts(header)
    return _basic_pair(value) if scheme == "basic" else None


def basic_password(header: str) -> str | None:
    """The password of an `Authorization: Basic` header ("" when malformed, None when the header is not Basic)."""
    scheme, value = authorization_parts(header)
    if scheme != "basic":
        return None
    pair = _basic_pair(value)
    return pair[1] if pair is not None else ""


def _basic_pair(value: str) -> tuple[str, str] | None:
    try:
        user, colon, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    return (user, password) if colon else None


@dataclass(frozen=True)
class Credential:
    key: str
    scheme: str  # "x-api-key", "bearer" or "basic": how it came, which decides the 401's WWW-Authenticate


def presented_credential(headers: Any, *, basic: bool = False) -> Credential | None:
    """The one API key a request presents: `X-API-Key`, `Authorization: Bearer` or (`basic`) the password of
    `Authorization: Basic`. Each header at most once, and two different keys by two ways are refused (RFC 6750
    2: a client uses one method per request): which one a server takes must never decide whose request it is."""
    found: list[Credential] = []
    if api_key := single_header(headers, "x-api-key"):
        found.append(Credential(api_key, "x-api-key"))
    authorization = single_header(headers, "authorization") or ""
    if (token := bearer_token(authorization)) is not None:
        found.append(Credential(token, "bearer"))
    elif basic and (password := basic_password(authorization)) is not None:
        found.append(Credential(password, "basic"))
    if len({c.key for c in found}) > 1:
        raise _ambiguous("the request presents two different API keys (X-API-Key and Authorization); send one")
    return found[0] if found else None


@dataclass(frozen=True)
class Principal:
    agency: str
    role: Role
    key_id: str  # first characters of the key hash: safe to log, identifies the key

    @property
    def reads_all(self) -> bool:
        return self.role is Role.programme_office

    def may_submit(self, event: Event) -> EventError | None:
        """An agency writes only its own data; the programme office may also plan roadmaps for any agency;
        a survey key only citizen responses of its agency. The `authority` attribute is the intake's to set."""
        return self.may_claim(Claim(event.type, event.agency, frozenset(event.extensions)), event.id, event.source)

    def may_claim(self, claim: Claim, event_id: str | None, source: str | None) -> EventError | None:
        """`may_submit` for what an event claims: also asked of an event refused for its content, so that the
        answer to another agency's event is 403 whatever its data holds."""
        if AUTHORITY in claim.extensions:
            return EventError("reserved_attribute", f"the {AUTHORITY!r} attribute is set by the intake from the key's "
                              "role; do not send it", event_id=event_id, source=source)
        if self.role is Role.survey and claim.type not in FEEDBACK_TYPES:
            return EventError("role_not_allowed", "a survey key may only submit citizen responses",
                              event_id=event_id, source=source)
        if claim.agency == self.agency:
            return None
        if self.role is Role.programme_office and claim.type in ROADMAP_INPUT_TYPES:
            return None
        return EventError("agency_not_allowed",
                          f"this key belongs to agency {self.agency!r} and may not submit events of agency {claim.agency!r}",
                          event_id=event_id, source=source)

    def stamp(self, event: Event) -> Event:
        """The event as forwarded: a programme-office key's events carry its authority, which the consumers
        trust (the roadmap's ownership rule); an agency code alone, OPDC's included, grants nothing more."""
        return with_authority(event, PROGRAMME_OFFICE_AUTHORITY) if self.role is Role.programme_office else event

    def read_scope(self, requested: str | None, action: str = "read") -> str | None:
        """The agency a read is limited to (None: all agencies, programme office only); `action` "change" when the
        same rule guards a write of an agency's own settings (its contacts), so that a refusal says what it refuses.

        Naming another agency in a filter answers 403 (the registry is public, so this reveals nothing);
        a record of another agency asked for by id answers 404 instead (see `may_see`).
        """
        if self.role is Role.programme_office:
            return requested
        if self.role is not Role.agency:
            raise _forbidden("role_not_allowed", f"a {self.role.value} key may not {action} agency data")
        if requested is not None and requested != self.agency:
            raise _forbidden("agency_not_allowed",
                             f"this key belongs to agency {self.agency!r}; it may not {action} agency {requested[:40]!r}")
        return self.agency

    def may_see(self, owner: str | None) -> bool:
        return self.role is Role.programme_office or (self.role is Role.agency and owner == self.agency)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(digest: str) -> str:
    return digest[:KEY_ID_LENGTH]


def generate_key(agency: str) -> str:
    return f"{KEY_PREFIX}_{agency}_{secrets.token_urlsafe(32)}"


def parse_duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `2w` (or sums such as `1d12h`) -> timedelta; ValueError otherwise."""
    text = text.strip().lower()
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ValueError(f"not a duration: {text[:20]!r} (use e.g. 90d, 12h, 30m, 2w)")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("a key's lifetime must be positive")
    return timedelta(seconds=seconds)


async def create_key(db: AsyncDatabase, agency: str, role: Role = Role.agency, label: str | None = None,
                     expires_in: timedelta | None = None, now: datetime | None = None) -> str:
    if agency not in get_registry():
        raise ValueError(f"unknown agency code {agency!r}")
    if role is Role.programme_office and agency != PROGRAMME_OFFICE:
        raise ValueError(f"the programme-office role belongs to {PROGRAMME_OFFICE!r}")
    now = now or utc_now()
    key = generate_key(agency)
    digest = hash_key(key)
    await db.api_keys.insert_one({
        "_id": digest, "key_id": key_id_of(digest), "agency": agency, "role": role.value, "label": label,
        "created_at": now, "expires_at": now + expires_in if expires_in else None, "last_used_at": None,
        "revoked": False,
    })
    return key


async def list_keys(db: AsyncDatabase, agency: str | None = None) -> list[dict[str, Any]]:
    """Key records without their hashes, oldest first."""
    query = {"agency": agency} if agency else {}
    docs = await db.api_keys.find(query).to_list(None)
    out = []
    for d in docs:
        out.append({"key_id": d.get("key_id") or key_id_of(d["_id"]), "agency": d["agency"], "role": d["role"],
                    "label": d.get("label"), "created_at": d.get("created_at"), "expires_at": d.get("expires_at"),
                    "last_used_at": d.get("last_used_at"), "revoked": bool(d.get("revoked")),
                    "revoked_at": d.get("revoked_at")})
    out.sort(key=lambda k: (_aware(k["created_at"]) or datetime.min.replace(tzinfo=UTC), k["key_id"]))
    return out


async def revoke_key(db: AsyncDatabase, key_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Revoke one key by its id. ValueError if the id is malformed, unknown or ambiguous."""
    key_id = key_id.strip().lower()
    if not _KEY_ID_SHAPE.fullmatch(key_id):
        raise ValueError(f"a key id is {KEY_ID_LENGTH} hexadecimal characters (see `newnormal keys list`)")
    # A range on _id finds keys created before ids were stored too (ids are hex prefixes of _id).
    docs = await db.api_keys.find({"_id": {"$gte": key_id, "$lt": key_id + "g"}}).to_list(10)
    if not docs:
        raise ValueError(f"no key with id {key_id}")
    if len(docs) > 1:
        raise ValueError(f"key id {key_id} is ambiguous; revoke by agency instead")
    doc = docs[0]
    await db.api_keys.update_one({"_id": doc["_id"]},
                                 {"$set": {"revoked": True, "revoked_at": now or utc_now()}})
    return {"key_id": key_id, "agency": doc["agency"], "role": doc["role"], "label": doc.get("label"),
            "already_revoked": bool(doc.get("revoked"))}


async def revoke_keys(db: AsyncDatabase, agency: str, label: str | None = None) -> int:
    """Revoke every live key of an agency (only those with `label`, when given)."""
    query: dict[str, Any] = {"agency": agency, "revoked": False}
    if label is not None:
        query["label"] = label
    result = await db.api_keys.update_many(query, {"$set": {"revoked": True, "revoked_at": utc_now()}})
    return result.modified_count


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass
class _Entry:
    fetched: float  # monotonic
    principal: Principal | None
    expires_at: datetime | None = None
    last_used: datetime | None = None


class _Lru:
    """A bounded mapping: the least recently used entry goes first when full."""

    def __init__(self, max_entries: int):
        self.max = max_entries
        self.data: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, key: str) -> _Entry | None:
        entry = self.data.get(key)
        if entry is not None:
            self.data.move_to_end(key)
        return entry

    def put(self, key: str, entry: _Entry) -> None:
        self.data[key] = entry
        self.data.move_to_end(key)
        while len(self.data) > self.max:
            self.data.popitem(last=False)

    def pop(self, key: str) -> None:
        self.data.pop(key, None)

    def __len__(self) -> int:
        return len(self.data)


class ApiKeyAuth:
    """FastAPI dependency: `X-API-Key: <key>` or `Authorization: Bearer <key>` -> Principal.

    401 without a valid key; 403 `role_not_allowed` for a role the route does not admit. Calling the
    object itself admits agency and programme-office keys only, so a route that says nothing refuses
    survey keys; `/v1/responses` uses `auth.survey_intake`.

    Known keys are cached for `cache_seconds` (<= 10 s, so a revocation reaches every replica within
    that time), unknown ones for `unknown_seconds`, each in its own bounded LRU so a flood of random
    keys can neither grow memory nor push real keys out. Expiry is checked on every request.
    """

    def __init__(self, db_getter: Callable[[], AsyncDatabase], cache_seconds: float = 5.0, *,
                 unknown_seconds: float = 2.0, max_entries: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic, now: Callable[[], datetime] | None = None):
        self._db_getter = db_getter
        self._ttl = cache_seconds
        self._unknown_ttl = unknown_seconds
        self._known = _Lru(max_entries)
        self._unknown = _Lru(max_entries)
        self._monotonic = monotonic
        self._now = now or utc_now
        self._touching: set[asyncio.Task] = set()
        self.survey_intake = self.allowing(SURVEY_INTAKE)

    def allowing(self, roles: frozenset[Role]) -> Callable[[Request], Any]:
        async def dependency(request: Request) -> Principal:
            return await self.authenticate(request, roles)
        return dependency

    async def __call__(self, request: Request) -> Principal:
        return await self.authenticate(request, WRITERS)

    async def authenticate(self, request: Request, roles: frozenset[Role], *, basic_realm: str | None = None) -> Principal:
        """`basic_realm`: the route also takes the key as the password of HTTP Basic (xAPI clients send it so)."""
        credential = presented_credential(request.headers, basic=basic_realm is not None)
        challenge = {"WWW-Authenticate": "Bearer" if basic_realm is None else f'Bearer, Basic realm="{basic_realm}"'}
        # An empty Basic password is a wrong key (401 invalid_api_key), as an LRS client would expect.
        if credential is None or (not credential.key and credential.scheme != "basic"):
            auth = request.headers.get("authorization", "")
            raise HTTPException(401, detail={"reason": "missing_api_key", "detail": (
                "send the API key in X-API-Key or as Authorization: Bearer <key>"
                + (" or as the HTTP Basic password" if basic_realm is not None else "")
                + (" (not Basic or another scheme)" if auth.strip() and basic_realm is None else ""))},
                                headers=challenge)
        principal = await self.lookup(credential.key)
        if principal is None:
            raise HTTPException(401, detail={"reason": "invalid_api_key", "detail": "unknown, revoked or expired API key"
                                             + (" (HTTP Basic: the key is the password)"
                                                if credential.scheme == "basic" else "")},
                                headers=challenge)
        if principal.role not in roles:
            raise _forbidden("role_not_allowed", f"a {principal.role.value} key may not use this route")
        return principal

    async def lookup(self, key: str) -> Principal | None:
        if len(key) > 200 or not _KEY_SHAPE.fullmatch(key):
            return None  # not a key we ever issued: no lookup, nothing cached
        digest = hash_key(key)
        mono = self._monotonic()
        entry = self._known.get(digest)
        if entry is None:
            entry = self._unknown.get(digest)
            if entry is not None and mono - entry.fetched < self._unknown_ttl:
                return None
        elif mono - entry.fetched < self._ttl:
            return self._admit(digest, entry)
        try:
            doc = await self._db_getter().api_keys.find_one({"_id": digest})
        except TRANSIENT_ERRORS:
            if entry is not None and entry.principal is not None and mono - entry.fetched < STALE_ON_OUTAGE_SECONDS:
                return self._admit(digest, entry)  # the store is away: a key known a moment ago is the best answer
            raise HTTPException(503, detail={"reason": "database_unavailable",
                                             "detail": "the key store is unreachable; retry later"},
                                headers={"Retry-After": "5"}) from None
        if doc is None or doc.get("revoked"):
            self._known.pop(digest)
            self._unknown.put(digest, _Entry(mono, None))
            return None
        self._unknown.pop(digest)
        entry = _Entry(mono, Principal(doc["agency"], Role(doc["role"]), doc.get("key_id") or key_id_of(digest)),
                       _aware(doc.get("expires_at")), _aware(doc.get("last_used_at")))
        self._known.put(digest, entry)
        return self._admit(digest, entry)

    def _admit(self, digest: str, entry: _Entry) -> Principal | None:
        now = self._now()
        if entry.expires_at is not None and now >= entry.expires_at:
            return None
        if entry.last_used is None or (now - entry.last_used).total_seconds() >= LAST_USED_EVERY_SECONDS:
            entry.last_used = now
            self._touch(digest, now)
        return entry.principal

    def _touch(self, digest: str, now: datetime) -> None:
        """Record `last_used_at` in the background: best effort, never on the request's path."""
        async def write() -> None:
            try:
                await self._db_getter().api_keys.update_one({"_id": digest}, {"$set": {"last_used_at": now}})
            except Exception as exc:  # a lost timestamp is harmless; the request already went on
                log.debug("last_used_at not recorded", extra={"key_id": key_id_of(digest), "error": type(exc).__name__})

        try:
            task = asyncio.get_running_loop().create_task(write())
        except RuntimeError:
            return
        self._touching.add(task)
        task.add_done_callback(self._touching.discard)

    async def settled(self) -> None:
        """Wait for the background `last_used_at` writes started so far (shutdown, and tests that read them)."""
        if self._touching:
            await asyncio.gather(*list(self._touching), return_exceptions=True)

    def cache_sizes(self) -> tuple[int, int]:
        return len(self._known), len(self._unknown)
