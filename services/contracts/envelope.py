"""The CloudEvents 1.0 envelope every event travels in, and its HTTP and Kafka bindings.

Bindings go through the CNCF SDK (`cloudevents.core`); this module adds what the SDK does
not know: our required `agency` extension, the source namespace rule, the typed `data`
of each event type, the 64 KiB limit, and a reason code for every refusal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse
from pydantic import ValidationError

from services.contracts import dates, problems, safejson
from services.contracts.agencies import get_registry
from services.contracts.common_types import EventData
from services.contracts.events import DATA_AGENCY_FIELD, EVENT_TYPES, EventType

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MAX_EVENT_BYTES = 64 * 1024  # CloudEvents: intermediaries must forward events up to 64 KiB
SERVICE_SOURCE_PREFIX = "/services/"
_FORMAT = JSONFormat()
_CONTENT_TYPE = _FORMAT.get_content_type().encode("utf-8")
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_STANDARD = {"id", "source", "specversion", "type", "time", "datacontenttype", "dataschema", "subject"}
_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
# A source is a URI-reference: no whitespace or control characters (C0, DEL, C1); bounded like the references to it.
_SOURCE = re.compile(r"^[^\x00-\x20\x7f-\x9f]{1,500}$")
# Extension attribute naming the authority an event was sent with, beyond its own agency. Only the HTTP intake
# sets it (for a programme-office key) and refuses it from clients; records produced straight to Kafka are
# trusted as far as the topic's ACLs (docs/security.md). The roadmap's ownership rule reads it.
AUTHORITY = "authority"
PROGRAMME_OFFICE_AUTHORITY = "programme_office"


@dataclass(frozen=True)
class Claim:
    """Who an event says it comes from, once its attributes are valid: what an intake authorises (an agency writes
    only its own events) before it answers for the event's content."""

    type: str
    agency: str
    extensions: frozenset[str]


class EventError(ValueError):
    """A refusal with a stable machine-readable reason (used in problem+json and DLQ headers). `claim`: the refused
    event's valid attributes, when the refusal is for its content (its data, its time)."""

    def __init__(self, reason: str, detail: str, *, event_id: str | None = None, source: str | None = None,
                 claim: Claim | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.event_id = event_id
        self.source = source
        self.claim = claim

    def as_problem(self) -> dict[str, Any]:
        problem: dict[str, Any] = {"reason": self.reason, "detail": self.detail}
        if self.event_id is not None:
            problem["id"] = self.event_id
        if self.source is not None:
            problem["source"] = self.source
        return problem


@dataclass(frozen=True)
class Event:
    """A validated CloudEvent whose `data` has been checked against its event type's model."""

    id: str
    source: str
    type: str
    agency: str
    data: EventData
    time: datetime
    subject: str | None = None
    dataschema: str | None = None
    partitionkey: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)
    specversion: str = "1.0"
    datacontenttype: str = "application/json"

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key: CloudEvents says source + id identify an event."""
        return (self.source, self.id)

    @property
    def event_type(self) -> EventType:
        return EVENT_TYPES[self.type]

    def data_dict(self) -> dict[str, Any]:
        return self.data.model_dump(mode="json", exclude_none=True)

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "datacontenttype": self.datacontenttype,
            "agency": self.agency,
        }
        for name in ("subject", "dataschema", "partitionkey"):
            if getattr(self, name) is not None:
                attrs[name] = getattr(self, name)
        attrs.update(self.extensions)
        return attrs

    def to_json_dict(self) -> dict[str, Any]:
        attrs = self.attributes()
        attrs["time"] = _iso(self.time)
        attrs["data"] = self.data_dict()
        return attrs

    @property
    def document_id(self) -> str:
        return document_id(self.source, self.id)

    def to_document(self) -> dict[str, Any]:
        """Shape of the `events` audit collection: keyed by `_id` (`document_id`), attributes as top-level
        fields plus `data`, and the content hash a redelivery is compared with (`content_hash`)."""
        doc = self.__dict__.get("_document")
        if doc is None:  # computed once per event: the consumer checks it encodes, a service may store it
            doc = {"_id": self.document_id}
            doc.update(self.attributes())
            doc["data"] = self.data_dict()
            doc[CONTENT_HASH_FIELD] = content_hash(doc)
            object.__setattr__(self, "_document", doc)  # a cache beside the frozen fields (not one of them)
        return dict(doc)  # callers add their own top-level fields to their copy

    def content_hash(self) -> str:
        return content_hash({**self.attributes(), "data": self.data_dict()})

    def to_kafka(self) -> ce_kafka.KafkaMessage:
        """Structured mode, keyed by `partitionkey` (falls back to the agency so one agency stays ordered).

        The very bytes `cloudevents.core.bindings.kafka.to_structured` writes for this event (a test holds them
        equal), without building the SDK's event again: this event was validated when it was made, and the
        second validation cost a third of the intake's time per event."""
        body = self.attributes()
        body["time"] = _sdk_time(self.time)
        body["data"] = self.data_dict()
        return ce_kafka.KafkaMessage(headers={"content-type": _CONTENT_TYPE}, key=self.partitionkey or self.agency,
                                     value=json.dumps(body).encode("utf-8"))


