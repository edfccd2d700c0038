"""Small-cell suppression of experience figures for agency readers (pure rules, no I/O).

A cell (age group x channel) with fewer than `min_cell` responses is published as `suppressed: true`
with its figures null, so no single citizen's answer can be picked out. Suppression must also survive
differencing inside one answer: the overall figures minus the published cells equal the suppressed cells
together, so the suppressed cells together must hold at least `min_cell` responses too; if they do not,
the next smallest cells are suppressed as well (complementary suppression), and if even all cells
together are too few, the overall figures are suppressed.

For the national (all-agency) aggregate read by an agency, the agency is assumed to know its own
agency's responses: what the national figures reveal beyond that is the other agencies' part (`exposed`
below), and that part is what must reach `min_cell` per cell, per suppressed group and overall.

Residual risk, documented in README: differencing two answers over overlapping date ranges (e.g. 1-30
and 1-31 March) can isolate one day's responses of a cell that is published in both; and agencies
colluding can pool what they know. Neither is closed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.feedback.domain import Cell, cohort_of

CellKey = tuple[str, str]  # (age_group, channel)
_FIGURES = ("responses", "mean_satisfaction", "share_satisfied", "share_tech_difficulty", "awareness_rate",
            "satisfaction_levels")


def key_of(cell: Cell) -> CellKey:
    return (cell.age_group, cell.channel)


@dataclass(frozen=True)
class Suppression:
    min_cell: int | None = None  # None: nothing suppressed (programme office)
    cells: frozenset[CellKey] = field(default_factory=frozenset)
    overall: bool = False

    def hides(self, cell: Cell) -> bool:
        return key_of(cell) in self.cells

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.min_cell is not None, "min_cell_responses": self.min_cell,
                "suppressed_cells": len(self.cells), "overall_suppressed": self.overall}


NONE = Suppression()


def plan(cells: Sequence[Cell], min_cell: int, known: Mapping[CellKey, int] | None = None) -> Suppression:
    """Which cells (and whether the overall) an agency reader may not see. `known`: responses per cell the
    reader already knows (its own agency's, when it reads the national aggregate)."""
    known = known or {}

    def exposed(cell: Cell) -> int:
        return max(0, cell.responses - known.get(key_of(cell), 0))

    hidden = {key_of(c) for c in cells if c.responses < min_cell or 0 < exposed(c) < min_cell}
    residual = sum(exposed(c) for c in cells if key_of(c) in hidden)
    # Complementary suppression: smallest exposed cells first, until the hidden group is big enough.
    candidates = sorted((c for c in cells if key_of(c) not in hidden and exposed(c) > 0),
                        key=lambda c: (exposed(c), c.responses, key_of(c)))
    for cell in candidates:
        if residual == 0 or residual >= min_cell:
            break
        hidden.add(key_of(cell))
        residual += exposed(cell)
    total = sum(c.responses for c in cells)
    total_exposed = sum(exposed(c) for c in cells)
    overall = (0 < total < min_cell) or (0 < total_exposed < min_cell) or (0 < residual < min_cell)
    return Suppression(min_cell, frozenset(hidden), overall)


def cell_dict(cell: Cell, suppression: Suppression) -> dict[str, Any]:
    out = cell.as_dict()
    suppressed = suppression.hides(cell)
    if suppressed:
        out.update({name: None for name in _FIGURES})
    out["suppressed"] = suppressed
    return out


def overall_dict(total: Cell, suppression: Suppression) -> dict[str, Any]:
    out = total.as_dict()
    for name in ("age_group", "cohort", "channel"):
        out.pop(name, None)
    if suppression.overall:
        out.update({name: None for name in _FIGURES})
    out["suppressed"] = suppression.overall
    return out


def gap_dict(row: Mapping[str, Any], cell: Cell, suppression: Suppression) -> dict[str, Any]:
    """A gap row, or only its cell's name when the cell or the overall it is compared with is hidden."""
    if suppression.hides(cell) or suppression.overall:
        return {"age_group": cell.age_group, "cohort": cohort_of(cell.age_group), "channel": cell.channel,
                "suppressed": True, **{k: None for k in row if k not in ("age_group", "cohort", "channel")}}
    return {**row, "suppressed": False}


def known_counts(cells: Iterable[Cell]) -> dict[CellKey, int]:
    return {key_of(c): c.responses for c in cells}
