"""Redaction of personal data in free-text comments (pure, no I/O).

What is replaced, each by a typed ASCII placeholder:

- Thai national ID numbers: 13 digits, plain or grouped 1-4-5-2-1 with dashes or spaces, and only
  when the check digit is valid (a 13-digit number that fails the checksum is not an ID).
- Thai phone numbers: mobiles 06/08/09 + 8 digits, Bangkok landlines 02 + 7 digits, provincial
  landlines 03-07 + 7 digits, with dashes/spaces/dots, a leading `+66` (or `+66 0`) instead of `0`.
- E-mail addresses.
- Bank-account-like numbers: 10-12 digits, plain or grouped with dashes (Thai banks print
  XXX-X-XXXXX-X); plain 10-digit numbers that are phones are counted as phones.

Thai digits (๐-๙) are matched as ASCII digits (the mapping is one character for one character, so
positions line up) while every other character of the text is kept as written. Dates (30/09/2569,
2026-09-30), amounts (1,500 บาท, 1500000), times (10:30) and years are left alone: none of them
is a 10-13 digit run and slashes, colons and commas are not number separators here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from services.common.thai_calendar import is_valid_thai_national_id, thai_digits_to_ascii

NATIONAL_ID = "NATIONAL_ID"
PHONE = "PHONE"
EMAIL = "EMAIL"
BANK_ACCOUNT = "BANK_ACCOUNT"
KINDS = (NATIONAL_ID, PHONE, EMAIL, BANK_ACCOUNT)


def placeholder(kind: str) -> str:
    return f"[REDACTED:{kind}]"


_PLACEHOLDER_RE = re.compile(r"\[REDACTED:(" + "|".join(KINDS) + r")\]")

# Digit boundaries: never match the middle of a longer number (or of a dashed number).
_B = r"(?<![\d\-])"
_E = r"(?![\d])(?!-\d)"
_SEP = r"[\-\s.]?"

_EMAIL_RE = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9])")
# 1-4-5-2-1 grouping with one separator kind, or 13 digits in a row.
_NATIONAL_ID_RE = re.compile(_B + r"(?:\d{13}|\d([\-\s])\d{4}\1\d{5}\1\d{2}\1\d)" + _E)
_PHONE_RE = re.compile(
    r"(?:(?<![\w+])\+66[\s\-]?(?:\(0\)[\s\-]?|0[\s\-]?)?|" + _B + r"0)"  # +66 (optionally +66 0 / +66 (0)) or 0
    r"(?:[689]\d" + _SEP + r"\d{3}" + _SEP + r"\d{4}"          # mobile 08X-XXX-XXXX
    r"|[689]" + _SEP + r"\d{4}" + _SEP + r"\d{4}"              # mobile 08-1234-5678
    r"|2" + _SEP + r"\d{3}" + _SEP + r"\d{4}"                  # Bangkok 02-XXX-XXXX
    r"|[3-7]\d" + _SEP + r"\d{3}" + _SEP + r"\d{4}"            # provincial 0XX-XXX-XXXX (9 digits + 1)
    r"|[3-7]\d" + _SEP + r"\d{3}" + _SEP + r"\d{3})"           # provincial 0XX-XXX-XXX
    + _E
)
_BANK_RE = re.compile(_B + r"(?:\d{10,12}|\d{2,4}(?:-\d{1,6}){2,4})" + _E)


@dataclass(frozen=True)
class Redaction:
    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _sub(pattern: re.Pattern[str], kind: str, text: str, counts: Counter, accept=None) -> str:
    """Replace matches found on the ASCII-digit view of `text` in `text` itself."""
    view = thai_digits_to_ascii(text)
    out: list[str] = []
    last = 0
    for match in pattern.finditer(view):
        if accept is not None and not accept(match.group(0)):
            continue
        out.append(text[last:match.start()])
        out.append(placeholder(kind))
        counts[kind] += 1
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def _bank_like(candidate: str) -> bool:
    return 10 <= sum(c.isdigit() for c in candidate) <= 12


def redact(text: str) -> Redaction:
    """Replace personal data in `text` with typed placeholders; return the text and counts by type."""
    counts: Counter = Counter()
    text = _sub(_EMAIL_RE, EMAIL, text, counts)
    text = _sub(_NATIONAL_ID_RE, NATIONAL_ID, text, counts, accept=is_valid_thai_national_id)
    text = _sub(_PHONE_RE, PHONE, text, counts)
    text = _sub(_BANK_RE, BANK_ACCOUNT, text, counts, accept=_bank_like)
    return Redaction(text, {k: counts[k] for k in KINDS if counts[k]})


def count_placeholders(text: str | None) -> dict[str, int]:
    """Redactions recorded in an already redacted text (the original is gone by then)."""
    if not text:
        return {}
    counts = Counter(m.group(1) for m in _PLACEHOLDER_RE.finditer(text))
    return {k: counts[k] for k in KINDS if counts[k]}
