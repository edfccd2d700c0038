"""Small-cell suppression over response counts (pure rules, no I/O), shared by every publisher of experience
figures: the feedback read API (agency readers) and the reports service's public pages.

A cell with fewer than `min_cell` responses is hidden. The hidden cells together must hold at least `min_cell`
responses too, else the overall minus the published cells would reveal them: the next smallest cells are then
hidden as well (complementary suppression); if even all cells together are too few, the overall is hidden.
`known`: responses per cell the reader already knows (an agency reading the national aggregate knows its own),
so only the `exposed` part beyond it must reach `min_cell`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CellKey = tuple[str, str]  # (age_group, channel)


@dataclass(frozen=True)
class Suppression:
    min_cell: int | None = None  # None: nothing suppressed (programme office)
    cells: frozenset[CellKey] = field(default_factory=frozenset)
    overall: bool = False

    def hides_key(self, key: CellKey) -> bool:
        return key in self.cells

    def hides(self, cell: Any) -> bool:
        """`cell`: anything with `age_group` and `channel` (feedback's Cell)."""
        return (cell.age_group, cell.channel) in self.cells

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.min_cell is not None, "min_cell_responses": self.min_cell,
                "suppressed_cells": len(self.cells), "overall_suppressed": self.overall}


NONE = Suppression()


def plan_counts(counts: Mapping[CellKey, int], min_cell: int, known: Mapping[CellKey, int] | None = None,
                always: frozenset[CellKey] = frozenset()) -> Suppression:
    """Which cells (and whether the overall) a reader may not see, from responses per cell; `always`: cells
    hidden whatever their count (another plan's), counted in the hidden group like the others."""
    known = known or {}

    def exposed(key: CellKey) -> int:
        return max(0, counts[key] - known.get(key, 0))

    hidden = {k for k, n in counts.items() if n < min_cell or 0 < exposed(k) < min_cell or k in always}
    residual = sum(exposed(k) for k in hidden)
    # Complementary suppression: smallest exposed cells first, until the hidden group is big enough.
    candidates = sorted((k for k in counts if k not in hidden and exposed(k) > 0),
                        key=lambda k: (exposed(k), counts[k], k))
    for key in candidates:
        if residual == 0 or residual >= min_cell:
            break
        hidden.add(key)
        residual += exposed(key)
    total = sum(counts.values())
    total_exposed = sum(exposed(k) for k in counts)
    overall = (0 < total < min_cell) or (0 < total_exposed < min_cell) or (0 < residual < min_cell)
    return Suppression(min_cell, frozenset(hidden), overall)


def plan_item(counts: Mapping[CellKey, int], min_cell: int, base: Suppression,
              known: Mapping[CellKey, int] | None = None) -> Suppression:
    """The plan for a figure only some respondents give (an optional question such as ease or trust): `counts`
    are the answers to it per cell. A cell's answers could be as few as one in a cell whose responses are many,
    so the same rule runs over the answers, on top of `base` (the responses' plan): what `base` hides stays
    hidden, and the hidden group's answers must reach `min_cell` too, else the overall figure is hidden."""
    if base.min_cell is None:
        return base
    item = plan_counts(counts, min_cell, known, always=base.cells)
    return Suppression(min_cell, item.cells | base.cells, item.overall or base.overall)
