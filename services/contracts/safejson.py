"""One JSON reader for everything that arrives from outside (HTTP bodies, Kafka values, statements).

The standard library's decoder recurses once per nesting level: a value nested 50,000 deep raises
RecursionError, not ValueError, and one nested a few hundred deep decodes but later breaks pydantic
and BSON (MongoDB refuses documents nested over 100 levels). `loads` turns both into `JsonTooDeep`,
a ValueError, so every caller that already refuses malformed JSON refuses these the same way.
"""

from __future__ import annotations

import json
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