# What an event says, as opposed to how it travelled. Two events with one (source, id) are the same event when
# these agree; they conflict (`id_conflict`) when they differ. Left out: `id`/`source` (the key itself),
# `specversion`, `datacontenttype`, `partitionkey` (the Kafka key) and other extensions such as trace context,
# which a re-send may change, and `time`: a re-send (a re-run import, a retry) may stamp a new one, so a re-send
# that differs only in `time` is a duplicate, and the consumer applies it with the first one's time
# (`stored_content`): the first stands, a later stamp cannot reorder anything.
CONTENT_ATTRIBUTES = ("type", "agency", "subject", "dataschema", "data")
CONTENT_HASH_FIELD = "content_sha256"


def from_audit_record(doc: Mapping[str, Any]) -> Event:
    """The event an audit record (`Event.to_document`) or a stored event body (`to_json_dict`) holds, validated
    again against the contracts."""
    attrs = {k: v for k, v in doc.items() if k not in ("_id", "data", CONTENT_HASH_FIELD)}
    return validate_attributes(attrs, doc.get("data"))


def content_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of an event's content (CONTENT_ATTRIBUTES): from an event's
    attributes + data, or from a stored audit record written before records carried the hash (same result)."""
    canonical = {name: fields.get(name) for name in CONTENT_ATTRIBUTES}
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# Reason of an event whose (source, id) is already stored, or earlier in its batch or request, with other content.
ID_CONFLICT = "id_conflict"


def id_conflict(event: Event, first_type: str | None = None) -> EventError:
    """`first_type`: the type the first one was stored as, named when it differs (the audit trail is shared by every
    topic: the first may have come as another service's event)."""
    other = f" (the first was a {first_type} event)" if first_type and first_type != event.type else ""
    return EventError(ID_CONFLICT, f"this source and id already came with other content{other}: type, agency, "
                      "subject, dataschema or data; the first one stands: send a correction under a new id",
                      event_id=event.id, source=event.source)


KEY_SEPARATOR = "\x1f"  # ASCII unit separator: never in an id (printable ASCII), so a key splits at its last one


def document_id(source: str, id: str) -> str:
    """MongoDB `_id` of a stored event: one string, `source` and `id` joined by `KEY_SEPARATOR`. The idempotency
    key is the primary key itself: on SecantusDB a secondary unique index costs more than half of the insert
    throughput (bench/results), and MongoDB enforces `_id` uniqueness for free. A string, not a {source, id}
    document: SecantusDB answers a query on a document-valued `_id` by scanning the collection (0.5 s per lookup
    at 30,000 events, docs/performance.md), a string `_id` from its index (2 ms)."""
    return f"{source}{KEY_SEPARATOR}{id}"


def legacy_document_id(value: Any) -> Any:
    """The `_id` a record stored before keys were strings ({source, id}) has now; any other value unchanged."""
    if isinstance(value, dict) and set(value) == {"source", "id"}:
        return document_id(str(value["source"]), str(value["id"]))
    return value


def _sdk_time(value: datetime) -> str:
    """A time as the CloudEvents SDK's JSON format writes it: ISO 8601 in its own offset, UTC as `Z`."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _iso(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def make_event(
    type_: str,
    data: EventData | Mapping[str, Any],
    *,
    agency: str,
    source: str,
    id: str,
    time: datetime,
    subject: str | None = None,
    partitionkey: str | None = None,
) -> Event:
    """Build an event from our own code (publishers, simulator, importers), validated like any other.

    `time` is required: it is the sender's clock reading (the service's injected Clock), never read here."""
    payload = data.model_dump(mode="json", exclude_none=True) if isinstance(data, EventData) else dict(data)
    attrs = {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": type_,
        "agency": agency,
        "time": time,
        "datacontenttype": "application/json",
        "dataschema": EVENT_TYPES[type_].dataschema if type_ in EVENT_TYPES else None,
    }
    if subject:
        attrs["subject"] = subject
    if partitionkey:
        attrs["partitionkey"] = partitionkey
    return validate_attributes({k: v for k, v in attrs.items() if v is not None}, payload)


def with_authority(event: Event, authority: str) -> Event:
    """The event as the intake forwards it, marked with the authority of the key that sent it."""
    return replace(event, extensions={**event.extensions, AUTHORITY: authority})


def agency_source_prefix(agency: str) -> str:
    return f"/agencies/{agency}/"


def validate_attributes(attrs: Mapping[str, Any], data: Any, *, allowed_types: Collection[str] | None = None,
                        received_at: datetime | None = None) -> Event:
    """Check an event's attributes and data against the contracts; raise EventError with a reason.

    `time` is optional in CloudEvents: an event without it takes `received_at`, the receiver's (or sender's)
    injected Clock reading. Nothing here reads the system clock."""
    event_id = attrs.get("id") if isinstance(attrs.get("id"), str) else None
    source = attrs.get("source") if isinstance(attrs.get("source"), str) else None

    claim: Claim | None = None  # who the event says it comes from, once its attributes are valid

    def fail(reason: str, detail: str) -> EventError:
        return EventError(reason, detail, event_id=event_id, source=source, claim=claim)

    for name in ("id", "source", "type", "specversion"):
        if not attrs.get(name):
            raise fail("missing_attribute", f"required CloudEvents attribute {name!r} is missing")
    if attrs["specversion"] != "1.0":
        raise fail("unsupported_specversion", _specversion_refusal(attrs["specversion"]))
    if not _ID.match(str(attrs["id"])):
        raise fail("invalid_attribute", "id must be 1-200 printable ASCII characters without spaces")
    type_ = str(attrs["type"])
    event_type = EVENT_TYPES.get(type_)
    if event_type is None:
        raise fail("unknown_type", f"unknown event type {type_!r}; known: {', '.join(sorted(EVENT_TYPES))}")
    agency = attrs.get("agency")
    if not agency:
        raise fail("missing_attribute", "required extension attribute 'agency' is missing")
    if agency not in get_registry():
        raise fail("unknown_agency", f"unknown agency code {str(agency)[:40]!r}")
    src = str(attrs["source"])
    if not _SOURCE.match(src):
        raise fail("invalid_attribute", "source must be a URI-reference of 1-500 characters without spaces or control "
                                        "characters")
    if event_type.derived:
        if not src.startswith(SERVICE_SOURCE_PREFIX):
            raise fail("source_not_allowed", f"{type_} is published by the monitoring services only")
    elif not src.startswith(agency_source_prefix(agency)):
        raise fail("source_outside_namespace", f"source must start with {agency_source_prefix(agency)} for agency {agency!r}")
    for name in ("subject", "dataschema", "partitionkey"):
        if attrs.get(name) is not None and not isinstance(attrs[name], str):
            raise fail("invalid_attribute", f"{name} must be a string")
    extensions = {}
    for name, value in attrs.items():
        if name in _STANDARD or name in ("agency", "partitionkey", "data", "data_base64"):
            continue
        if not _EXTENSION_NAME.match(name):
            raise fail("invalid_attribute", f"extension attribute name {name!r} must be 1-20 lower-case letters or digits")
        if value is not None:  # an attribute set to null is one not set (CloudEvents JSON format 2.4)
            extensions[name] = _extension_value(name, value, fail)
    claim = Claim(type_, str(agency), frozenset(extensions))  # from here on, what `fail` refuses is the content
    if allowed_types is not None and type_ not in allowed_types:  # before its data: another service's event
        raise fail("type_not_accepted", f"event type {type_!r} is not accepted here")
    time = attrs.get("time")
    if time is None:
        if received_at is None:
            raise fail("missing_attribute", "time is missing and no receipt time is known")
        time = received_at
    elif isinstance(time, str):
        try:
            time = datetime.fromisoformat(time.replace("Z", "+00:00"))
        except ValueError:
            raise fail("invalid_attribute", f"time {time!r} is not RFC 3339") from None
    if not isinstance(time, datetime) or time.tzinfo is None:
        raise fail("invalid_attribute", "time must be an RFC 3339 timestamp with an offset")
    if not dates.utc_representable(time):  # a far offset can carry a valid local time past year 9999 in UTC
        raise fail(dates.DATE_OUT_OF_RANGE, "time is out of range once converted to UTC")
    if (year_refused := dates.be_year_refusal(time.year)) is not None:  # the one date rule, as in data
        raise fail(year_refused[0], f"time {year_refused[1]}")
    dct = attrs.get("datacontenttype") or "application/json"
    if not _FORMAT.JSON_CONTENT_TYPE_PATTERN.match(str(dct)):
        raise fail("unsupported_content_type", f"datacontenttype {dct!r}: data must be JSON")
    if isinstance(data, (bytes, str)):  # data_base64's bytes, or a JSON string that may encode the object
        try:
            data = safejson.loads(data)
        except ValueError as exc:
            what = "data_base64" if isinstance(data, bytes) else "data is a string that"
            raise fail("invalid_data", f"{what} does not hold a JSON object: {safejson.describe(exc)}") from None
    if not isinstance(data, dict):
        raise fail("invalid_data", "data must be a JSON object")
    try:
        model = event_type.model.model_validate(data)
    except ValidationError as exc:
        # A date rule's refusal is the event's reason (buddhist_era_date, date_out_of_range), not invalid_data.
        kinds = [str(e.get("type")) for e in exc.errors() if e.get("type") in dates.STATIC_REASONS]
        raise fail(kinds[0] if kinds else "invalid_data", _describe(exc)) from None
    agency_field = DATA_AGENCY_FIELD.get(type_)
    if agency_field and getattr(model, agency_field) != agency:
        raise fail("agency_mismatch", f"data.{agency_field} {getattr(model, agency_field)!r} differs from the agency attribute {agency!r}")
    return Event(
        id=str(attrs["id"]),
        source=src,
        type=type_,
        agency=str(agency),
        data=model,
        time=time,
        subject=attrs.get("subject"),
        dataschema=attrs.get("dataschema"),
        partitionkey=attrs.get("partitionkey"),
        extensions=extensions,
        datacontenttype=str(dct),
    )


def _specversion_refusal(said: Any) -> str:
    """Why a specversion is refused, in words: another version, or 1.0 written as a number."""
    if isinstance(said, str):
        return f"specversion {said[:20]!r}: only 1.0 is accepted"
    return 'specversion must be the string "1.0"'


def _extension_value(name: str, value: Any, fail: Callable[[str, str], EventError]) -> str:
    """An extension attribute's value as its canonical string (CloudEvents type system: a Boolean is "true" or
    "false", an Integer its decimal digits; one past 32 bits is kept as its digits too, as a sequence number may
    be, and so is a whole number written with a fraction, 2.0, which JSON Schema counts as an integer). An object,
    an array or a fraction is no CloudEvents type: refused, where it was once stored as Python's text for it
    ("{'a': 1}")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise fail("invalid_attribute", f"extension attribute {name!r} must be a string, a boolean or an integer")


