"""Unpadded base64url (RFC 4648 §5), the one encoding of opaque tokens in URLs (acknowledge links, LRS cursors)."""

from __future__ import annotations

import base64


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes of an unpadded token; binascii.Error (a ValueError) for text that is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
