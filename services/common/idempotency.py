"""Client idempotency keys for POST routes that make an event id on the server (`Idempotency-Key`, the IETF
httpapi draft's header name).

A client (the survey page, a kiosk) makes one key per submission and re-sends it with every retry. The first
request with a key claims it (scoped to the authenticated key's agency) and fixes what the retry must repeat:
a fingerprint of the body, and the server-made parts of the event (its time). The event id is derived from the
key, so a retry publishes the very same event and the consumer's (source, id) dedup makes it exactly-once end to
end; the same key with another body is refused (409 `idempotency_key_reused`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from services.common.mongo import insert_if_new, rekey_documents

HEADER = "Idempotency-Key"
# 8 to 128 characters of [A-Za-z0-9_-]: a UUID (with or without hyphens), a ULID or 32 random hex digits fit.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
KEY_FORMAT = "8 to 128 characters of A-Z, a-z, 0-9, '_' and '-' (e.g. a random UUID)"
INVALID_KEY = "invalid_idempotency_key"
KEY_REUSED = "idempotency_key_reused"


def valid_key(value: str) -> bool:
    return bool(KEY_PATTERN.fullmatch(value))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(body: Any) -> str:
    """SHA-256 of the body's canonical JSON: key order and whitespace do not make two bodies different."""
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str))


def event_id(key: str) -> str:
    """The event id a key stands for. Hashed and prefixed, so a chosen key can never equal a server-made id
    (a UUID) of the same source, whose first event would then win and swallow this one."""
    return "idem-" + _sha256(key)[:40]


@dataclass(frozen=True)
class Claim:
    fingerprint: str
    time: datetime  # the event time the first request stamped: every retry repeats it
    first: bool  # this request made the claim


class IdempotencyStore:
    """Claims of idempotency keys in MongoDB: `_id` "<scope> <key_sha256>" (`claim_id`; the key itself is not
    kept), the body's fingerprint, the event time and when it was claimed (`claimed_at`, for a retention index)."""

    def __init__(self, collection: AsyncCollection):
        self.collection = collection

    async def claim(self, scope: str, key: str, body_fingerprint: str, time: datetime) -> Claim:
        """Claim `key` for this body, or return the earlier claim (first writer wins, atomically on `_id`)."""
        _id = claim_id(scope, key)
        for _ in range(3):
            doc = {"_id": _id, "fingerprint": body_fingerprint, "time": time, "claimed_at": time}
            if await insert_if_new(self.collection, doc):
                return Claim(body_fingerprint, time, True)
            stored = await self.collection.find_one({"_id": _id})
            if stored is not None:
                return Claim(stored["fingerprint"], stored["time"], False)
        raise RuntimeError("idempotency claim neither inserted nor found")  # deleted under us three times

    async def release(self, scope: str, key: str) -> None:
        """Free a key whose first request was refused (nothing published), so the corrected request may use it."""
        await self.collection.delete_one({"_id": claim_id(scope, key)})

    async def rekey_legacy(self) -> int:
        """Claims stored as {scope, key_sha256} documents, moved to their string `_id`; returns how many."""
        return await rekey_documents(self.collection, _legacy_claim_id)


def claim_id(scope: str, key: str) -> str:
    # A string, not a document: SecantusDB scans the collection for a document-valued `_id` (see document_id).
    return f"{scope} {_sha256(key)}"


def _legacy_claim_id(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"scope", "key_sha256"}:
        return f"{value['scope']} {value['key_sha256']}"
    return value