# A path part echoed as it is: a field name of the shape the contracts use (ASCII, no run of digits). Anything
# else is a key the client invented that may hold personal data (a phone, an ID, a Thai name): details reach
# the DLQ and logs, so it is named only by what it is.
_PLAIN_NAME = re.compile(r"^(?!.*\d{4})[A-Za-z_][A-Za-z0-9_]{0,39}$")


def _path_part(part: str) -> str:
    return part if part.isdigit() and len(part) < 4 or _PLAIN_NAME.match(part) else "(invented field)"


def _describe(exc: ValidationError) -> str:
    """Field paths and what is expected there (problems.describe: never the value, nor an invented key's text)."""
    return problems.explain(exc.errors(), part=_path_part, empty="data")


def _from_sdk(event: Any, allowed_types: Collection[str] | None, received_at: datetime | None) -> Event:
    return validate_attributes(event.get_attributes(), event.get_data(), allowed_types=allowed_types,
                               received_at=received_at)


def _structured_object(obj: Any, allowed_types: Collection[str] | None, raw: bytes | None = None,
                       received_at: datetime | None = None, at_most: int | None = None) -> Event:
    """One structured-mode event, already decoded from JSON. `raw` is its encoding when the caller has it (a
    Kafka record), so it is measured as received rather than encoded again; `at_most`, a bound of its encoded
    size known to the caller: an event within the limit by it is not encoded to be measured."""
    if not isinstance(obj, dict):
        raise EventError("invalid_cloudevent", "a structured event must be a JSON object")
    # The SDK invents an id when none is given; an event without its own id cannot be deduplicated.
    for name in ("id", "source", "type", "specversion"):
        if not obj.get(name):
            raise EventError("missing_attribute", f"required CloudEvents attribute {name!r} is missing",
                             event_id=obj.get("id") if isinstance(obj.get("id"), str) else None)
    # What was read as JSON is Unicode already (an unpaired surrogate is refused with its item): it encodes.
    if raw is not None:
        size = len(raw)
    elif at_most is not None and at_most <= MAX_EVENT_BYTES:
        size = at_most
    else:
        size = len(json.dumps(obj, ensure_ascii=False).encode())
    if size > MAX_EVENT_BYTES:
        raise EventError("event_too_large", f"an event may be at most {MAX_EVENT_BYTES} bytes", event_id=str(obj["id"]))
    if obj["specversion"] != "1.0":
        raise EventError("unsupported_specversion", _specversion_refusal(obj["specversion"]), event_id=str(obj["id"]))
    if "data" in obj and "data_base64" in obj:
        raise EventError("invalid_cloudevent", "an event carries data or data_base64, never both",
                         event_id=str(obj["id"])[:200])
    # What JSONFormat.read does after its json.loads, without decoding the JSON a second time, and with the
    # standard library's RFC 3339 parser first (dateutil's isoparse was a third of the parsing time).
    attrs = dict(obj)
    data = attrs.pop("data", None)
    try:
        if data is None and "data_base64" in attrs:
            data = base64.b64decode(attrs.pop("data_base64"))
        if "time" in attrs:
            attrs["time"] = _parse_time(attrs["time"])
        elif received_at is not None:  # else the SDK would stamp its own reading of the system clock
            attrs["time"] = received_at
        # The SDK's event would hold these very attributes and data: built only when it may refuse them.
        sdk_event = None if _sdk_accepts(attrs) else CloudEvent(attrs, data)
    except Exception as exc:  # the SDK raises several exception types for malformed attributes
        raise EventError("invalid_cloudevent", _sdk_detail(exc), event_id=str(obj.get("id"))[:200]) from None
    if sdk_event is None:
        return validate_attributes(attrs, data, allowed_types=allowed_types, received_at=received_at)
    return _from_sdk(sdk_event, allowed_types, received_at)


