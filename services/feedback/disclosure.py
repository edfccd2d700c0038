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
from typing import Any

from services.common.disclosure import NONE, CellKey, Suppression, plan_counts  # noqa: F401 (re-exported)
from services.feedback.domain import Cell, cohort_of

_FIGURES = ("responses", "mean_satisfaction", "share_satisfied", "share_tech_difficulty", "awareness_rate",
            "satisfaction_levels")


def key_of(cell: Cell) -> CellKey:
    return (cell.age_group, cell.channel)


def plan(cells: Sequence[Cell], min_cell: int, known: Mapping[CellKey, int] | None = None) -> Suppression:
    """Which cells (and whether the overall) an agency reader may not see (services.common.disclosure's rule).
    `known`: responses per cell the reader already knows (its own agency's, when it reads the national aggregate)."""
    return plan_counts({key_of(c): c.responses for c in cells}, min_cell, known)


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
