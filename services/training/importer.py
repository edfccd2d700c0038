"""Bulk import of historical completions from CSV: parse rows, publish pipelined, report per-row errors.

Events are published straight to Kafka (structured CloudEvents, source `/agencies/<agency>/import`) or
through `POST /v1/events` of a running service. Ids come from the row content (or its `id` column), so
importing the same file twice stores every completion once.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from services.common.clock import Clock, utc_now
from services.common.intake_client import HttpIntake, IntakeClient, KafkaIntake
from services.contracts.dates import check_event_dates
from services.contracts.envelope import Event, EventError, make_event
from services.contracts.events import TRAINING_COURSE_COMPLETED
from services.training.domain import REQUIRED_COLUMNS, ParsedRow, RowError, parse_csv_row


@dataclass
class ImportSummary:
    rows_read: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)  # first `max_errors` rows with line, reason, detail
    max_errors: int = 1000

    def reject(self, line: int, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        if len(self.errors) < self.max_errors:
            self.errors.append({"line": line, "reason": reason, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return {"rows_read": self.rows_read, "accepted": self.accepted, "rejected": sum(self.rejected.values()),
                "rejected_by_reason": dict(sorted(self.rejected.items())), "errors": self.errors}


def read_rows(handle: TextIO) -> Iterator[tuple[int, ParsedRow | RowError]]:
    """(line number, parsed row or error) for every data row; the header is line 1."""
    reader = csv.DictReader(handle)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise RowError("missing_column", "the header lacks: " + ", ".join(missing))
    for row in reader:
        line = reader.line_num
        try:
            yield line, parse_csv_row(row)
        except RowError as err:
            yield line, err


def to_event(parsed: ParsedRow, time: datetime) -> Event:
    agency = parsed.data.agency
    return make_event(TRAINING_COURSE_COMPLETED, parsed.data, agency=agency, source=f"/agencies/{agency}/import", id=parsed.id,
                      time=time, subject=parsed.data.course_id[:200])


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return max(0, sum(1 for _ in f) - 1)


async def run_import(path: Path, settings, *, url: str | None = None, key: str | None = None,
                     progress: bool = True, chunk_size: int | None = None, clock: Clock = utc_now) -> ImportSummary:
    """Import a CSV file; per-row errors are collected, never fatal. Returns the summary."""
    from tqdm import tqdm

    chunk_size = chunk_size or settings.import_chunk_size
    summary = ImportSummary()
    send = await _sender(settings, url, key)
    bar = tqdm(total=count_lines(path), unit="row", desc="นำเข้า · import", disable=not progress, file=sys.stderr)
    pending: list[tuple[int, Event]] = []

    async def flush() -> None:
        if not pending:
            return
        outcomes = await send.send([e for _, e in pending])
        for (line, _), outcome in zip(pending, outcomes):
            if outcome.accepted:
                summary.accepted += 1
            else:
                summary.reject(line, outcome.reason, outcome.detail[:300])
        bar.update(len(pending))
        pending.clear()

    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for line, item in read_rows(handle):
                summary.rows_read += 1
                if isinstance(item, RowError):
                    summary.reject(line, item.reason, item.detail)
                    bar.update(1)
                    continue
                try:
                    now = clock()
                    event = to_event(item, now)
                    # The windows the intake and the consumer apply, per row here, so the report names the line.
                    if (refused := check_event_dates(event, now, settings.date_window())) is not None:
                        raise refused
                    pending.append((line, event))
                except EventError as err:
                    summary.reject(line, err.reason, err.detail)
                    bar.update(1)
                    continue
                if len(pending) >= chunk_size:
                    await flush()
            await flush()
    finally:
        bar.close()
        await send.close()
    return summary


async def _sender(settings, url: str | None, key: str | None) -> IntakeClient:
    if url:
        if not key:
            raise SystemExit("--key is required with --url")
        return HttpIntake(url, key)
    from services.common.kafka import ensure_topics

    await ensure_topics(settings)
    return await KafkaIntake.start(settings)
