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

from services.common.disclosure import NONE, CellKey, Suppression, plan_counts, plan_item  # noqa: F401 (re-exported)
from services.feedback.domain import ITEMS, Cell, cohort_of, item_figures

_FIGURES = ("responses", "mean_satisfaction", "share_satisfied", "share_tech_difficulty", "awareness_rate",
            "satisfaction_levels", *(f for item in ITEMS for f in item_figures(item)))


@dataclass(frozen=True)
class Plan(Suppression):
    """The responses' plan plus one per optional item (ease, trust), whose answers are counted separately:
    a published cell may hold few answers to an item, and those are hidden (with their complement) alone."""

    items: Mapping[str, Suppression] = field(default_factory=dict)

    def hides_item(self, item: str, cell: Any) -> bool:
        return self.hides(cell) or (item in self.items and self.items[item].hides(cell))

    def item_overall(self, item: str) -> bool:
        return self.overall or (item in self.items and self.items[item].overall)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "items": {
            name: {"suppressed_cells": len(p.cells), "overall_suppressed": p.overall} for name, p in self.items.items()}}


def key_of(cell: Cell) -> CellKey:
    return (cell.age_group, cell.channel)


def plan(cells: Sequence[Cell], min_cell: int, known: Mapping[CellKey, int] | None = None,
         known_cells: Sequence[Cell] | None = None) -> Plan:
    """Which cells (and whether the overall) an agency reader may not see (services.common.disclosure's rule),
    for the responses and for each optional item. `known_cells` (or `known`, responses only): the reader's own
    agency's cells, when it reads the national aggregate."""
    if known_cells is not None:
        known = known_counts(known_cells)
    base = plan_counts({key_of(c): c.responses for c in cells}, min_cell, known)
    items = {}
    for item in ITEMS:
        known_item = None
        if known_cells is not None:
            known_item = {key_of(c): c.item(item).answers for c in known_cells}
        elif known is not None:
            known_item = dict(known)  # its answers unknown: at most its responses (the cautious assumption)
        items[item] = plan_item({key_of(c): c.item(item).answers for c in cells}, min_cell, base, known_item)
    return Plan(base.min_cell, base.cells, base.overall, items)


def _hide_items(out: dict[str, Any], plan: Suppression, cell: Any, overall: bool) -> None:
    """Null an item's figures where its own plan hides them. A plain Suppression (no item plans) that
    applies at all hides the items of every cell: the item counts were never checked."""
    for item in ITEMS:
        if isinstance(plan, Plan):
            hidden = plan.item_overall(item) if overall else plan.hides_item(item, cell)
        else:
            hidden = plan.min_cell is not None
        if hidden:
            out.update({name: None for name in item_figures(item)})


def cell_dict(cell: Cell, suppression: Suppression) -> dict[str, Any]:
    out = cell.as_dict()
    suppressed = suppression.hides(cell)
    if suppressed:
        out.update({name: None for name in _FIGURES})
    _hide_items(out, suppression, cell, overall=False)
    out["suppressed"] = suppressed
    return out


def overall_dict(total: Cell, suppression: Suppression) -> dict[str, Any]:
    out = total.as_dict()
    for name in ("age_group", "cohort", "channel"):
        out.pop(name, None)
    if suppression.overall:
        out.update({name: None for name in _FIGURES})
    _hide_items(out, suppression, total, overall=True)
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