_SDK_EXTENSION_NAME = re.compile(r"[a-z0-9]+")


def _sdk_accepts(attrs: Mapping[str, Any]) -> bool:
    """Whether the SDK's `CloudEvent` surely takes these attributes as they are, by its own rules (required and
    optional attributes non-empty strings, `time` an aware datetime, extension names lower-case letters and
    digits), for the common case only: `time` given and every other attribute a non-empty string. Building the
    SDK's event was a sixth of a structured event's parsing; anything else is still built, for the SDK's refusal."""
    if "time" not in attrs:
        return False
    for name, value in attrs.items():
        if name == "time":
            if not isinstance(value, datetime) or value.tzinfo is None:
                return False
        elif type(value) is not str or not value:
            return False
        elif name not in _STANDARD and not _SDK_EXTENSION_NAME.fullmatch(name):
            return False
    return True


def _sdk_detail(exc: Exception) -> str:
    """The SDK's own validation messages are clear to a client; Python's (TypeError, binascii.Error,
    dateutil's ValueError) are not, and a 400 never carries raw Python error text."""
    if type(exc).__module__.startswith("cloudevents"):
        return str(exc).replace("<class 'str'>", "string")[:300]
    return ("malformed attribute values: time must be an RFC 3339 timestamp such as 2026-03-01T10:00:00+07:00, "
            "data_base64 valid base64")


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return isoparse(value)  # the SDK's parser, for the forms (and the errors) fromisoformat does not have


