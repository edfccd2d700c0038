"""One JSON reader for everything that arrives from outside (HTTP bodies, Kafka values, statements).

The standard library's decoder recurses once per nesting level: a value nested 50,000 deep raises
RecursionError, not ValueError, and one nested a few hundred deep decodes but later breaks pydantic
and BSON (MongoDB refuses documents nested over 100 levels). `loads` turns both into `JsonTooDeep`,
a ValueError, so every caller that already refuses malformed JSON refuses these the same way.

What RFC 8259 leaves to the reader is refused too, each with its own ValueError: `NaN`, `Infinity` and numbers too
large for a float (a stored infinity or NaN would make our own answers invalid JSON), integers over 4,300 digits
(Python's limit), strings holding an unpaired UTF-16 surrogate (`"\\ud800"`: no Unicode text, and no
UTF-8 encoder, BSON's included, can write it), and an object holding the same name twice (RFC 8259: names SHOULD
be unique, and which one counts is the reader's choice: `{"agency": "dga", "agency": "rd"}` would mean rd to us and
dga to a reader that keeps the first; I-JSON, RFC 7493, refuses it). `describe` says what was wrong in words a
client can act on. In an array of events read with `isolate=True`, an item refused for one of these is refused
alone (`Refused`), its neighbours are read.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

# Deep enough for any event, statement or form we accept (xAPI statements nest about 8 levels),
# far below BSON's 100 and Python's recursion limit.
MAX_DEPTH = 32


class JsonTooDeep(ValueError):
    """The JSON nests deeper than the limit (or deeper than the decoder can recurse)."""


class NotJsonNumber(ValueError):
    """`NaN`, `Infinity`, a float beyond the double range, or an integer over Python's 4,300 digits."""


class NotUnicode(ValueError):
    """A string (or an object's key) holds an unpaired UTF-16 surrogate."""


class NotUtf8(ValueError):
    """JSON in another Unicode encoding than UTF-8 (UTF-16, UTF-32), which json.loads would read."""


class DuplicateName(ValueError):
    """An object holds the same name twice."""


# What `loads` refuses beyond malformed JSON: a caller that reads JSON through another library (the CloudEvents
# SDK's binary mode) lets these through that library's own fallbacks.
REFUSALS = (JsonTooDeep, NotJsonNumber, NotUnicode, DuplicateName)
# What concerns one item of an array only: the reader can go on past it (`isolate=True`).
_ITEM_REFUSALS = (NotJsonNumber, NotUnicode, DuplicateName)
NOT_UNICODE = "a string holds an unpaired UTF-16 surrogate (\\uD800-\\uDFFF): it is not Unicode text"
DUPLICATE_NAME = "an object holds the same name twice: send each name once (RFC 8259 leaves which one counts open)"


def _constant(name: str) -> Any:
    raise NotJsonNumber(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJsonNumber("a number is beyond the range of a double (about 1.8e308)")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateName(DUPLICATE_NAME)
    return obj


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_finite, object_pairs_hook=_object)
# Reads on past what `_DECODER` refuses in an item (numbers become None, names last-wins): only to find where the
# refused item ends and what it calls itself (its id), never to use its values.
_LENIENT = json.JSONDecoder(parse_constant=lambda _: None, parse_float=lambda _: None, parse_int=lambda _: None)


class Refused:
    """An item of an array read with `isolate=True`, refused alone: `value` as far as it could be read (for its
    id in the answer, not to be used), `error` why."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: ValueError):
        self.value, self.error = value, error


# A surrogate can only come from a \uD800-\uDFFF escape or from bytes that encode one (which json.loads lets
# through): where neither appears, which is nearly always, the decoded value is not walked. Each is looked for with
# a pattern that starts with a literal, which the regex engine finds fast (one alternation of both was 10 us an event).
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_UTF8_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")  # U+D800-U+DFFF as (surrogatepass) UTF-8 bytes
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # after decoding, every pair is one character: what is left is unpaired


def _may_hold_surrogate(data: bytes | bytearray | str, text: str) -> bool:
    if _ESCAPED_SURROGATE.search(text):
        return True
    if text.isascii():
        return False
    if isinstance(data, bytes | bytearray):
        return _UTF8_SURROGATE.search(data) is not None
    return _SURROGATE.search(text) is not None


def _text(data: bytes | bytearray | str) -> str:
    if isinstance(data, bytes | bytearray):
        # UTF-8 only (RFC 8259 8.1: JSON between systems MUST be UTF-8; a leading BOM may be ignored), where
        # json.loads would also take UTF-16 and UTF-32; lone surrogates kept to be refused as NotUnicode.
        if (encoding := json.detect_encoding(data)) not in ("utf-8", "utf-8-sig"):
            raise NotUtf8(f"the JSON is {encoding.upper()}, not UTF-8: send it as UTF-8")
        return bytes(data).decode("utf-8-sig", "surrogatepass")
    return data


def _decode(decode: Any, *args: Any) -> Any:
    try:
        return decode(*args)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (json.JSONDecodeError, NotJsonNumber, DuplicateName):
        raise
    except ValueError as exc:
        if "digits" not in str(exc):
            raise
        # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise NotJsonNumber(f"an integer has more than {sys.get_int_max_str_digits()} digits") from None


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` that refuses values nested deeper than `max_depth` with `JsonTooDeep`, what is no JSON
    number with `NotJsonNumber`, unpaired surrogates with `NotUnicode` and a name twice in an object with
    `DuplicateName`. Malformed JSON raises `ValueError` as `json.loads` does (UnicodeDecodeError is one too)."""
    text = _text(data)
    value = _decode(_DECODER.decode, text)
    _check_depth_within(value, text, 0, len(text), max_depth)
    if _may_hold_surrogate(data, text):
        check_unicode(value)
    return value


