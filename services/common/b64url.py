"""Unpadded base64url (RFC 4648 §5), the one encoding of opaque tokens in URLs (acknowledge links, LRS cursors).

Decoding is strict: only the alphabet, no padding, and only the one spelling `encode` gives (RFC 4648 §3.5: the
unused bits of the last character are zero). A token has one text: junk or padding after it, which a lenient
decoder drops, is refused rather than taken for the genuine token."""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes of an unpadded token; binascii.Error (a ValueError) for text that is not canonical base64url."""
    if not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise binascii.Error("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if encode(raw) != text:  # non-zero unused bits in the last character: another spelling of the same bytes
        raise binascii.Error("not the canonical base64url of its bytes")
    return raw