def http_mode(headers: Mapping[str, str]) -> str:
    """"binary", "structured" or "batch", from the headers alone: the body limit of a request depends on its
    mode, so it is chosen (and an unsupported media type refused) before a byte of the body is read."""
    lower = {k.lower(): v for k, v in headers.items()}
    if any(k.startswith("ce-") for k in lower):
        return "binary"
    content_type = lower.get("content-type", "").split(";")[0].strip().lower()
    if content_type == STRUCTURED:
        return "structured"
    if content_type == BATCH:
        return "batch"
    raise EventError("unsupported_media_type",
                     f"use Content-Type {STRUCTURED} (structured), {BATCH} (batched) or ce-* headers (binary mode)")


# An item of n characters of JSON text encodes (UTF-8, `json.dumps`'s separators) in at most 5n bytes: a character
# of a string takes at most 4 bytes, and a number token grows at most 4.5 times ("1e15" is 1000000000000000.0).
MAX_ENCODING_GROWTH = 5


def parse_http(headers: Mapping[str, str], body: bytes, *, allowed_types: Collection[str] | None = None,
               max_events: int | None = None, received_at: datetime | None = None) -> list[Event | EventError]:
    """Parse an HTTP request in structured, batched or binary mode into per-event results.

    Raises EventError for a request that cannot be read at all: unknown mode, body not JSON or nested too deep,
    a batch that is not an array or holds more than `max_events` items (counted before any item is parsed, so a
    huge batch costs `max_events` decoded items at most). An empty batch is an empty list."""
    mode = http_mode(headers)
    if mode == "binary":
        return [_binary_http(headers, body, allowed_types, received_at)]
    try:
        lengths: list[int] = []
        if mode == "batch":  # each event answered alone, also for what JSON leaves to the reader
            payload = safejson.loads_bounded(body, max_items=max_events, isolate=True, lengths=lengths)
        else:
            payload = safejson.loads(body)
    except safejson.TooManyItems:
        raise EventError("too_many_events", f"at most {max_events} events per request") from None
    except safejson.TooComplex as exc:
        raise EventError("too_complex", f"the batch holds more than {exc.limit} JSON objects and arrays "
                         f"({safejson.CONTAINERS_PER_ITEM} per event): nested too deep or padded") from None
    except safejson.JsonTooDeep:
        raise EventError("json_too_deep", f"the JSON nests deeper than {safejson.MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise EventError("invalid_json", f"the request body: {safejson.describe(exc)}") from None
    if mode == "batch":
        if not isinstance(payload, list):
            raise EventError("invalid_batch", "a batched request must be a JSON array of events")
        items = payload  # "The batch MAY be empty" (HTTP binding 3.3.3): nothing to answer for
    else:
        items, lengths = [payload], [len(body)]
    return [_one_http_event(obj, allowed_types, received_at, MAX_ENCODING_GROWTH * length)
            for obj, length in zip(items, lengths, strict=True)]


def _one_http_event(obj: Any, allowed_types: Collection[str] | None, received_at: datetime | None,
                    at_most: int | None = None) -> Event | EventError:
    if isinstance(obj, safejson.Refused):
        reason = "json_too_deep" if isinstance(obj.error, safejson.JsonTooDeep) else "invalid_json"
        return EventError(reason, f"the event: {safejson.describe(obj.error)}",
                          event_id=_str_attr(obj.value, "id"), source=_str_attr(obj.value, "source"))
    try:
        return _structured_object(obj, allowed_types, received_at=received_at, at_most=at_most)
    except EventError as err:
        return err
    except Exception:  # any other failure belongs to this one event, never to its neighbours or the request
        return EventError("invalid_cloudevent", "the event could not be read (malformed attribute values)",
                          event_id=_str_attr(obj, "id"), source=_str_attr(obj, "source"))


def _ce_header(name: str, value: str) -> str:
    """The attribute a `ce-*` header carries (HTTP binding 3.1.3.2): a double-quoted string unescaped, then one
    round of percent-decoding, read as UTF-8; a byte sequence that is not UTF-8 (an overlong `%C0%A0` too) is
    refused. A client that sends Thai as `%E0%B8%81` means "ก"; one that sends raw UTF-8 is read the same way."""
    try:
        raw = value.encode("latin-1")  # the bytes as sent: ASGI servers hand header bytes over as latin-1
    except UnicodeEncodeError:
        raw = value.encode()  # a caller that passed text (a test, the SDK's own headers)
    if len(raw) >= 2 and raw.startswith(b'"') and raw.endswith(b'"'):
        raw = _QUOTED_PAIR.sub(rb"\1", raw[1:-1])
    if _STRAY_PERCENT.search(raw):  # unquote keeps "%ZZ" as written: the sender meant something else, or "%25"
        raise EventError("invalid_cloudevent", f"header {name}: a % must start an escape of two hex digits (%XX; "
                         "a percent sign itself is %25)")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise EventError("invalid_cloudevent", f"header {name}: once percent-decoded it is not UTF-8 (send each "
                         "byte of its UTF-8 as %XX)") from None


_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)  # RFC 7230 3.2.6: a backslash quotes the next byte
_STRAY_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _sent_twice(names: Iterable[str], prefix: str) -> str | None:
    """The first attribute header (or content type) a message carries more than once. HTTP and Kafka both allow
    a name twice; which value counts would then be each reader's choice (ours kept the last, Starlette's `get`
    and many consumers the first), so such a message is refused rather than read one way here."""
    seen: set[str] = set()
    for name in names:
        name = name.lower()
        if name.startswith(prefix) or name == "content-type":
            if name in seen:
                return name
            seen.add(name)
    return None


