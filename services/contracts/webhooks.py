"""Webhook signatures as the Standard Webhooks specification 1.0 defines them (symmetric scheme `v1`).

This is part of the wire between the notifier and receivers nobody on the project wrote, hence it lives in
`contracts` and imports only the standard library: a receiver can copy or import this one file.

Every delivery carries three headers:

- `webhook-id`: unique per message and the same on every retry of it (receivers de-duplicate on it);
- `webhook-timestamp`: the attempt's time, integer Unix seconds (receivers refuse stale or future ones);
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per signing secret,
  separated by spaces, so a receiver that knows either the old or the new secret verifies during rotation.

Secrets are `whsec_<base64 of 24 to 64 random bytes>`, the spec's serialization. A plain passphrase is refused
(`WebhookSecretError`) rather than used as raw bytes: the spec's libraries base64-decode whatever follows the
prefix, so a receiver using them with a passphrase would compute a different key and reject every delivery, and
a typed passphrase rarely carries the spec's minimum of 192 random bits. Make one with `generate_secret()`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _random
import time
from collections.abc import Iterable, Mapping, Sequence

SECRET_PREFIX = "whsec_"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
MIN_SECRET_BYTES = 24  # the spec's range for HMAC-SHA256 secrets
MAX_SECRET_BYTES = 64

# The id is part of the signed text and "." is its separator: an id with a "." could be re-split against the
# timestamp (the spec forbids it). Bounded, printable ASCII, so a hostile header costs nothing to reject.
_ID = re.compile(r"[!-~]{1,256}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() would also accept "+5", " 5", "๕" and "1_0"
_MAX_SIGNATURES = 32  # a header listing more is hostile, not rotation


class WebhookSecretError(ValueError):
    """A configured secret is not `whsec_<base64>` of 24 to 64 bytes. The message never contains the secret."""


class WebhookVerificationError(ValueError):
    """A delivery failed verification; `reason` is one short, stable code a receiver can log or count."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def generate_secret(nbytes: int = 32) -> str:
    """A new random secret in the spec's format (32 bytes = 256 bits by default)."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise WebhookSecretError(f"a secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(nbytes)).decode("ascii")


def parse_secret(secret: str | bytes) -> bytes:
    """The key bytes of a `whsec_<base64>` secret (padding optional, as in the spec's libraries).

    Raw bytes are taken as the key itself (already decoded)."""
    if isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
            raise WebhookSecretError(f"a webhook secret must look like {SECRET_PREFIX}<base64>; "
                                     "generate one with services.contracts.webhooks.generate_secret()")
        text = secret[len(SECRET_PREFIX):].strip()
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookSecretError(f"a webhook secret must be {SECRET_PREFIX} followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise WebhookSecretError(f"a webhook secret must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, "
                                 f"not {len(key)}")
    return key


def split_secrets(value: str) -> tuple[str, ...]:
    """Several secrets in one setting, separated by spaces or commas (the newest first, by convention)."""
    return tuple(s for s in re.split(r"[\s,]+", value) if s)


def _mac(key: bytes, msg_id: str, timestamp: int | str, payload: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256).digest()


def sign(secret: str | bytes, msg_id: str, timestamp: int, payload: bytes) -> str:
    """One signature, `v1,<base64>`, of the exact bytes that are sent."""
    if not _ID.fullmatch(msg_id) or "." in msg_id:
        raise ValueError("a webhook id is 1-256 printable ASCII characters without '.'")
    mac = _mac(parse_secret(secret), msg_id, int(timestamp), payload)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode('ascii')}"


def sign_headers(secrets: Sequence[str | bytes], msg_id: str, payload: bytes, *,
                 timestamp: int | None = None) -> dict[str, str]:
    """The three headers of one attempt; one signature per secret (rotation). `timestamp` defaults to now."""
    if not secrets:
        raise WebhookSecretError("signing needs at least one secret")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(ts),
            HEADER_SIGNATURE: " ".join(sign(s, msg_id, ts, payload) for s in secrets)}


def _header(headers: Mapping[str, str], name: str) -> str:
    # Case-insensitive lookup over any mapping (plain dicts as well as Starlette/httpx header objects).
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    if not isinstance(value, str) or not value.strip():
        raise WebhookVerificationError("missing_header", f"the {name} header is missing")
    return value.strip()


def _candidates(header: str) -> Iterable[bytes]:
    """The decoded `v1` signatures of the header; other versions (v1a, v2...) are skipped, as the spec says."""
    for entry in header.split()[:_MAX_SIGNATURES]:
        version, sep, value = entry.partition(",")
        if version != SIGNATURE_VERSION or not sep:
            continue
        try:
            yield base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue


def verify(payload: bytes | str, headers: Mapping[str, str], secrets: Sequence[str | bytes], *,
           tolerance: float = DEFAULT_TOLERANCE_SECONDS, now: float | None = None) -> None:
    """Accept a delivery or raise `WebhookVerificationError` (reason: missing_header, bad_id, bad_timestamp,
    timestamp_too_old, timestamp_too_new, no_matching_signature).

    `payload` is the raw body as received (never a re-serialized parse). Any of `secrets` may have made any of
    the header's signatures. Comparison is constant-time. A receiver should also remember `webhook-id`s for the
    tolerance window and drop repeats. A bad configured secret raises `WebhookSecretError` instead."""
    keys = [parse_secret(s) for s in secrets]
    if not keys:
        raise WebhookSecretError("verification needs at least one secret")
    msg_id = _header(headers, HEADER_ID)
    raw_ts = _header(headers, HEADER_TIMESTAMP)
    sig_header = _header(headers, HEADER_SIGNATURE)
    if not _ID.fullmatch(msg_id) or "." in msg_id:
        raise WebhookVerificationError("bad_id", "webhook-id is not 1-256 printable ASCII characters without '.'")
    if not _TIMESTAMP.fullmatch(raw_ts):
        raise WebhookVerificationError("bad_timestamp", "webhook-timestamp is not integer Unix seconds")
    timestamp = int(raw_ts)
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("timestamp_too_old", "webhook-timestamp is older than the tolerance")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("timestamp_too_new", "webhook-timestamp is further ahead than the tolerance")
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    expected = [_mac(key, msg_id, raw_ts, body) for key in keys]  # the timestamp exactly as it was signed
    matched = False
    for candidate in _candidates(sig_header):
        for mac in expected:
            # No early exit: the time taken does not tell which secret or which position matched.
            matched |= hmac.compare_digest(mac, candidate)
    if not matched:
        raise WebhookVerificationError("no_matching_signature", "no webhook-signature matches a known secret")


__all__ = ["DEFAULT_TOLERANCE_SECONDS", "HEADER_ID", "HEADER_SIGNATURE", "HEADER_TIMESTAMP", "SECRET_PREFIX",
           "WebhookSecretError", "WebhookVerificationError", "generate_secret", "parse_secret", "sign",
           "sign_headers", "split_secrets", "verify"]
