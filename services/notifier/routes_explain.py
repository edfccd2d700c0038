"""`newnormal notifier routes check FILE`: say in words who is told when, or point at the line at fault."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import yaml

from services.notifier.domain import DYNAMIC_RECIPIENTS, OWNER_CONTACTS, Route, RoutingTable

_ROUTE_NAME = re.compile(r"route '([^']+)'")
_ROUTE_INDEX = re.compile(r"route #(\d+)")
_RECIPIENT = re.compile(r"^recipient '([^']+)'")


def line_of(path: Path | str, error: Exception) -> int:
    """1-based line of the routes file the error is about (1 when it cannot be placed)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if mark is not None:  # a YAML syntax error knows its own place
        return mark.line + 1
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return 1
    if not isinstance(root, yaml.MappingNode):
        return 1
    sections = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    text = str(error)
    routes = sections.get("routes")
    if isinstance(routes, yaml.SequenceNode):
        if m := _ROUTE_NAME.search(text):
            for i, node in enumerate(routes.value):
                if isinstance(node, yaml.MappingNode):
                    fields = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
                    name = fields.get("name")
                    if (isinstance(name, yaml.ScalarNode) and name.value == m.group(1)) or f"route-{i}" == m.group(1):
                        return node.start_mark.line + 1
        if (m := _ROUTE_INDEX.search(text)) and int(m.group(1)) < len(routes.value):
            return routes.value[int(m.group(1))].start_mark.line + 1
    recipients = sections.get("recipients")
    if (m := _RECIPIENT.search(text)) and isinstance(recipients, yaml.MappingNode):
        for key, _ in recipients.value:
            if key.value == m.group(1):
                return key.start_mark.line + 1
    return 1


def duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def _who(table: RoutingTable, recipients: tuple[str, ...], channels) -> str:
    parts = []
    for r in recipients:
        if r in DYNAMIC_RECIPIENTS:
            kind = "responsible people" if r == OWNER_CONTACTS else "escalation contacts"
            parts.append(f"the owner agency's {kind} (PUT /v1/contacts)")
        else:
            have = [c.value for c in channels if table.recipients.get(r, {}).get(c)]
            missing = [c.value for c in channels if not table.recipients.get(r, {}).get(c)]
            where = f" by {', '.join(have)}" if have else " (no address on these channels: not told)"
            skip = f"; no {', '.join(missing)} address" if have and missing else ""
            parts.append(f"{table.display_name(r)} [{r}]{where}{skip}")
    return "; ".join(parts)


def _match(route: Route) -> str:
    def one(name: str, values) -> str | None:
        return f"{name} {' | '.join(sorted(values))}" if values is not None else None

    parts = [p for p in (one("type", route.types), one("agency", route.agencies), one("workstream", route.workstreams))
             if p] + [f"label {k} = {' | '.join(sorted(v))}" for k, v in route.labels.items()]
    return ", ".join(parts) or "every alert"


def explain(table: RoutingTable) -> str:
    lines: list[str] = []
    for route in table.routes:
        lines.append(f"route {route.name}: when {_match(route)}")
        lines.append(f"  at once: {_who(table, route.recipients, route.channels)}")
        if route.types is not None and "missed" not in route.types:
            continue  # reminders and escalation follow a missed milestone only
        wait = "any hour" if route.urgent_reminders else "in working hours on Thai working days"
        lines.append(f"  while missed: a reminder every {duration(route.reminder_interval)} ({wait}) to the same "
                     "people" + (" and the levels already told" if route.chain else ""))
        for n, level in enumerate(route.chain, start=1):
            lines.append(f"  level {n}, {level.wait.describe()} after the miss: "
                         f"{_who(table, level.recipients, level.channels or route.channels)}")
        lines.append("  an acknowledgement stops reminders and further levels for that due date; a reschedule "
                     "or completion closes the chain; a new due date missed again starts a new one")
    return "\n".join(lines)