def _binary_http(headers: Mapping[str, str], body: bytes, allowed_types: Collection[str] | None,
                 received_at: datetime | None) -> Event | EventError:
    if (twice := _sent_twice((k for k, _ in headers.items()), "ce-")) is not None:
        return EventError("invalid_cloudevent", f"header {twice} is sent more than once")
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        decoded = {k: _ce_header(k, v) for k, v in lower.items() if k.startswith("ce-")}
    except EventError as err:
        sent_id = lower.get("ce-id", "")
        err.event_id = sent_id if sent_id.isascii() and sent_id.isprintable() else None
        return err
    event_id = decoded.get("ce-id")
    # The SDK percent-decodes each ce-* header once more, leniently (U+FFFD for what is not UTF-8): it is given
    # the values decoded here, in its own encoding, so that it reads back exactly these.
    lower.update({k: quote(v, safe="/:") for k, v in decoded.items()})
    if len(body) > MAX_EVENT_BYTES:
        return EventError("event_too_large", f"an event may be at most {MAX_EVENT_BYTES} bytes", event_id=event_id)
    for name in ("id", "source", "type", "specversion"):
        if not lower.get(f"ce-{name}"):
            return EventError("missing_attribute", f"required header ce-{name} is missing", event_id=event_id)
    if not lower.get("ce-time") and received_at is not None:  # else the SDK stamps the system clock
        lower["ce-time"] = _iso(received_at)
    try:
        sdk_event = ce_http.from_binary(ce_http.HTTPMessage(headers=dict(lower), body=body), _SAFE_FORMAT)
    except _DataNotJson as exc:
        return EventError("invalid_json", f"the body: {safejson.describe(exc.error)}", event_id=event_id)
    except Exception:
        return EventError("invalid_cloudevent", "the ce-* headers or the body could not be read as a CloudEvent",
                          event_id=event_id)
    try:
        return _from_sdk(sdk_event, allowed_types, received_at)
    except EventError as err:
        return err
    except Exception:
        return EventError("invalid_cloudevent", "the event could not be read (malformed attribute values)",
                          event_id=event_id)


