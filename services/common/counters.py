"""Counter documents (rollups) and what a set of records adds to them: pure, shared by every service's domain and
by the write path (`services.common.ledger`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Delta:
    """What a write adds to one counter document: `keys`, set when the document is created, and counters by
    dotted path (`cells.web|18-24.responses`)."""

    keys: dict[str, Any]
    inc: dict[str, int | float] = field(default_factory=dict)


def add_delta(deltas: dict[str, Delta], doc_id: str, keys: Mapping[str, Any], inc: Mapping[str, int | float]) -> None:
    """Add `inc` to the delta of document `doc_id` in `deltas` (created with `keys`)."""
    delta = deltas.get(doc_id)
    if delta is None:
        deltas[doc_id] = Delta(dict(keys), dict(inc))
        return
    for name, value in keys.items():
        delta.keys.setdefault(name, value)
    counters = delta.inc
    for path, amount in inc.items():
        counters[path] = counters.get(path, 0) + amount


def merge(into: dict[str, Delta], more: Mapping[str, Delta]) -> dict[str, Delta]:
    for doc_id, delta in more.items():
        add_delta(into, doc_id, delta.keys, delta.inc)
    return into


def with_delta(doc: dict[str, Any] | None, doc_id: str, delta: Delta, token: str | None, keep: int = 200,
               digits: int | None = None, protect: Collection[str] = ()) -> dict[str, Any]:
    """The counter document `doc` (None: a new one) with the delta added (and its identity fields where the document
    lacks them), its revision bumped and `token` appended to the last `keep` applied tokens; older tokens in
    `protect` (writes not finished yet) stay too. Updates `doc` in place and returns it."""
    if doc is None:
        doc = {"_id": doc_id, "rev": 0, "applied": []}
    for name, value in delta.keys.items():
        doc.setdefault(name, value)
    for path, amount in delta.inc.items():
        node = doc
        *parents, leaf = _parts(path)
        for part in parents:
            node = node.setdefault(part, {})
        value = node.get(leaf, 0) + amount
        node[leaf] = round(value, digits) if digits is not None and isinstance(value, float) else value
    doc["rev"] = doc.get("rev", 0) + 1
    if token is not None:
        doc["applied"] = last([*doc.get("applied", ()), token], keep, protect)
    return doc


@functools.lru_cache(maxsize=65_536)
def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))  # a handful of paths, over and over: split once


def last(items: list[Any], keep: int, protect: Collection[Any] = (), key: Callable[[Any], Any] = lambda x: x) -> list[Any]:
    """The last `keep` of `items`, and before them the older ones whose `key` is in `protect`, in order."""
    if len(items) <= keep:
        return items
    cut = len(items) - keep
    return [x for x in items[:cut] if key(x) in protect] + items[cut:]


def counters(doc: Mapping[str, Any], prefix: str = "") -> dict[str, int | float]:
    """The numeric leaves of a counter document by dotted path (its id, revision and tokens left out)."""
    out: dict[str, int | float] = {}
    for name, value in doc.items():
        if not prefix and name in ("_id", "applied", "rev"):
            continue
        if isinstance(value, Mapping):
            out.update(counters(value, f"{prefix}{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + name] = value
    return out


def difference(a: Delta | None, b: Delta | None) -> Delta | None:
    """`a` minus `b` (either may be absent), or None when every counter of the result is zero."""
    keys = {**(b.keys if b else {}), **(a.keys if a else {})}
    inc: dict[str, int | float] = dict(a.inc) if a else {}
    for path, amount in (b.inc if b else {}).items():
        inc[path] = inc.get(path, 0) - amount
    inc = {path: amount for path, amount in inc.items() if amount}
    return Delta(keys, inc) if inc else None
