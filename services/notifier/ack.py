"""Acknowledge links: signed, expiring tokens bound to one notification and its recipient (pure, no I/O).

A token is `v1.<payload>.<mac>` (base64url, no padding): the payload names the notification, the routing
recipient and the expiry (Unix seconds); the MAC is HMAC-SHA256 over a domain-separated message under the
notifier's acknowledgement secret (several during a rotation: the first signs, any verifies). The link is
`/ack/<notification id>/<token>`: a token signed for another notification is refused even if genuine, so
a link forwarded or copied into another message acknowledges nothing else. Opening the link (GET) only
shows the page; acknowledging is the page's POST, so mail scanners and link previews never acknowledge.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from services.common import b64url
from services.contracts.dates import be_year_refusal

VERSION = "v1"
_DOMAIN = b"newnormal.notifier.ack.v1\x00"
NOTE_MAX_CHARS = 1000


class TokenProblem(StrEnum):
    malformed = "ack_token_malformed"
    forged = "ack_token_invalid"
    expired = "ack_token_expired"
    other_notification = "ack_token_for_another_notification"


class TokenRefused(ValueError):
    def __init__(self, problem: TokenProblem):
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class AckClaim:
    notification_id: str
    recipient: str
    expires_at: datetime


def _mac(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()


def make_token(secrets: tuple[str, ...], notification_id: str, recipient: str, expires_at: datetime) -> str:
    """A token for `recipient` to acknowledge `notification_id` until `expires_at` (signed with the first secret)."""
    if not secrets:
        raise ValueError("no acknowledgement secret")
    body = json.dumps({"n": notification_id, "r": recipient, "e": int(expires_at.timestamp())},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    payload = b64url.encode(body)
    return f"{VERSION}.{payload}.{b64url.encode(_mac(secrets[0], payload))}"


def verify_token(secrets: tuple[str, ...], token: str, notification_id: str, now: datetime) -> AckClaim:
    """The claim of a genuine, unexpired token for `notification_id`; TokenRefused otherwise.

    The MAC is checked before the payload is trusted or even decoded as JSON, in constant time."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION or not parts[1] or not parts[2] or len(token) > 1000:
        raise TokenRefused(TokenProblem.malformed)
    try:  # both parts are canonical base64url before either is used (the payload is signed as its text)
        mac, body = b64url.decode(parts[2]), b64url.decode(parts[1])
    except (binascii.Error, ValueError):
        raise TokenRefused(TokenProblem.malformed) from None
    if not any(hmac.compare_digest(mac, _mac(secret, parts[1])) for secret in secrets):
        raise TokenRefused(TokenProblem.forged)
    try:
        claim = json.loads(body)
        claimed = AckClaim(str(claim["n"]), str(claim["r"]), datetime.fromtimestamp(int(claim["e"]), UTC))
    except (ValueError, KeyError, TypeError, OverflowError):
        raise TokenRefused(TokenProblem.malformed) from None
    if not hmac.compare_digest(claimed.notification_id.encode(), notification_id.encode()):
        raise TokenRefused(TokenProblem.other_notification)
    if now >= claimed.expires_at:
        raise TokenRefused(TokenProblem.expired)
    return claimed


def expiry(sent_at: datetime, days: float) -> datetime:
    return sent_at + timedelta(days=days)


def acknowledgement_id(milestone_id: str, due_date: str, recipient: str) -> str:
    """One acknowledgement per person, milestone and due date: a second submission changes nothing."""
    return f"{milestone_id}|{due_date}|{recipient}"


def episode_id(milestone_id: str, due_date: str) -> str:
    """What an acknowledgement closes: the reminders and escalation of one milestone for one due date."""
    return f"{milestone_id}|{due_date}"


class FormProblem(ValueError):
    def __init__(self, reason: str, detail_th: str, detail_en: str):
        super().__init__(detail_en)
        self.reason, self.detail_th, self.detail_en = reason, detail_th, detail_en


def parse_forecast(text: str | None, today: date, horizon: date) -> date | None:
    """The optional forecast completion date of the page's form (ISO from the date input): today or later,
    within the programme's horizon, Gregorian (a Buddhist-era year typed by hand is refused with a hint)."""
    if text is None or not text.strip():
        return None
    try:
        value = date.fromisoformat(text.strip())
    except ValueError:
        raise FormProblem("forecast_invalid", "วันที่คาดว่าจะเสร็จไม่ถูกต้อง", "the forecast date is not a date") from None
    refused = be_year_refusal(value.year)  # the wire's one date rule (services/contracts/dates.py)
    if refused is not None:
        reason, detail = refused
        raise FormProblem(reason, f"กรุณาระบุปี ค.ศ. (พ.ศ. {value.year} = ค.ศ. {value.year - 543})"
                          if reason == "buddhist_era_date" else "วันที่ไม่อยู่ในกรอบเวลาของแผนงาน", detail)
    if value < today:
        raise FormProblem("forecast_in_past", "วันที่คาดว่าจะเสร็จต้องไม่ก่อนวันนี้", "the forecast date is in the past")
    if value > horizon:
        raise FormProblem("date_out_of_range", "วันที่คาดว่าจะเสร็จเกินกรอบเวลาของแผนงาน",
                          "the forecast date is beyond the programme's horizon")
    return value