def _str_attr(obj: Any, name: str) -> str | None:
    value = obj.get(name) if isinstance(obj, dict) else None
    return value[:200] if isinstance(value, str) else None


def parse_kafka(headers: Iterable[tuple[str, bytes]], key: bytes | None, value: bytes | None,
                *, allowed_types: Collection[str] | None = None, received_at: datetime | None = None) -> Event:
    """Parse a Kafka record in structured or binary mode (CloudEvents Kafka protocol binding)."""
    pairs = list(headers or ())
    if (twice := _sent_twice((name for name, _ in pairs), "ce_")) is not None:
        raise EventError("invalid_cloudevent", f"header {twice} is sent more than once")
    hdrs: dict[str, bytes] = {}
    for name, raw in pairs:
        hdrs[name.lower()] = raw if isinstance(raw, bytes) else str(raw).encode()
    value = value or b""
    if len(value) > MAX_EVENT_BYTES:
        raise EventError("event_too_large", f"an event may be at most {MAX_EVENT_BYTES} bytes")
    if any(k.startswith("ce_") for k in hdrs):
        try:
            attrs = {k[3:]: v.decode("utf-8") for k, v in hdrs.items() if k.startswith("ce_")}
        except UnicodeDecodeError:
            raise EventError("invalid_cloudevent", "ce_ headers must be UTF-8") from None
        for name in ("id", "source", "type", "specversion"):
            if not attrs.get(name):
                raise EventError("missing_attribute", f"required header ce_{name} is missing", event_id=attrs.get("id"))
        if not attrs.get("time") and received_at is not None:  # else the SDK stamps the system clock
            hdrs["ce_time"] = _iso(received_at).encode()
        try:
            sdk_event = ce_kafka.from_binary(ce_kafka.KafkaMessage(headers=hdrs, key=key, value=value), _SAFE_FORMAT)
        except _DataNotJson as exc:
            raise EventError("invalid_json", f"the record value: {safejson.describe(exc.error)}",
                             event_id=attrs.get("id")) from None
        except Exception as exc:
            # The SDK's messages can quote the record (a dead letter keeps this text): name the error class only.
            raise EventError("invalid_cloudevent", f"the CloudEvents Kafka binding refused the record ({type(exc).__name__})",
                             event_id=attrs.get("id")) from None
        return _from_sdk(sdk_event, allowed_types, received_at)
    try:
        obj = safejson.loads(value)
    except safejson.REFUSALS as exc:
        raise EventError("invalid_json", f"the record value: {safejson.describe(exc)}") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise EventError("invalid_json", f"the record value: {safejson.describe(exc)} (and the record "
                         "carries no ce_ headers)") from None
    return _structured_object(obj, allowed_types, value, received_at=received_at)


class _DataNotJson(Exception):
    """Binary-mode data declared JSON that does not read as JSON (`error` says why)."""

    def __init__(self, error: ValueError):
        super().__init__(str(error))
        self.error = error


class _SafeJSONFormat(JSONFormat):
    """The SDK's JSON format, reading binary-mode data with the depth-limited reader. Data declared JSON that is
    not JSON raises `_DataNotJson` instead of the SDK's fallback of keeping it as a string: the body (record value)
    is then refused `invalid_json` with what was wrong, as a structured event's is, in both transports."""

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        if body and re.match(JSONFormat.JSON_CONTENT_TYPE_PATTERN, datacontenttype or self.DEFAULT_CONTENT_TYPE):
            try:
                return safejson.loads(body)
            except ValueError as exc:  # syntax, not UTF-8, or what RFC 8259 leaves to the reader (safejson.REFUSALS)
                raise _DataNotJson(exc) from None
        return super().read_data(body, datacontenttype)


_SAFE_FORMAT = _SafeJSONFormat()