def check_unicode(value: Any) -> None:
    """Raise `NotUnicode` if a string or key of a decoded value holds an unpaired surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise NotUnicode(NOT_UNICODE)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def describe(exc: ValueError) -> str:
    """What was wrong with a refused body, for a 400 or a dead letter: never a quote of the input."""
    if isinstance(exc, JsonTooDeep):
        return f"the JSON nests deeper than {MAX_DEPTH} levels"
    if isinstance(exc, NotJsonNumber | NotUnicode | NotUtf8 | DuplicateName | TooManyItems | TooComplex):
        return str(exc)
    if isinstance(exc, json.JSONDecodeError):  # its message names the position, not the text
        msg = exc.msg.removesuffix(" at")  # "Unterminated string starting at": the position follows
        return f"invalid JSON, {msg[:1].lower()}{msg[1:]} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid {exc.encoding.upper()} at byte {exc.start}"
    return "not valid UTF-8 JSON"


def _check_depth_within(value: Any, text: str, start: int, end: int, max_depth: int) -> None:
    """`check_depth` of the value decoded from text[start:end], walked only when that text holds more `{` and `[`
    (in strings too) than `max_depth`: fewer cannot nest deeper, and an event holds a handful."""
    if text.count("{", start, end) + text.count("[", start, end) > max_depth:
        check_depth(value, max_depth)


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise `JsonTooDeep` if containers nest deeper than `max_depth`. Iterative: no recursion to exhaust."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


class TooManyItems(ValueError):
    """A top-level JSON array holds more items than the caller accepts."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} items in the JSON array")
        self.limit = limit


class TooComplex(ValueError):
    """The body holds more JSON objects and arrays than its item count can honestly need."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} JSON objects and arrays")
        self.limit = limit


# Containers cost the most memory per byte of JSON (`{}` is 2 bytes of text and 64 of dict); an event or an
# xAPI statement has a dozen or two. Budgeting them per item bounds what decoding a body can cost at about
# 12 bytes of memory per byte of body, instead of 24 for a body of nothing but `{},{},...`.
CONTAINERS_PER_ITEM = 64
_WS = re.compile(r"[ \t\n\r]*")


def loads_bounded(data: bytes | bytearray | str, *, max_items: int | None, max_depth: int = MAX_DEPTH,
                  max_containers: int | None = None, isolate: bool = False, lengths: list[int] | None = None) -> Any:
    """`loads`, but a top-level array is decoded one item at a time and refused with `TooManyItems` as soon as
    it holds more than `max_items`: a body of millions of tiny items costs `max_items` decoded values, not
    millions (`[0,0,...]` of 4.8 MB cost the feedback service 2 GB and 17 s when counted after decoding).

    Before anything is decoded, `{` and `[` are counted (inside strings too: an over-count only refuses
    sooner) against `max_containers` (default `CONTAINERS_PER_ITEM` per item): `TooComplex` beyond.

    `isolate`: an item refused for what concerns it alone (no JSON number, an unpaired surrogate, a name twice,
    nested deeper than `max_depth` once read) is returned as `Refused` in its place and the items after it are read
    (a batch of events answers each event). Malformed JSON, too many items, or an item too deep for the decoder
    itself still refuse the whole body: the reader cannot go on past them.

    `lengths`: when given (and the body is an array), the length in characters of each item's text is appended
    to it, one per item (a caller bounds an item's size by it without encoding the item again)."""
    text = _text(data)
    budget = max_containers if max_containers is not None else (
        None if max_items is None else (max_items + 1) * CONTAINERS_PER_ITEM)
    if budget is not None and text.count("{") + text.count("[") > budget:
        raise TooComplex(budget)
    pos = _WS.match(text, 0).end()
    if not text.startswith("[", pos):
        return loads(data, max_depth=max_depth)
    hinted = _may_hold_surrogate(data, text)
    items: list[Any] = []
    pos = _WS.match(text, pos + 1).end()
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            if max_items is not None and len(items) >= max_items:
                raise TooManyItems(max_items)
            start = pos
            try:
                item, pos = _decode(_DECODER.raw_decode, text, pos)
                if isolate and hinted:
                    check_unicode(item)
            except _ITEM_REFUSALS as exc:
                if not isolate:
                    raise
                item, pos = _decode(_LENIENT.raw_decode, text, start)
                item = Refused(item, exc)
            try:
                _check_depth_within(item.value if isinstance(item, Refused) else item, text, start, pos, max_depth - 1)
            except JsonTooDeep as exc:  # it was read whole: the items after it can be read too
                if not isolate:
                    raise
                item = item if isinstance(item, Refused) else Refused(item, exc)
            items.append(item)
            if lengths is not None:
                lengths.append(pos - start)
            pos = _WS.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
    if _WS.match(text, pos).end() != len(text):
        raise json.JSONDecodeError("Extra data", text, pos)
    if not isolate and hinted:
        check_unicode(items)
    return items
