"""Agencies keep their own contacts: the people responsible per workstream and their escalation contacts.

`PUT /v1/contacts/{agency}` (that agency's key or the programme office) replaces the agency's contacts;
`GET` reads them back; every change is audited (who, when, which workstreams, a digest of the content:
the audit holds no address). A route names `owner_contacts` among its recipients, or
`owner_escalation_contacts` among its escalation recipients, instead of people, so ~155 agencies need no
edit of the routes file: the owner agency's contacts for the alert's workstream (else its `*` entry) are
told. E-mail addresses and LINE ids are personal data: never logged, never on Kafka, never in the audit,
readable only by the agency and the programme office.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.contracts.common_types import ANY_SPACE, STRIPPED, Workstream
from services.contracts.problems import worded
from services.notifier.domain import OWNER_CONTACTS, OWNER_ESCALATION_CONTACTS, Channel, Target

ANY_WORKSTREAM = "*"
WHICH = {OWNER_CONTACTS: "responsible", OWNER_ESCALATION_CONTACTS: "escalation"}

# An address is what the mail is delivered to, exactly: a local part without RFC 5322's specials (a `:` would make
# the header a group and `( )` a comment, so that `finance:someone@elsewhere.org` is shown as one address and
# delivered to another) and a domain of letters, digits, hyphens and dots (Unicode letters too: Thai domains).
_LOCAL_PART = f"[^@<>()\\[\\]\\\\:;,\"'{ANY_SPACE}\\x00-\\x1f\\x7f]+"
_DOMAIN_PART = "(?:[-.0-9A-Za-z]|[^\\x00-\\x7f" + ANY_SPACE + "])+"
EMAIL_PATTERN = worded(f"^{_LOCAL_PART}@{_DOMAIN_PART}\\.{_DOMAIN_PART}$",
                       "must be one e-mail address, name@domain.tld, without spaces, quotes or ( ) < > [ ] \\ : ; ,")
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]
LineId = Annotated[str, Field(pattern=worded(r"^[UCR][0-9a-f]{32}$", "must be a LINE id: U, C or R, then 32 "
                                                                    "lower-case hexadecimal digits"), description="LINE userId (U…), groupId (C…) or roomId (R…)")]


# One line with something besides spaces in it, as a JSON Schema `pattern` (so that a schema validator and ours refuse
# the same texts; no look-ahead in either dialect): no C0 control character nor DEL anywhere.
_CONTROL = "\\x00-\\x1f\\x7f"
ONE_LINE_NOT_BLANK = worded(f"^[^{_CONTROL}]*[^{STRIPPED}{_CONTROL}][^{_CONTROL}]*$",
                            "must be one line, not blank, without control characters")


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # One line: messages greet it, beside e-mail headers; CR, LF and NUL have no place in it.
    name: str = Field(min_length=1, max_length=200, pattern=ONE_LINE_NOT_BLANK,
                      description="person or position, as the message greets them (one line)")
    email: Email | None = None
    line: LineId | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if not self.email and not self.line:
            raise ValueError("a contact needs an email or a line id")
        return self


class WorkstreamContacts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    responsible: list[Contact] = Field(min_length=1, max_length=10)
    escalation: list[Contact] = Field(default_factory=list, max_length=10)


class AgencyContacts(BaseModel):
    """The body of `PUT /v1/contacts/{agency}`: contacts per workstream, `*` for any workstream not listed."""

    model_config = ConfigDict(extra="forbid")

    workstreams: dict[str, WorkstreamContacts] = Field(min_length=1, max_length=len(Workstream) + 1)

    @model_validator(mode="after")
    def _known_workstreams(self) -> AgencyContacts:
        known = {w.value for w in Workstream} | {ANY_WORKSTREAM}
        unknown = sorted(set(self.workstreams) - known)
        if unknown:
            raise ValueError(f"unknown workstream(s) {unknown}; use {sorted(known)}")
        return self


def digest(contacts: Mapping[str, Any]) -> str:
    """A digest of the content, for the audit trail (which must not hold the addresses themselves)."""
    canonical = json.dumps(contacts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def changed_workstreams(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    before = before or {}
    return sorted(ws for ws in set(before) | set(after) if before.get(ws) != after.get(ws))


def recipient_id(agency: str, contact: Mapping[str, Any]) -> str:
    """A stable id for a contact: the same person keeps the same id (and idempotency keys) across edits."""
    return f"contact:{agency}:{hashlib.sha256(contact['name'].encode('utf-8')).hexdigest()[:12]}"


def contact_targets(stored: Mapping[str, Any] | None, agency: str, workstream: str | None, which: str,
                    channels: Iterable[Channel]) -> list[tuple[Target, str]]:
    """(target, display name) of the agency's `responsible` or `escalation` contacts for `workstream` (else
    its `*` entry) on the route's channels; none when the agency has not registered any."""
    if not stored:
        return []
    entry = stored.get(workstream or "") or stored.get(ANY_WORKSTREAM)
    if not entry:
        return []
    out: list[tuple[Target, str]] = []
    wanted = tuple(channels)
    for contact in entry.get(which, []):
        rid = recipient_id(agency, contact)
        if Channel.email in wanted and contact.get("email"):
            out.append((Target(rid, Channel.email, contact["email"]), contact["name"]))
        if Channel.line in wanted and contact.get("line"):
            out.append((Target(rid, Channel.line, contact["line"]), contact["name"]))
    return out


def audit_record(agency: str, version: int, at: datetime, key_id: str, role: str,
                 before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    return {"agency": agency, "version": version, "at": at, "key_id": key_id, "role": role,
            "changed_workstreams": changed_workstreams(before, after), "digest": digest(after),
            "contacts": sum(len(v.get("responsible", [])) + len(v.get("escalation", [])) for v in after.values())}
