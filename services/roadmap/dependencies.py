"""Milestone dependencies as a graph (pure): cycle detection before a plan is applied, and the
level-by-level walk the service uses to propagate status changes to dependants at any depth.

Edges point from a milestone to the milestones it depends on (`depends_on` of its current plan).
The stored graph is read one level at a time through an injected loader, so a chain of N costs N
round trips, never N² and never the whole collection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

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
