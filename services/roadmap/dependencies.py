"""Milestone dependencies as a graph (pure): cycle detection before a plan is applied, and the
level-by-level walk the service uses to propagate status changes to dependants at any depth.

Edges point from a milestone to the milestones it depends on (`depends_on` of its current plan).
The stored graph is read one level at a time through an injected loader, so a chain of N costs N
round trips, never N² and never the whole collection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

CYCLE = "dependency_cycle"  # reason code of a plan refused because its depends_on would close a cycle

EdgeLoader = Callable[[set[str]], Awaitable[Mapping[str, Sequence[str]]]]


async def cycle_path(milestone_id: str, depends_on: Iterable[str], load_edges: EdgeLoader,
                     overlay: Mapping[str, Sequence[str]] | None = None,
                     cache: dict[str, Sequence[str]] | None = None) -> list[str] | None:
    """The cycle the plan `milestone_id -> depends_on` would close, as a path from `milestone_id` back to
    it (e.g. ["X", "Y", "X"]), or None. `overlay` holds plans accepted earlier in the same batch (not stored
    yet); their edges count besides the stored ones (whether a plan becomes its milestone's current one is
    decided later, by event time, so both are assumed: a refusal is never missed). Breadth-first, one `load_edges` call per level
    for the milestones not in `cache` (share one cache across a batch: a re-imported chain of N plans then
    costs about N loads in all, not N per plan)."""
    overlay = overlay or {}
    cache = {} if cache is None else cache
    parent: dict[str, str] = {}
    frontier: list[str] = []
    for dep in dict.fromkeys(depends_on):
        if dep == milestone_id:
            return [milestone_id, milestone_id]
        parent[dep] = milestone_id
        frontier.append(dep)
    while frontier:
        missing = {m for m in frontier if m not in cache}
        if missing:
            loaded = await load_edges(missing)
            cache.update({m: tuple(loaded.get(m, ())) for m in missing})  # absent: an unknown id, no edges
        next_level: list[str] = []
        for node in frontier:
            for dep in (*overlay.get(node, ()), *cache[node]):
                if dep == milestone_id:
                    return _path(parent, node, milestone_id)
                if dep not in parent:  # visited set: every node is expanded once, so the walk terminates
                    parent[dep] = node
                    next_level.append(dep)
        frontier = next_level
    return None


def _path(parent: Mapping[str, str], last: str, start: str) -> list[str]:
    path = [last]
    while path[-1] != start:
        path.append(parent[path[-1]])
    path.reverse()
    return [*path, start]


def unknown_dependencies(depends_on: Iterable[str], statuses: Mapping[str, str | None]) -> list[str]:
    """Dependencies that name no planned milestone (absent, or only facts waiting for their plan): kept on the
    plan and flagged, until that milestone is planned."""
    return sorted({d for d in depends_on if statuses.get(d) in (None, "unplanned")})


class Propagation:
    """State of a status cascade to dependants: which milestones changed, level by level.

    The walk continues from whatever changed in the last level and stops when a level changes nothing; a
    milestone is refreshed again only when one of its dependencies changed after its previous refresh (a
    diamond re-checks its tip). `max_levels` bounds a cycle that slipped past the plan check (two replicas
    planning X->Y and Y->X at the same instant): no status can change more than once per milestone and
    level, so |milestones seen| + 1 levels suffice for any acyclic graph.
    """

    def __init__(self, changed: Iterable[str]):
        self.frontier: list[str] = list(dict.fromkeys(changed))
        self.seen: set[str] = set(self.frontier)
        self.levels = 0

    @property
    def done(self) -> bool:
        return not self.frontier or self.levels > len(self.seen) + 1

    def advance(self, changed: Iterable[str]) -> None:
        self.frontier = list(dict.fromkeys(changed))
        self.seen.update(self.frontier)
        self.levels += 1


# --- risk through dependencies, robust to cycles ---------------------------------------------------
# A milestone is at risk through its dependencies when one of them is at risk by its own state (missed, or its own
# progress) or through *other* milestones. Each milestone stores the `risk_roots` its dependency risk comes from;
# a risk whose only roots are the milestone itself came back round a cycle and does not count, so a cycle that
# slipped in (two replicas at the same instant, or data older than the cycle check) cannot hold itself at risk.
DEPENDENCY_REASON = "dependency_at_risk_or_missed"
_RISKY = ("missed", "at_risk")


def _own_risk(state: Mapping[str, Any]) -> bool:
    reasons = state.get("status_reasons") or ["unknown"]  # no reasons stored: assume its own
    return state.get("status") in _RISKY and any(r != DEPENDENCY_REASON for r in reasons)


def _roots_through(milestone_id: str, dep: str, state: Mapping[str, Any]) -> set[str]:
    if state.get("status") not in _RISKY:
        return set()
    if _own_risk(state):
        return {dep}
    stored = state.get("risk_roots")
    roots = set(stored) if isinstance(stored, list) else {dep}  # a record older than risk_roots: the dep itself
    return roots - {milestone_id}


def as_seen_from(milestone_id: str, states: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
    """The dependencies' statuses for `milestone_id`'s projection: a risk that only comes back round a cycle
    through `milestone_id` itself is shown as not at risk (`planned`), everything else as stored."""
    seen: dict[str, str | None] = {}
    for dep, state in states.items():
        status = state.get("status")
        seen[dep] = status if status not in _RISKY or _roots_through(milestone_id, dep, state) else "planned"
    return seen


def risk_roots(milestone_id: str, blocked_by: Iterable[str], states: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The milestones whose own state puts `milestone_id` at risk through the dependencies in `blocked_by`."""
    roots: set[str] = set()
    for dep in blocked_by:
        roots |= _roots_through(milestone_id, dep, states.get(dep, {}))
    return sorted(roots)
