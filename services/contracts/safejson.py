"""One JSON reader for everything that arrives from outside (HTTP bodies, Kafka values, statements).

The standard library's decoder recurses once per nesting level: a value nested 50,000 deep raises
RecursionError, not ValueError, and one nested a few hundred deep decodes but later breaks pydantic
and BSON (MongoDB refuses documents nested over 100 levels). `loads` turns both into `JsonTooDeep`,
a ValueError, so every caller that already refuses malformed JSON refuses these the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deep enough for any event, statement or form we accept (xAPI statements nest about 8 levels),
# far below BSON's 100 and Python's recursion limit.
MAX_DEPTH = 32


class JsonTooDeep(ValueError):
    """The JSON nests deeper than the limit (or deeper than the decoder can recurse)."""


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` that refuses values nested deeper than `max_depth` with `JsonTooDeep`.

    Malformed JSON raises `ValueError` as `json.loads` does (UnicodeDecodeError is a ValueError too)."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    check_depth(value, max_depth)
    return value


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
_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def loads_bounded(data: bytes | bytearray | str, *, max_items: int, max_depth: int = MAX_DEPTH,
                  max_containers: int | None = None) -> Any:
    """`loads`, but a top-level array is decoded one item at a time and refused with `TooManyItems` as soon as
    it holds more than `max_items`: a body of millions of tiny items costs `max_items` decoded values, not
    millions (`[0,0,...]` of 4.8 MB cost the feedback service 2 GB and 17 s when counted after decoding).

    Before anything is decoded, `{` and `[` are counted (inside strings too: an over-count only refuses
    sooner) against `max_containers` (default `CONTAINERS_PER_ITEM` per item): `TooComplex` beyond."""
    if isinstance(data, bytes | bytearray):
        # What json.loads does with bytes: RFC 8259 encodings, lone surrogates kept for the decoder to judge.
        text = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
    else:
        text = data
    budget = max_containers if max_containers is not None else (max_items + 1) * CONTAINERS_PER_ITEM
    if text.count("{") + text.count("[") > budget:
        raise TooComplex(budget)
    pos = _WS.match(text, 0).end()
    if not text.startswith("[", pos):
        return loads(text, max_depth=max_depth)
    items: list[Any] = []
    pos = _WS.match(text, pos + 1).end()
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            if len(items) >= max_items:
                raise TooManyItems(max_items)
            try:
                item, pos = _DECODER.raw_decode(text, pos)
            except RecursionError:
                raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
            check_depth(item, max_depth - 1)
            items.append(item)
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
    return items
