"""Programme plan import: a YAML or CSV file of milestones -> `roadmap.milestone.planned` events.

Pure parsing (no I/O beyond reading the text given): dates may be ISO or Thai (`30/09/2569`,
`30 ก.ย. 2569`, Thai digits), a bad row is reported with its line number and the others still
import. Event ids are derived from the row's content, so importing the same file twice is a no-op.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from services.common.clock import Clock, utc_now
from services.contracts.dates import DateWindow, check_event_dates
from services.contracts.envelope import Event, EventError, make_event
from services.contracts.events import MILESTONE_PLANNED
from services.contracts.thai_calendar import parse_thai_date, thai_digits_to_ascii

FIELDS = ("milestone_id", "title_th", "title_en", "workstream", "owner_agency", "due_date", "weight", "depends_on",
          "description")
ALIASES = {"agency": "owner_agency", "due": "due_date", "id": "milestone_id", "dependencies": "depends_on"}
DEFAULT_SOURCE_SUFFIX = "roadmap-import"
_SPLIT = re.compile(r"[;,|\s]+")


@dataclass
class RowError:
    line: int
    milestone_id: str | None
    reason: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "milestone_id": self.milestone_id, "reason": self.reason, "detail": self.detail}


@dataclass
class ParsedPlan:
    events: list[tuple[int, Event]] = field(default_factory=list)  # (line, event)
    errors: list[RowError] = field(default_factory=list)


def parse_file(path: str | Path, *, source_suffix: str = DEFAULT_SOURCE_SUFFIX) -> ParsedPlan:
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    kind = "csv" if path.suffix.lower() in (".csv", ".tsv") else "yaml"
    return parse_text(text, kind, source_suffix=source_suffix)


def parse_text(text: str, kind: str, *, source_suffix: str = DEFAULT_SOURCE_SUFFIX,
               window: DateWindow | None = None, clock: Clock = utc_now) -> ParsedPlan:
    plan = ParsedPlan()
    now = clock()  # one reading for the whole file: every row's event time and its date windows
    try:
        rows = _csv_rows(text) if kind == "csv" else _yaml_rows(text)
    except (yaml.YAMLError, csv.Error, ValueError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
        plan.errors.append(RowError(line, None, "unreadable_file", str(exc)[:300]))
        return plan
    seen: dict[str, int] = {}
    for line, row in rows:
        mid = str(row.get("milestone_id") or "").strip() or None
        try:
            event = row_to_event(row, source_suffix=source_suffix, time=now)
            # The windows the intake and the consumer apply, per row here, so the report names the line.
            if (refused := check_event_dates(event, now, window or DateWindow())) is not None:
                raise refused
        except EventError as err:
            plan.errors.append(RowError(line, mid, err.reason, err.detail))
            continue
        except ValueError as err:
            plan.errors.append(RowError(line, mid, "invalid_row", str(err)))
            continue
        mid = event.data.milestone_id
        if mid in seen:
            plan.errors.append(RowError(line, mid, "duplicate_milestone", f"milestone already defined on line {seen[mid]}"))
            continue
        seen[mid] = line
        plan.events.append((line, event))
    return plan


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    sample = text[:4096]
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if not reader.fieldnames:
        raise ValueError("the CSV file has no header row")
    rows = []
    for raw in reader:
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue  # blank line
        rows.append((reader.line_num, _normalise(raw)))
    return rows


class _LineLoader(yaml.SafeLoader):
    """Safe loader that remembers the line each mapping starts on."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    doc = yaml.load(text, Loader=_LineLoader)
    if isinstance(doc, dict):
        doc = doc.get("milestones")
    if not isinstance(doc, list):
        raise ValueError("the YAML file must be a list of milestones or a mapping with a 'milestones' list")
    rows = []
    for item in doc:
        if not isinstance(item, dict):
            rows.append((0, {"__invalid__": repr(item)[:100]}))
            continue
        line = item.pop("__line__", 0)
        rows.append((line, _normalise(item)))
    return rows


def _normalise(raw: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in raw.items():
        if name is None:
            continue
        key = str(name).strip().lower().replace(" ", "_")
        key = ALIASES.get(key, key)
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                continue
        row[key] = value
    return row


def row_to_event(row: Mapping[str, Any], *, time: datetime, source_suffix: str = DEFAULT_SOURCE_SUFFIX) -> Event:
    if "__invalid__" in row:
        raise ValueError(f"a milestone must be a mapping, got {row['__invalid__']}")
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown column(s): {', '.join(unknown)}")
    for name in ("milestone_id", "workstream", "owner_agency", "due_date"):
        if row.get(name) in (None, ""):
            raise ValueError(f"{name} is required")
    data: dict[str, Any] = {k: v for k, v in row.items() if k in FIELDS}
    data["milestone_id"] = thai_digits_to_ascii(str(data["milestone_id"]))
    data["owner_agency"] = str(data["owner_agency"]).strip().lower()
    due = data["due_date"]
    if not hasattr(due, "isoformat"):  # YAML may already give a date
        due = parse_thai_date(str(due))
    data["due_date"] = due.isoformat()
    if "weight" in data:
        try:
            data["weight"] = float(thai_digits_to_ascii(str(data["weight"])))
        except ValueError:
            raise ValueError(f"weight {data['weight']!r} is not a number") from None
    deps = data.get("depends_on")
    if isinstance(deps, str):
        data["depends_on"] = [thai_digits_to_ascii(d) for d in _SPLIT.split(deps) if d]
    elif isinstance(deps, list):
        data["depends_on"] = [thai_digits_to_ascii(str(d)) for d in deps]
    for name in ("title_th", "title_en", "description"):
        if name in data and data[name] is not None:
            data[name] = str(data[name])
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    agency = data["owner_agency"]
    return make_event(MILESTONE_PLANNED, data, agency=agency,
                      source=f"/agencies/{agency}/{source_suffix}", id=f"plan:{data['milestone_id']}:{digest}",
                      time=time, subject=data["milestone_id"], partitionkey=data["milestone_id"])
