"""One-time upgrades of the roadmap's stored data, run at startup once across replicas (`run_once`)."""

from __future__ import annotations

import logging
from typing import Any

from services.common.migrations import run_once
from services.contracts.envelope import CONTENT_HASH_FIELD, EventError, from_audit_record
from services.contracts.events import ROADMAP_CONSUMED_TYPES
from services.roadmap import privacy
from services.roadmap.handlers import RoadmapService

log = logging.getLogger(__name__)

REDACT_FREE_TEXT = "redact_free_text"


async def redact_stored_free_text(service: RoadmapService) -> dict[str, int]:
    """Personal data in the free text of events stored before the roadmap redacted it on arrival (2026-12-02):
    each such audit record is redacted in place, as `privacy.prepare` would have stored it, with its content hash (a
    re-send of the event, redacted on arrival, stays a duplicate and not an `id_conflict`); then the milestones,
    which the public overview and the reports show, are rebuilt from the records. A record the contracts no longer
    take is left as it is and counted (the rebuild leaves it out the same way)."""
    changes: list[tuple[Any, dict[str, Any]]] = []
    unreadable = 0
    async for doc in service.repo.audit_events(ROADMAP_CONSUMED_TYPES):
        try:
            event = from_audit_record(doc)
            redacted = privacy.prepare(event)
        except EventError:
            unreadable += 1
            continue
        if redacted is not event:
            record = redacted.to_document()
            changes.append((doc["_id"], {"data": record["data"], CONTENT_HASH_FIELD: record[CONTENT_HASH_FIELD]}))
    if changes:
        await service.repo.rewrite_audit_records(changes)
        await service.rebuild(cascade=False)  # the watcher's rescan raises what the rebuilt states call for
    counts = {"records_redacted": len(changes), "records_unreadable": unreadable}
    log.warning("personal data in stored free text redacted (one-time upgrade)", extra=counts)  # counts only
    return counts


async def upgrade(service: RoadmapService, migrations: Any) -> None:
    """Every one-time upgrade not yet done, in order (in the background from the service's startup, beside its
    consumer: a rebuild is made for that)."""
    await run_once(migrations, REDACT_FREE_TEXT, lambda: redact_stored_free_text(service), clock=service.clock)
